"""Tests read nothing beside the checkout: a fresh clone has no sibling folders.

An audit hook sees every file this test process opens or lists. A path in the checkout's parent
folder that is neither inside the checkout nor inside a place every machine has (the Python
installation, the temporary folder, HOME with its caches) is recorded; conftest.py fails the test
(or the collection) that read it. Subprocesses (servers the tests start) are not watched.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVENTS = {"open", "os.scandir", "os.listdir", "glob.glob"}


def _roots() -> tuple[Path, ...]:
    places = [sys.prefix, sys.base_prefix, sys.exec_prefix, tempfile.gettempdir(), Path.home(),
              os.environ.get("CORRAL_TEST_MODELS", ""), *sysconfig.get_paths().values()]
    return tuple(Path(place).resolve() for place in places if place)


class ReadGuard:
    def __init__(self, repo: Path = REPO) -> None:
        self.repo = repo
        self.beside = repo.parent
        self.allowed = _roots()
        self.reads: list[str] = []

    def outside(self, path: str | os.PathLike[str]) -> bool:
        """True for a path beside the checkout (in its parent folder, not in the checkout)."""
        if self.beside == Path(self.beside.anchor):
            return False  # a checkout at the top of the file system has no siblings to mistake
        resolved = Path(os.path.abspath(os.fsdecode(path)))
        if not resolved.is_relative_to(self.beside) or resolved.is_relative_to(self.repo):
            return False
        return not any(resolved.is_relative_to(root) for root in self.allowed)

    def audit(self, event: str, args: tuple[object, ...]) -> None:
        if event not in EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)) and self.outside(path):
            self.reads.append(f"{event} {os.fsdecode(path)}")

    def install(self) -> ReadGuard:
        sys.addaudithook(self.audit)
        return self


GUARD = ReadGuard().install()
