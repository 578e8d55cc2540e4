"""Quantizing the new model's weights with the quantizer that makes the type asked for
(``kernel.quantizer_for``), in a temporary file beside the store, locked while in use."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from ..errors import InvalidRequest
from ..gguf import read_gguf
from ..store import in_use
from ..types import MEDIA_MODEL, Progress
from .assembly import Build, add_file
from .conversion import blob_file, config_of

QUANTIZABLE = ("F32", "F16", "BF16")


async def quantize(kernel: Any, wanted: str, build: Build) -> AsyncIterator[Progress]:
    quantizer = kernel.quantizer_for(wanted)
    canonical = wanted.upper()
    index = next(i for i, layer in enumerate(build.layers) if layer.media_type == MEDIA_MODEL)
    source = build.layers[index]
    path = await blob_file(kernel.store, source.digest, "model")
    gguf = await anyio.to_thread.run_sync(lambda: read_gguf(path, skip_arrays_longer_than=0))
    if gguf.file_type == canonical:
        return
    if gguf.file_type not in QUANTIZABLE:
        raise InvalidRequest(f"quantization is only supported for F16, BF16 and F32 models, "
                             f"this one is {gguf.file_type}")
    async with temporary_file(path.parent, ".gguf") as output:
        async for progress in quantizer.quantize(path, output, canonical):
            yield attrs.evolve(progress, digest=progress.digest or source.digest)
        yield Progress(status="verifying conversion")
        quantized = await anyio.to_thread.run_sync(lambda: read_gguf(output, skip_arrays_longer_than=0))
        layer, status = await add_file(kernel.store, output, MEDIA_MODEL, build.hold)
    build.hold.add(layer.digest)
    build.layers[index] = attrs.evolve(layer, from_=source.from_)
    build.statuses[index] = status
    build.config = {**build.config, **config_of(quantized)}


class temporary_file:
    """A fresh ``.tmp-*`` file in ``folder``, locked while in use (the store sweeps those nobody
    holds, if a crash leaves one), removed on exit."""

    def __init__(self, folder: Path, suffix: str = "") -> None:
        self.path = folder / f".tmp-{uuid.uuid4().hex}{suffix}"
        self._lock = in_use(self.path)

    async def __aenter__(self) -> Path:
        self.path.touch()
        self._lock.__enter__()
        return self.path

    async def __aexit__(self, *_exc: object) -> None:
        self._lock.__exit__(None, None, None)
        self.path.unlink(missing_ok=True)
