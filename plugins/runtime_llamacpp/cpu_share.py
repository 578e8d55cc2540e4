"""How runners share the CPU: one decode at a time per core set, with one thread per core.

llama.cpp's threads spin at their barriers. Two runners decoding at once on the same cores each
wait, at every barrier, for a thread the other has pushed off its core: two models generating
together on 2 cores reached 0.17 of one model's speed. So every runner uses at most as many
threads as it has cores, and holds an exclusive lock on a file named after its core set (its CPU
affinity) while it decodes: runners on the same cores take turns, step by step, each at full
speed. ``flock`` locks die with their process, so a runner that crashes never blocks the others.

The lock alone is not enough: llama.cpp's OpenMP threads keep spinning after a decode for
GOMP_SPINCOUNT spins (300,000 by default, about as long as a whole decode step of a small model),
on the cores the next runner's turn needs (two models at once: 0.65 of one model's speed). Runners
start with 20,000 (about a millisecond; the barriers inside a decode still spin through), and two
models at once then decode as fast as one alone (docs/performance.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from types import TracebackType


def cores() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def runner_threads(requested: int = 0) -> int:
    """Threads for a runner: ``num_thread`` when set, never more than the cores (more threads than
    cores only wait for each other)."""
    available = len(cores())
    return min(requested, available) if requested > 0 else available


OPENMP_SPIN_COUNT = "20000"


def runner_env() -> dict[str, str]:
    """The environment of a runner process: this one's, with OpenMP's spinning bounded (unless the
    operator set GOMP_SPINCOUNT or OMP_WAIT_POLICY)."""
    env = dict(os.environ)
    if "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    return env


def turn_lock_path() -> str:
    """The lock file shared by every runner of this user on the same core set."""
    names = ",".join(map(str, cores()))
    tag = names if len(names) <= 40 else hashlib.sha256(names.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"corral-{os.getuid()}-cpus-{tag}.lock")


class Turns:
    """``with turns:`` around each decode; a no-op without a lock file."""

    def __init__(self, path: str | None) -> None:
        self.fd = None
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            if os.fstat(fd).st_uid != os.getuid():  # another user's file could be held forever
                os.close(fd)
                raise PermissionError(f"{path} belongs to another user")
            self.fd = fd

    def __enter__(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
