"""The weights of a new model from files in the store: GGUF files as they are (model, projector,
adapters told apart by their metadata), or a safetensors checkpoint converted to GGUF in a worker
thread; the config and, as Ollama does, a named template detected from the GGUF's own."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from ..errors import InvalidRequest, StoreError
from ..gguf import GGUFFile, human_number, read_gguf
from ..gotemplate.named import named_template
from ..store import in_use
from ..types import MEDIA_ADAPTER, MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_TEMPLATE, Layer, Progress
from .assembly import Build, add_file, sha256_of

GGUF_MAGIC = b"GGUF"


async def from_files(kernel: Any, files: Mapping[str, str], build: Build, *,
                      detect_template: bool) -> AsyncIterator[Progress]:
    store = kernel.store
    names = sorted(files)
    if any(name.endswith(".safetensors") for name in names):
        async for progress in _from_safetensors(kernel, files, build, detect_template=detect_template):
            yield progress
        return
    model_gguf: GGUFFile | None = None
    for name in names:
        digest = files[name]
        yield Progress(status="parsing GGUF")
        gguf = await read_blob_gguf(store, digest, name)
        media_type = _gguf_media_type(gguf)
        if media_type == MEDIA_MODEL:
            if model_gguf is not None:
                raise InvalidRequest("more than one model GGUF file was given")
            model_gguf = gguf
        build.add(Layer(media_type=media_type, digest=digest, size=gguf.file_size, from_=name),
                  f"using existing layer {digest}")
    if model_gguf is None:
        raise InvalidRequest("no model GGUF file was given (only adapters or projectors)")
    build.config = config_of(model_gguf)
    if detect_template:
        await _detect_template(store, model_gguf, build)


async def _from_safetensors(kernel: Any, files: Mapping[str, str], build: Build, *,
                            detect_template: bool) -> AsyncIterator[Progress]:
    """Convert a safetensors checkpoint (its blobs linked into a work folder under their names)
    to an F16 GGUF in a worker thread, and store that as the model layer."""
    from ..convert import convert_checkpoint

    store = kernel.store
    paths = {name: await blob_file(store, digest, name) for name, digest in files.items()}
    models_folder = next(iter(paths.values())).parent.parent
    with tempfile.TemporaryDirectory(prefix=".tmp-create-", dir=models_folder) as work, in_use(Path(work)):
        folder = Path(work) / "checkpoint"
        for name, path in paths.items():
            link = folder / name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
        output = Path(work) / "model.gguf"
        yield Progress(status="converting model")
        async for progress in _in_thread(lambda report: convert_checkpoint(folder, output, progress=report)):
            yield progress
        gguf = await anyio.to_thread.run_sync(lambda: read_gguf(output))
        layer, status = await add_file(store, output, MEDIA_MODEL, build.hold)
    build.add(layer, status)
    build.config = config_of(gguf)
    if detect_template:
        await _detect_template(store, gguf, build)


class _Abandoned(Exception):
    """Raised in a worker thread's progress callback once nobody waits for its result."""


async def _in_thread(work: Callable[[Callable[[Progress], None]], None]) -> AsyncIterator[Progress]:
    """Run ``work(report)`` in a thread, yielding what it reports. Closing the iterator early
    makes the next ``report`` raise in the thread, which stops it."""
    updates: queue.SimpleQueue[Progress | None] = queue.SimpleQueue()
    abandoned = threading.Event()
    failure: list[BaseException] = []

    def report(progress: Progress) -> None:
        if abandoned.is_set():
            raise _Abandoned()
        updates.put(progress)

    def target() -> None:
        try:
            work(report)
        except BaseException as error:  # re-raised in the event loop below
            failure.append(error)
        finally:
            updates.put(None)

    thread = threading.Thread(target=target, name="corral-create", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = updates.get_nowait()
            except queue.Empty:
                await anyio.sleep(0.05)
                continue
            if item is None:
                break
            yield item
    finally:
        abandoned.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.join)
    if failure and not isinstance(failure[0], _Abandoned):
        raise failure[0]


def _gguf_media_type(gguf: GGUFFile) -> str:
    kind = gguf.metadata.get("general.type")
    if kind == "adapter":
        return MEDIA_ADAPTER
    if kind in ("projector", "mmproj") or gguf.architecture == "clip":
        return MEDIA_PROJECTOR
    return MEDIA_MODEL


def config_of(gguf: GGUFFile) -> dict[str, Any]:
    family = gguf.architecture or ""
    return {
        "model_format": "gguf",
        "model_family": family,
        "model_families": [family],
        "model_type": human_number(gguf.parameter_count),
        "file_type": gguf.file_type,
    }


async def _detect_template(store: Any, gguf: GGUFFile, build: Build) -> None:
    """As Ollama: a GGUF chat template that matches one of Ollama's named templates gets that
    template (and its stop parameters) as layers; otherwise the Jinja template is used as is."""
    jinja = gguf.chat_template
    named = named_template(jinja) if jinja else None
    if named is None:
        return
    data = named.template.encode()
    build.hold.add(sha256_of(data))
    layer = await store.add_bytes(data, MEDIA_TEMPLATE)
    build.add(layer, f"using autodetected template {named.name}")
    if named.parameters and named.parameters.get("stop"):
        build.params = {"stop": list(named.parameters["stop"]), **build.params}


async def blob_file(store: Any, digest: str, name: str) -> Path:
    if not await store.has_blob(digest):
        raise InvalidRequest(f'blob {digest} for "{name}" not found: upload it with POST /api/blobs/{digest} first')
    path = store.blob_path(digest)
    if path is None:
        raise StoreError("creating models needs a store on the local filesystem")
    return path


async def read_blob_gguf(store: Any, digest: str, name: str) -> GGUFFile:
    path = await blob_file(store, digest, name)
    with path.open("rb") as file:
        if file.read(4) != GGUF_MAGIC:
            raise InvalidRequest(f'"{name}" is not a GGUF file (supplied file was not in GGUF format)')
    return await anyio.to_thread.run_sync(lambda: read_gguf(path, display_name=name))
