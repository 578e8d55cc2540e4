"""Resumable partial blobs in the filesystem store: Ollama's ``-partial`` files, verified commits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pytest

from corral import BlobPart
from corral.errors import DigestMismatch, InvalidDigest
from corral.plugins.store_fs import FsBlobStore
from corral.store import ModelStore

DATA = bytes(range(256)) * 4096  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def open_partial(root: Path, digest: str = DIGEST, size: int = len(DATA)):
    return anyio.run(ModelStore(blobs=FsBlobStore(root)).open_partial, digest, size)


def test_written_parts_survive_a_reopen_and_commit_after_verification(tmp_path: Path) -> None:
    half = len(DATA) // 2
    parts = [BlobPart(index=0, offset=0, size=half), BlobPart(index=1, offset=half, size=half)]
    partial = open_partial(tmp_path)
    assert partial.parts() == []
    partial.save_parts(parts)
    partial.write(half, DATA[half:half + 1000])
    partial.save_parts([BlobPart(index=1, offset=half, size=half, completed=1000)])
    partial.close()

    record = json.loads((tmp_path / "blobs" / f"{DIGEST.replace(':', '-')}-partial-1").read_text())
    assert record == {"N": 1, "Offset": half, "Size": half, "Completed": 1000}  # Ollama's format
    partial = open_partial(tmp_path)
    assert partial.parts() == [parts[0], BlobPart(index=1, offset=half, size=half, completed=1000)]
    partial.write(0, DATA[:half])
    partial.write(half + 1000, DATA[half + 1000:])
    assert FsBlobStore(tmp_path).blob_path(DIGEST) is None  # not a blob yet
    partial.hash_to(half)
    partial.verify()
    partial.commit()
    assert (tmp_path / "blobs" / DIGEST.replace(":", "-")).read_bytes() == DATA
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [DIGEST.replace(":", "-")]


def test_wrong_data_is_discarded(tmp_path: Path) -> None:
    partial = open_partial(tmp_path)
    partial.write(0, b"x" * len(DATA))
    with pytest.raises(DigestMismatch, match=f"digest mismatch, file must be downloaded again: want {DIGEST}"):
        partial.verify()
    assert list((tmp_path / "blobs").iterdir()) == []


def test_records_that_do_not_tile_the_blob_are_ignored(tmp_path: Path) -> None:
    partial = open_partial(tmp_path)
    partial.save_parts([BlobPart(index=0, offset=0, size=100, completed=100)])  # leaves a gap
    assert partial.parts() == []
    partial.close()
    other = open_partial(tmp_path, size=len(DATA) * 2)  # data of another size: start over
    assert other.parts() == []


def test_digests_are_checked_before_any_path_is_built(tmp_path: Path) -> None:
    with pytest.raises(InvalidDigest):
        open_partial(tmp_path, "sha256:../../etc/passwd")
