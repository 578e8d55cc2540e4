"""The guard that keeps tests inside the checkout catches a read beside it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from repository_guard import GUARD, REPO, ReadGuard


def test_paths_beside_the_checkout_are_outside() -> None:
    guard = ReadGuard(Path("/work/main"))
    assert guard.outside("/work/shared/testdata/ollama-templates/alpaca.gotmpl")
    assert guard.outside("/work/main-old/tests/x")
    assert not guard.outside("/work/main/tests/data/ollama-templates/alpaca.gotmpl")
    assert not guard.outside(tempfile.gettempdir() + "/x")
    assert not ReadGuard(Path("/main")).outside("/shared/x")  # no siblings at the top


@pytest.mark.skipif(GUARD.beside == Path(GUARD.beside.anchor), reason="the checkout has no parent folder")
@pytest.mark.skipif(not GUARD.outside(GUARD.beside / "x"),
                    reason="the checkout's parent is a place every machine has (a clone in the temporary folder)")
def test_reading_beside_the_checkout_is_recorded() -> None:
    before = len(GUARD.reads)
    sibling = REPO.parent / "corral-guard-probe-that-does-not-exist"
    with pytest.raises(FileNotFoundError):
        sibling.read_text()
    recorded = GUARD.reads[before:]
    del GUARD.reads[before:]  # the read was this test's purpose, not a fault
    assert recorded == [f"open {sibling}"]
