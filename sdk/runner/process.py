"""For the process a runner (or a bridge to runners) runs in: it ends with the server, and its
protocol has the pipe to itself."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import BinaryIO

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this process when the server dies, so none is ever orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() == 1:
        sys.exit(1)


def protocol_stream() -> BinaryIO:
    """The pipe to the server, on a descriptor of its own: whatever else writes to stdout (a
    library's print, native code) goes to stderr instead of into the protocol."""
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream
