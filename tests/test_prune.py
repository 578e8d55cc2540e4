"""Leftovers beside the models: partial downloads and temporary files, swept at start-up and by
``corral prune``, and never while a process works on them (it holds a lock on them)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from corral.plugins.store_fs import FsBlobStore
from corral.store import ModelStore, in_use
from ollama_store import ollama_model
from support import run_corral

DAY = 24 * 3600.0


def aged(path: Path, seconds: float) -> Path:
    moment = time.time() - seconds
    for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(item, (moment, moment))
    return path


def leftovers_store(root: Path) -> dict[str, Path]:
    """A store with a model, and leftovers of every kind and age."""
    ollama_model(root, ("registry.ollama.ai", "library", "kept", "latest"), b"weights")
    blobs = root / "blobs"
    partial = blobs / ("sha256-" + "1" * 64 + "-partial")
    partial.write_bytes(b"x" * 100_000)
    (blobs / (partial.name + "-0")).write_text('{"N":0,"Offset":0,"Size":100000,"Completed":5000}')
    create = root / ".tmp-create-abc"
    (create / "checkpoint").mkdir(parents=True)
    (create / "model.gguf").write_bytes(b"half a conversion")
    download = root / ".downloads" / "modelscope" / "someone" / "model"
    download.mkdir(parents=True)
    (download / "model.gguf.partial").write_bytes(b"y" * 50_000)
    fresh_tmp = blobs / ".tmp-fresh"
    fresh_tmp.write_bytes(b"being written")
    return {"partial": aged(partial, 2 * DAY), "record": aged(blobs / (partial.name + "-0"), 2 * DAY),
            "create": create, "download": aged(root / ".downloads" / "modelscope", 9 * DAY), "fresh_tmp": fresh_tmp}


def test_startup_sweep_removes_abandoned_temporary_folders_and_old_partials_only(tmp_path: Path) -> None:
    root = tmp_path / "models"
    paths = leftovers_store(root)
    store = ModelStore(blobs=FsBlobStore(root, partial_max_age=7 * DAY))
    held = root / ".tmp-create-busy"
    held.mkdir()
    with in_use(held):  # a create in another process, converting right now
        removed = anyio.run(store.prune)
    assert removed == 2
    assert not paths["create"].exists()  # abandoned (nobody holds it), however recent
    assert not (root / ".downloads" / "modelscope" / "someone").exists()  # 9 days untouched
    assert held.exists() and paths["fresh_tmp"].exists()
    assert paths["partial"].exists() and paths["record"].exists()  # 2 days old: still resumable
    assert [info.name for info in anyio.run(store.list)] == ["kept:latest"]


def test_corral_prune_lists_then_removes_what_nobody_holds(tmp_path: Path, clean_env: dict[str, str]) -> None:
    root = tmp_path / "models"
    paths = leftovers_store(root)
    env = {**clean_env, "OLLAMA_MODELS": str(root)}
    busy = root / "blobs" / ("sha256-" + "2" * 64 + "-partial")
    busy.write_bytes(b"z" * 10_000)
    before = sorted(str(path) for path in root.rglob("*"))
    with in_use(busy):  # a pull in progress (in the server, another process)
        listed = run_corral("prune", "--dry-run", env=env)
        assert listed.returncode == 0, listed.stderr
        assert sorted(str(path) for path in root.rglob("*")) == before
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["STATUS", "SIZE", "AGE", "KIND", "PATH"]
        table = {line.split()[-1]: line for line in lines[1:]}
        assert table[".tmp-create-abc"].startswith("would remove")
        assert table["blobs/" + paths["partial"].name].startswith("would remove")
        assert "2 days old" in table["blobs/" + paths["partial"].name]
        assert table["blobs/" + busy.name].startswith("in use, kept")
        assert table["blobs/.tmp-fresh"].startswith("in use, kept")  # too new to tell
        assert table[".downloads/modelscope/someone/model"].startswith("would remove")

        pruned = run_corral("prune", env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[-1].startswith("removed 3 of 5, freed ")
    assert busy.exists() and paths["fresh_tmp"].exists()
    assert not paths["partial"].exists() and not paths["record"].exists() and not paths["create"].exists()
    assert not (root / ".downloads" / "modelscope").exists()
    assert (root / "manifests" / "registry.ollama.ai" / "library" / "kept" / "latest").is_file()

    again = run_corral("prune", env=env)
    assert "removed 1 of 2" in again.stdout  # the pull let go of its partial data; the new file stays


def test_corral_prune_on_a_clean_store(tmp_path: Path, clean_env: dict[str, str]) -> None:
    result = run_corral("prune", env={**clean_env, "OLLAMA_MODELS": str(tmp_path / "models")})
    assert (result.returncode, result.stdout) == (0, f"nothing to remove in {tmp_path / 'models'}\n")


def test_the_age_limit_of_partial_data_is_a_setting(tmp_path: Path) -> None:
    from corral.kernel import Kernel

    environ = {"HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "models")}
    assert Kernel.create(environ=environ, load_entry_points=False).store.blobs.partial_max_age == 7 * DAY
    config = tmp_path / "corral.toml"
    for value, seconds in (('"36h"', 36 * 3600.0), ("0", 0.0), ("600", 600.0)):
        config.write_text(f"[store]\npartial_max_age = {value}\n")
        kernel = Kernel.create(environ={**environ, "CORRAL_CONFIG": str(config)}, load_entry_points=False)
        assert kernel.store.blobs.partial_max_age == seconds
