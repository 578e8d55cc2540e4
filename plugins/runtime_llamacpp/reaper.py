"""Runners left behind by a server that was killed: found through /proc and stopped at start-up.

Runners ask Linux to kill them when their server dies (PR_SET_PDEATHSIG); this sweeps up any
that outlived it anyway, e.g. from a server started before that was in place.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from corral.sdk.runner import RUNNER_MODULE

log = logging.getLogger(__name__)


def orphaned_runners() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "0")
        if RUNNER_MODULE.encode() in cmdline and parent == "1":
            found.append(int(entry.name))
    return found


def stop_orphans() -> None:
    for pid in orphaned_runners():
        try:
            os.kill(pid, signal.SIGKILL)
            log.info("stopped orphaned runner process %d", pid)
        except OSError:
            pass
