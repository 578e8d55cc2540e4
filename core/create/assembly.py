"""Putting a model together: the layers it will name (held from garbage collection until the
manifest is written), reused from another model or added from bytes and files, with the statuses
Ollama reports for each."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from .. import gojson
from ..errors import InvalidName, InvalidRequest, ModelNotFound
from ..names import parse_reference
from ..store import Hold
from ..types import MEDIA_PARAMS, Layer, Progress
from .validation import is_digest


@attrs.define(eq=False)
class Build:
    """The layers of the model being built, and the statuses to report for them."""

    hold: Hold
    """Every blob the model will name is held from collection until its manifest is written."""
    layers: list[Layer] = attrs.field(factory=list)
    statuses: list[str] = attrs.field(factory=list)
    config: dict[str, Any] = attrs.field(factory=dict)
    params: dict[str, Any] = attrs.field(factory=dict)

    def add(self, layer: Layer, status: str) -> None:
        self.hold.add(layer.digest)
        self.layers.append(layer)
        self.statuses.append(status)

    def drop(self, *media_types: str) -> None:
        keep = [(layer, status) for layer, status in zip(self.layers, self.statuses)
                if layer.media_type not in media_types]
        self.layers = [layer for layer, _ in keep]
        self.statuses = [status for _, status in keep]


async def from_model(kernel: Any, name: str, build: Build) -> AsyncIterator[Progress]:
    """Reuse the layers of model ``name``; as Ollama does, a model not in the store is pulled
    first (by the source that owns its name)."""
    if is_digest(name):
        raise InvalidRequest(f'"{name}" is a blob digest: send it in "files" instead of "from"')
    store = kernel.store
    try:
        ref = parse_reference(name)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    try:
        info = await store.get(ref)
    except ModelNotFound:
        async for progress in kernel.source_for(name).pull(ref):
            yield progress
        info = await store.get(ref)
    build.hold.add(*info.manifest.digests)
    source = info.ref.display
    params: dict[str, Any] = {}
    for layer in info.manifest.layers:
        if layer.media_type == MEDIA_PARAMS:
            found = await store.read_json(layer.digest)
            params = found if isinstance(found, dict) else {}
        build.add(Layer(media_type=layer.media_type, digest=layer.digest, size=layer.size,
                        from_=source, name=layer.name),
                  f"using existing layer {layer.digest}")
    build.params = params
    build.config = {key: info.config[key] for key in
                    ("model_format", "model_family", "model_families", "model_type", "file_type")
                    if key in info.config}


async def add_file(store: Any, path: Path, media_type: str, hold: Hold | None = None) -> tuple[Layer, str]:
    """Store a local file as a blob; the layer and its ``creating``/``using existing`` status.
    With ``hold``, the blob is held from collection before it is looked for."""

    def sha256() -> str:
        hasher = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as file:
            while chunk := await file.read(1 << 20):
                yield chunk

    digest = await anyio.to_thread.run_sync(sha256)
    if hold is not None:
        hold.add(digest)
    if await store.has_blob(digest):
        return Layer(media_type=media_type, digest=digest, size=path.stat().st_size), f"using existing layer {digest}"
    digest, size = await store.add_blob(chunks(), digest)
    return Layer(media_type=media_type, digest=digest, size=size), f"creating new layer {digest}"


async def add_text(store: Any, build: Build, data: bytes, media_type: str) -> None:
    layer = await _add_bytes(store, build.hold, data, media_type)
    build.add(*layer)


async def add_json(store: Any, build: Build, value: Any, media_type: str) -> None:
    layer = await _add_bytes(store, build.hold, gojson.dumps(value).encode(), media_type)
    build.add(*layer)


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _add_bytes(store: Any, hold: Hold, data: bytes, media_type: str) -> tuple[Layer, str]:
    digest = sha256_of(data)
    hold.add(digest)
    existed = await store.has_blob(digest)
    layer = await store.add_bytes(data, media_type)
    return layer, f"{'using existing' if existed else 'creating new'} layer {layer.digest}"
