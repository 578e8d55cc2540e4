"""The model store over the filesystem backend, against stores laid out exactly as Ollama does."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from corral.errors import DigestMismatch, InvalidDigest, InvalidName, ModelNotFound, StoreError
from corral.names import parse_reference
from corral.plugins.store_fs import FsBlobStore
from corral.store import ModelStore, encode_manifest
from corral.types import MEDIA_MODEL, MEDIA_TYPE_CONFIG, Layer, Manifest
from ollama_store import ollama_model

LIB = ("registry.ollama.ai", "library")


def make_store(root: Path, noprune: bool = False) -> ModelStore:
    return ModelStore(blobs=FsBlobStore(root), noprune=noprune)


def run(coroutine_function, *args):
    return anyio.run(coroutine_function, *args)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_reads_a_store_written_by_ollama(tmp_path: Path) -> None:
    raw = ollama_model(tmp_path, (*LIB, "smol", "latest"), b"GGUF-weights", template="{{ .Prompt }}",
                       params={"stop": ["<|im_end|>"]}, system="Be brief & <kind>")
    ollama_model(tmp_path, ("registry.ollama.ai", "someone", "Other", "v1"), b"other")
    ollama_model(tmp_path, ("hf.co", "bartowski", "Repo-GGUF", "Q4_K_M"), b"hf")
    store = make_store(tmp_path)
    models = run(store.list)
    assert {model.name for model in models} == {"smol:latest", "someone/Other:v1", "hf.co/bartowski/Repo-GGUF:Q4_K_M"}
    info = run(store.get, "smol")
    assert info.digest == hashlib.sha256(raw).hexdigest()
    assert info.size == sum(layer.size for layer in info.manifest.layers) + info.manifest.config.size
    assert info.details() == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                              "parameter_size": "134.52M", "quantization_level": "Q4_1"}
    assert info.modified_at.tzinfo is not None
    system = info.manifest.layer_of("application/vnd.ollama.image.system")
    assert run(store.read_blob_bytes, system.digest) == b"Be brief & <kind>"


class CountingBlobs(FsBlobStore):
    """The filesystem backend, counting blob reads by digest."""

    def read_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        self.__dict__.setdefault("reads", []).append(digest)
        return super().read_blob(digest, offset)


def test_a_lookup_reads_the_manifest_and_each_config_blob_only_once(tmp_path: Path) -> None:
    ollama_model(tmp_path, (*LIB, "smol", "latest"), b"GGUF-weights")
    blobs = CountingBlobs(tmp_path)
    store = ModelStore(blobs=blobs)
    first, second = run(store.get, "smol"), run(store.get, "smol")
    assert first.details()["family"] == second.details()["family"] == "llama"
    assert blobs.reads == [first.manifest.config.digest]
    ollama_model(tmp_path, (*LIB, "smol", "latest"), b"GGUF-weights", family="qwen2")  # the same name, rewritten
    assert run(store.get, "smol").details()["family"] == "qwen2"


def test_writes_manifests_byte_for_byte_as_ollama(tmp_path: Path) -> None:
    ollama_dir, corral_dir = tmp_path / "ollama", tmp_path / "corral"
    expected = ollama_model(ollama_dir, (*LIB, "m", "latest"), b"weights", template="T", params={"temperature": 0.5})
    reference = make_store(ollama_dir)
    manifest = run(reference.get, "m").manifest
    store = make_store(corral_dir)

    async def rebuild() -> None:
        for layer in [manifest.config, *manifest.layers]:
            data = (ollama_dir / "blobs" / layer.digest.replace(":", "-")).read_bytes()
            await store.add_blob(chunks(data), layer.digest)
        await store.put("m", manifest)

    run(rebuild)
    assert encode_manifest(manifest) == expected
    assert tree(corral_dir) == tree(ollama_dir)


def test_names_match_case_insensitively_and_keep_first_casing(tmp_path: Path) -> None:
    raw = ollama_model(tmp_path, ("registry.ollama.ai", "apple", "OpenELM", "latest"), b"x")
    store = make_store(tmp_path)
    assert run(store.find, "APPLE/openelm").display == "apple/OpenELM:latest"
    run(store.put_raw, "apple/OPENELM:LATEST", raw)
    assert [m.name for m in run(store.list)] == ["apple/OpenELM:latest"]
    assert len(list((tmp_path / "manifests").rglob("*"))) == 4  # host, namespace, model, tag


def test_unknown_model_is_ollamas_404(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as error:
        run(make_store(tmp_path).get, "nope")
    assert str(error.value) == 'model "nope" not found, try pulling it first'
    assert error.value.status == 404


def test_copy_shares_blobs(tmp_path: Path) -> None:
    raw = ollama_model(tmp_path, (*LIB, "src", "latest"), b"weights")
    store = make_store(tmp_path)
    blobs_before = sorted(os.listdir(tmp_path / "blobs"))
    run(store.copy, "src", "team/dst:v2")
    assert (tmp_path / "manifests/registry.ollama.ai/team/dst/v2").read_bytes() == raw
    assert sorted(os.listdir(tmp_path / "blobs")) == blobs_before
    with pytest.raises(ModelNotFound):
        run(store.copy, "missing", "x")
    with pytest.raises(InvalidName):
        run(store.copy, "src", "bad name")


def test_delete_collects_only_unshared_blobs(tmp_path: Path) -> None:
    ollama_model(tmp_path, (*LIB, "a", "latest"), b"shared-weights", template="A")
    ollama_model(tmp_path, (*LIB, "b", "latest"), b"shared-weights", template="B")
    store = make_store(tmp_path)
    removed = run(store.delete, "a")
    assert removed == 2  # its template and its config; the weights are still used by b
    assert [m.name for m in run(store.list)] == ["b:latest"]
    weights = "sha256-" + hashlib.sha256(b"shared-weights").hexdigest()
    assert (tmp_path / "blobs" / weights).exists()
    run(store.delete, "b")
    assert os.listdir(tmp_path / "blobs") == []
    assert not (tmp_path / "manifests" / "registry.ollama.ai").exists()  # empty folders pruned
    with pytest.raises(ModelNotFound):
        run(store.delete, "b")


def test_noprune_keeps_blobs(tmp_path: Path) -> None:
    ollama_model(tmp_path, (*LIB, "a", "latest"), b"w")
    store = make_store(tmp_path, noprune=True)
    assert run(store.delete, "a") == 0
    assert len(os.listdir(tmp_path / "blobs")) == 2


def test_overwriting_a_model_removes_blobs_only_it_used(tmp_path: Path) -> None:
    ollama_model(tmp_path, (*LIB, "m", "latest"), b"v1-weights")
    new = ollama_model(tmp_path / "staging", (*LIB, "m", "latest"), b"v2-weights")
    for blob in (tmp_path / "staging" / "blobs").iterdir():
        os.replace(blob, tmp_path / "blobs" / blob.name)
    store = make_store(tmp_path)
    run(store.put_raw, "m", new)
    old = "sha256-" + hashlib.sha256(b"v1-weights").hexdigest()
    assert not (tmp_path / "blobs" / old).exists()


def test_blob_write_verifies_digest_and_leaves_nothing_on_mismatch(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    good = "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert run(store.add_blob, chunks(b"hello ", b"world"), good) == (good, 11)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch) as error:
        run(store.add_blob, chunks(b"hello"), wrong)
    assert str(error.value).startswith(f'digest mismatch, expected "{wrong}", got "sha256:')
    assert os.listdir(tmp_path / "blobs") == [good.replace(":", "-")]
    with pytest.raises(InvalidDigest):
        run(store.add_blob, chunks(b"x"), "sha256:../../etc/passwd")


def test_interrupted_upload_leaves_no_blob(tmp_path: Path) -> None:
    store = make_store(tmp_path)

    async def dropped() -> AsyncIterator[bytes]:
        yield b"partial data"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        run(store.add_blob, dropped())
    assert os.listdir(tmp_path / "blobs") == []


def test_concurrent_writers_of_the_same_blob(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def slow() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start:start + 256 * 1024]
            await anyio.sleep(0)

    async def many() -> list[tuple[str, int]]:
        results = []

        async def one() -> None:
            results.append(await store.add_blob(slow(), digest))

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(one)
        return results

    assert run(many) == [(digest, len(data))] * 6
    assert os.listdir(tmp_path / "blobs") == [digest.replace(":", "-")]
    assert (tmp_path / "blobs" / digest.replace(":", "-")).read_bytes() == data


def test_manifest_is_written_only_when_its_blobs_exist(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    config = run(store.add_bytes, b"{}", MEDIA_TYPE_CONFIG)
    missing = Layer(media_type=MEDIA_MODEL, digest="sha256:" + "1" * 64, size=5)
    with pytest.raises(StoreError, match="blob sha256:1{64} is missing"):
        run(store.put, "m", Manifest(config=config, layers=[missing]))
    wrong_size = Layer(media_type=MEDIA_MODEL, digest=config.digest, size=99)
    with pytest.raises(StoreError, match="has 2 bytes, manifest says 99"):
        run(store.put, "m", Manifest(config=config, layers=[wrong_size]))
    assert not (tmp_path / "manifests").exists()


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", b'{"schemaVersion":1}', b'{"schemaVersion":2,"layers":{}}',
    b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../../etc/passwd","size":1},"layers":[]}',
    b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:' + b"a" * 64 + b'","size":-1},"layers":[]}',
])
def test_corrupt_manifests_are_skipped_and_never_followed(tmp_path: Path, raw: bytes) -> None:
    ollama_model(tmp_path, (*LIB, "good", "latest"), b"w")
    bad = tmp_path / "manifests/registry.ollama.ai/library/bad/latest"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(raw)
    store = make_store(tmp_path)
    assert [m.name for m in run(store.list)] == ["good:latest"]
    with pytest.raises(StoreError, match="corrupt manifest"):
        run(store.get, "bad")
    with pytest.raises(StoreError, match="corrupt manifest"):
        run(store.put_raw, "other", raw)
    # deleting the good model must not remove blobs while a manifest cannot be read
    run(store.delete, "good")
    assert len(os.listdir(tmp_path / "blobs")) == 2


def test_prune_removes_old_unreferenced_blobs_and_stale_temp_files(tmp_path: Path) -> None:
    ollama_model(tmp_path, (*LIB, "kept", "latest"), b"w")
    blobs = tmp_path / "blobs"
    old_orphan = blobs / ("sha256-" + "2" * 64)
    new_orphan = blobs / ("sha256-" + "3" * 64)
    stale_tmp, fresh_tmp = blobs / ".tmp-old", blobs / ".tmp-new"
    pull_partial = blobs / ("sha256-" + "4" * 64 + "-partial")
    for path in (old_orphan, new_orphan, stale_tmp, fresh_tmp, pull_partial):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for path in (old_orphan, stale_tmp, pull_partial):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert run(make_store(tmp_path).prune) == 2
    left = set(os.listdir(blobs))
    assert old_orphan.name not in left and stale_tmp.name not in left
    assert {new_orphan.name, fresh_tmp.name, pull_partial.name} <= left  # in flight or resumable
    assert [m.name for m in run(make_store(tmp_path).list)] == ["kept:latest"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:  # pragma: no cover - as non-root
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(StoreError, match="permission denied"):
        run(make_store(tmp_path / "models").add_bytes, b"x", MEDIA_MODEL)


def test_store_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="model store error while creating"):
        run(make_store(tmp_path / "file" / "models").add_bytes, b"x", MEDIA_MODEL)


def test_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    store = FsBlobStore(tmp_path)
    (tmp_path / "blobs").mkdir()

    def full(self, mode="r", *args, **kwargs):
        return open("/dev/full", mode)  # noqa: SIM115 - a stand-in for a file on a full disk

    original = Path.open
    Path.open = full  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreError, match="no space left on device"):
            run(store.write_blob, chunks(b"x" * (2 * 1024 * 1024)))
    finally:
        Path.open = original  # type: ignore[method-assign]


def test_manifest_paths_are_checked_again_at_the_backend(tmp_path: Path) -> None:
    backend = FsBlobStore(tmp_path)
    with pytest.raises(StoreError, match="refusing manifest path component"):
        run(backend.read_manifest, ("registry.ollama.ai", "..", "x", "latest"))
    with pytest.raises(InvalidDigest):
        backend.blob_path("sha256-../../x")


def test_reference_parsing_guards_every_entry_point(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    for bad in ("../../etc/passwd", "a/b/c/d", "x:y:z", ""):
        with pytest.raises(InvalidName):
            run(store.find, bad)
    assert parse_reference("m").parts == ("registry.ollama.ai", "library", "m", "latest")


def test_a_held_blob_outlives_the_delete_of_the_last_model_naming_it(tmp_path: Path) -> None:
    """A pull or create in progress holds the blobs it will name: a delete meanwhile keeps them."""
    ollama_model(tmp_path, (*LIB, "old", "latest"), b"shared-weights")
    store = make_store(tmp_path)

    async def scenario() -> None:
        info = await store.get("old")
        async with store.holding(info.manifest.digests):
            await store.delete("old")
            assert all([await store.has_blob(digest) for digest in info.manifest.digests])
            await store.put("new", info.manifest)  # the pull's manifest, written last
        assert (await store.get("new")).manifest == info.manifest
        await store.delete("new")
        assert not any([await store.has_blob(digest) for digest in info.manifest.digests])

    run(scenario)
