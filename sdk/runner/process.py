"""For the process a runner (or a bridge to runners) runs in: it ends with the server, and its
protocol has the pipe to itself."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from typing import BinaryIO

PR_SET_PDEATHSIG = 1
PARENT_PID = "CORRAL_PARENT_PID"
"""The environment variable telling a child which process started it."""


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (this process's environment by default) for a child that calls :func:`die_with_parent`."""
    return {**(os.environ if env is None else env), PARENT_PID: str(os.getpid())}


def die_with_parent() -> None:
    """Ask Linux to kill this process when the server dies, so none is ever orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if orphaned():
        sys.exit(1)


def orphaned() -> bool:
    """Whether the parent died before the death signal was asked for. The parent's PID is compared,
    not 1: a server that is PID 1 (in a container without an init) is a live parent."""
    parent = os.environ.get(PARENT_PID, "")
    return parent.isdigit() and os.getppid() != int(parent)


def protocol_stream() -> BinaryIO:
    """The pipe to the server, on a descriptor of its own: whatever else writes to stdout (a
    library's print, native code) goes to stderr instead of into the protocol."""
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream
