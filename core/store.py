"""The model store: Ollama's manifests and content-addressed blobs, over any BlobStore backend.

All naming rules live here: names are matched case-insensitively against existing manifests
(the first casing written is kept, as Ollama does), a manifest is written only once every blob
it names exists with the right size, and blobs that no manifest references any more are removed
unless ``noprune``.
"""

from __future__ import annotations

import collections
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs

from . import gojson
from .errors import BlobNotFound, CorralError, InvalidDigest, ModelNotFound, NoSpace, StoreError
from .interfaces import BlobStore
from .names import ModelRef, parse_reference, validate_digest
from .types import (
    MEDIA_TYPE_MANIFEST,
    BlobsPruned,
    Event,
    Layer,
    Manifest,
    ModelDeleted,
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    ModelInfo,
    ModelParts,
    ModelStored,
)

log = logging.getLogger(__name__)

STALE_SECONDS = 3600.0
CONFIG_CACHE_SIZE = 64


def encode_manifest(manifest: Manifest) -> bytes:
    """The bytes Ollama writes for a manifest: Go's compact JSON plus a newline."""
    data = {
        "schemaVersion": manifest.schema_version,
        "mediaType": manifest.media_type,
        "config": manifest.config.to_json(),
        "layers": [layer.to_json() for layer in manifest.layers],
    }
    return (gojson.dumps(data) + "\n").encode()


def decode_manifest(raw: bytes, where: str) -> Manifest:
    """Parse and validate manifest bytes; a bad one is a StoreError naming ``where``."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("schemaVersion") != 2:
            raise ValueError(f"unsupported schemaVersion {data.get('schemaVersion')!r}")
        layers = data.get("layers")
        if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
            raise ValueError("layers is not a list of objects")
        config = data.get("config")
        if not isinstance(config, dict):
            raise ValueError("config is missing")
        return Manifest(
            config=Layer.from_json(config),
            layers=[Layer.from_json(layer) for layer in layers],
            media_type=data.get("mediaType") or MEDIA_TYPE_MANIFEST,
        )
    except (ValueError, InvalidDigest, UnicodeDecodeError) as error:
        raise StoreError(f"corrupt manifest {where}: {error}") from None


def manifest_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@contextmanager
def in_use(path: Path) -> Iterator[None]:
    """Hold a shared lock on a file or folder of a store on disk while working on it (partial
    data, a temporary file, a work folder): the leftover sweep of any process leaves it alone.
    Released when the block ends or the process dies."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@attrs.frozen(kw_only=True)
class Leftover:
    """Partial data or a temporary file or folder a backend keeps beside the models."""

    name: str
    """Where, relative to the store's location."""
    kind: str
    """``partial download`` (resumable) or ``temporary``."""
    size: int
    """Bytes it takes on disk."""
    modified: dt.datetime
    in_use: bool
    """Whether a process (a pull, a create, an upload) is working on it now."""
    paths: tuple[str, ...] = ()
    """Everything it consists of, relative to the store's location (the backend's business)."""


@attrs.define(eq=False)
class Hold:
    """Blobs an operation in progress (a pull, a create) relies on: no collection removes them
    while it runs, even when no written manifest names them yet. See :meth:`ModelStore.holding`."""

    _counts: collections.Counter[str]
    _mine: list[str] = attrs.field(factory=list)

    def add(self, *digests: str) -> None:
        for digest in digests:
            self._counts[digest] += 1
            self._mine.append(digest)

    def release(self) -> None:
        self._counts.subtract(self._mine)
        for digest in set(self._mine):
            if self._counts[digest] <= 0:
                del self._counts[digest]
        self._mine.clear()


@attrs.define(eq=False)
class ModelStore:
    """Named models over a BlobStore. One per kernel."""

    blobs: BlobStore
    noprune: bool = False
    emit: Callable[[Event], None] = lambda event: None
    _lock: anyio.Lock = attrs.field(factory=anyio.Lock, init=False)
    _held: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    _configs: collections.OrderedDict[str, dict[str, Any]] = attrs.field(factory=collections.OrderedDict, init=False)
    """Config blobs by digest (content-addressed, so never stale): a request reads its manifest only."""

    @property
    def location(self) -> str:
        return self.blobs.location

    # -- reading ----------------------------------------------------------------------------

    async def find(self, name: str | ModelRef) -> ModelRef:
        """The stored model this name means (case-insensitively), or ModelNotFound."""
        ref = parse_reference(name) if isinstance(name, str) else name
        found = await self._existing(ref)
        if found is None:
            raise ModelNotFound(ref.display if isinstance(name, ModelRef) else name)
        return found

    async def get(self, name: str | ModelRef) -> ModelInfo:
        ref = parse_reference(name) if isinstance(name, str) else name
        info = await self._info(ref)  # the exact name: one read, no listing (once per request)
        if info is None:
            info = await self._info(await self.find(name))
        if info is None:
            raise ModelNotFound(ref.display)
        return info

    async def list(self) -> list[ModelInfo]:
        """Every readable model, newest first. A corrupt manifest is logged and skipped."""
        models = []
        for parts in await self.blobs.list_manifests():
            try:
                ref = ModelRef(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3])
                info = await self._info(ref)
            except (CorralError, ValueError) as error:
                log.warning("skipping model %s: %s", "/".join(parts), error)
                continue
            if info is not None:
                models.append(info)
        models.sort(key=lambda info: info.modified_at, reverse=True)
        return models

    async def read_blob_bytes(self, digest: str, limit: int = 64 * 1024 * 1024) -> bytes:
        """A small blob (template, params, system prompt...) in full; StoreError beyond ``limit``."""
        digest = validate_digest(digest)
        size = await self.blobs.blob_size(digest)
        if size is None:
            raise BlobNotFound(f'blob "{digest}" not found')
        if size > limit:
            raise StoreError(f"blob {digest} is {size} bytes, more than the {limit} expected")
        parts = [chunk async for chunk in self.blobs.read_blob(digest)]
        return b"".join(parts)

    async def read_json(self, digest: str) -> Any:
        raw = await self.read_blob_bytes(digest)
        try:
            return json.loads(raw)
        except ValueError as error:
            raise StoreError(f"blob {digest} is not valid JSON: {error}") from None

    async def parts(self, info: ModelInfo) -> ModelParts:
        """Read a model's template, system prompt, parameters, licenses and messages."""
        manifest = info.manifest

        async def text(media_types: tuple[str, ...]) -> str | None:
            layers = [layer for layer in manifest.layers if layer.media_type in media_types]
            return (await self.read_blob_bytes(layers[-1].digest)).decode("utf-8", "replace") if layers else None

        def path(layer: Layer | None) -> str | None:
            found = self.blob_path(layer.digest) if layer else None
            return str(found) if found else None

        params_layer = manifest.layer_of(MEDIA_PARAMS)
        params = await self.read_json(params_layer.digest) if params_layer else {}
        messages_layer = manifest.layer_of(MEDIA_MESSAGES)
        messages = await self.read_json(messages_layer.digest) if messages_layer else []
        licenses = [(await self.read_blob_bytes(layer.digest)).decode("utf-8", "replace")
                    for layer in manifest.layers_of(MEDIA_LICENSE)]
        return ModelParts(
            model_path=path(manifest.layer_of(MEDIA_MODEL)),
            projector_path=path(manifest.layer_of(MEDIA_PROJECTOR)),
            adapter_paths=tuple(p for p in (path(layer) for layer in manifest.layers_of(MEDIA_ADAPTER)) if p),
            template=await text((MEDIA_TEMPLATE, MEDIA_PROMPT)),
            system=await text((MEDIA_SYSTEM,)),
            params=params if isinstance(params, dict) else {},
            licenses=tuple(licenses),
            messages=tuple(m for m in messages if isinstance(m, dict)) if isinstance(messages, list) else (),
        )

    def blob_path(self, digest: str) -> Path | None:
        return self.blobs.blob_path(validate_digest(digest))

    async def has_blob(self, digest: str) -> bool:
        return await self.blobs.has_blob(validate_digest(digest))

    async def read_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        async for chunk in self.blobs.read_blob(validate_digest(digest), offset):
            yield chunk

    # -- writing ----------------------------------------------------------------------------

    async def add_blob(self, chunks: AsyncIterable[bytes], expected: str | None = None) -> tuple[str, int]:
        """Store streamed bytes as a blob, verified against ``expected`` when given."""
        if expected is not None:
            expected = validate_digest(expected)
        return await self.blobs.write_blob(chunks, expected)

    async def open_partial(self, digest: str, size: int) -> Any:
        """Resumable partial data for a blob fetched in ranges (see PartialBlob)."""
        if not isinstance(size, int) or size < 0:
            raise StoreError(f"blob {digest}: invalid size {size!r}")
        return await self.blobs.open_partial(validate_digest(digest), size)

    async def add_bytes(self, data: bytes, media_type: str) -> Layer:
        async def one() -> AsyncIterator[bytes]:
            yield data

        digest, size = await self.add_blob(one(), "sha256:" + hashlib.sha256(data).hexdigest())
        return Layer(media_type=media_type, digest=digest, size=size)

    async def add_json(self, value: Any, media_type: str) -> Layer:
        return await self.add_bytes(gojson.dumps(value).encode(), media_type)

    async def put(self, name: str | ModelRef, manifest: Manifest) -> str:
        """Write a manifest we made; see :meth:`put_raw`."""
        return await self.put_raw(name, encode_manifest(manifest))

    async def put_raw(self, name: str | ModelRef, raw: bytes) -> str:
        """Store manifest bytes as they are (pulled manifests are kept verbatim).

        Every blob must already be present with its declared size, or nothing is written. Returns
        the manifest digest (hex). Blobs only the replaced manifest used are removed.
        """
        ref = parse_reference(name) if isinstance(name, str) else name
        manifest = decode_manifest(raw, f"for {ref.display}")
        async with self._lock:  # the blobs checked are the blobs no collection removes meanwhile
            target = await self._existing(ref) or ref
            await self._write(target, manifest, raw)
        digest = manifest_digest(raw)
        self.emit(ModelStored(name=target.display, digest=digest))
        return digest

    async def _write(self, target: ModelRef, manifest: Manifest, raw: bytes) -> None:
        """Check the manifest's blobs and write it (caller holds the lock)."""
        for digest, size in [(manifest.config.digest, manifest.config.size)] + [
            (layer.digest, layer.size) for layer in manifest.layers
        ]:
            actual = await self.blobs.blob_size(digest)
            if actual is None:
                raise StoreError(f"cannot write manifest for {target.display}: blob {digest} is missing")
            if actual != size:
                raise StoreError(
                    f"cannot write manifest for {target.display}: blob {digest} has {actual} bytes, manifest says {size}"
                )
        old = await self._manifest(target)
        await self.blobs.write_manifest(target.parts, raw)
        if old is not None:
            await self._collect(set(old.digests) - set(manifest.digests))

    async def copy(self, source: str | ModelRef, destination: str | ModelRef) -> ModelRef:
        src = await self.find(source)
        dst = parse_reference(destination) if isinstance(destination, str) else destination
        async with self._lock:  # read and write in one step: a delete of the source waits or wins
            found = await self.blobs.read_manifest(src.parts)
            if found is None:
                raise ModelNotFound(src.display)
            target = await self._existing(dst) or dst
            if target.parts == src.parts:
                return dst
            raw = found[0]
            await self._write(target, decode_manifest(raw, src.display), raw)
        self.emit(ModelStored(name=target.display, digest=manifest_digest(raw)))
        return dst

    async def delete(self, name: str | ModelRef) -> int:
        """Remove a model and every blob no other model references; returns how many blobs went."""
        ref = await self.find(name)
        async with self._lock:
            manifest = await self._manifest(ref)
            if not await self.blobs.delete_manifest(ref.parts):
                raise ModelNotFound(ref.display)  # a concurrent delete won
            removed = await self._collect(set(manifest.digests) if manifest else set())
        self.emit(ModelDeleted(name=ref.display, blobs_removed=removed))
        return removed

    @asynccontextmanager
    async def holding(self, digests: Iterable[str] = ()) -> AsyncIterator[Hold]:
        """Keep blobs from collection while an operation that will name them in a manifest runs:
        take the hold before checking that a blob is present, add blobs as they are written."""
        hold = Hold(self._held)
        hold.add(*digests)
        try:
            yield hold
        finally:
            hold.release()

    async def check_space(self, sizes: dict[str, int], what: str, *, copies: int = 1, already: int = 0) -> None:
        """Refuse (NoSpace, before a byte is fetched) a download of the blobs ``sizes`` names that
        the free space cannot hold; blobs present and partial data already reserved count as
        done. ``copies``: how many times the bytes land on disk on the way (a hub download is
        kept in ``.downloads`` until it is copied into the store: 2); ``already``: bytes of it
        downloaded before, that the backend does not know of."""
        free_bytes = getattr(self.blobs, "free_bytes", None)
        if free_bytes is None:
            return
        needed = 0
        for digest, size in sizes.items():
            if await self.blobs.blob_size(digest) == size:
                continue
            reserved = getattr(self.blobs, "reserved_bytes", None)
            needed += max(0, size * copies - (await reserved(digest) if reserved else 0))
        needed = max(0, needed - already)
        free = await free_bytes()
        if needed > free:
            raise NoSpace(f"{what}: not enough free space in {self.location}: it needs {_gb(needed)}, "
                          f"{_gb(free)} is free (corral prune removes partial downloads)")

    async def leftovers(self) -> list[Leftover]:
        """Partial downloads and temporary files beside the models (``corral prune``)."""
        found = getattr(self.blobs, "leftovers", None)
        return sorted(await found(), key=lambda item: item.name) if found else []

    async def remove_leftover(self, leftover: Leftover) -> bool:
        """Remove one unless a process works on it by now; whether it went."""
        return await self.blobs.remove_leftover(leftover)  # type: ignore[attr-defined]

    async def prune(self, older_than: float = STALE_SECONDS) -> int:
        """Remove unreferenced blobs older than ``older_than`` seconds (the age keeps an upload
        waiting for its create safe), as Ollama does at start-up, and leftovers no process holds
        (temporary files, partial data older than the backend's limit)."""
        removed = await self.blobs.cleanup(older_than)
        if self.noprune:
            return removed
        async with self._lock:
            referenced = await self._referenced()
            if referenced is None:
                return removed
            now = dt.datetime.now(dt.timezone.utc)
            freed = count = 0
            for digest, (size, modified) in (await self.blobs.list_blobs()).items():
                if digest in referenced or digest in self._held or (now - modified).total_seconds() < older_than:
                    continue
                await self.blobs.delete_blob(digest)
                freed += size
                count += 1
        if count:
            self.emit(BlobsPruned(count=count, bytes=freed))
        return removed + count

    # -- internals --------------------------------------------------------------------------

    async def _existing(self, ref: ModelRef) -> ModelRef | None:
        if await self.blobs.read_manifest(ref.parts) is not None:
            return ref
        wanted = ref.folded()
        for parts in await self.blobs.list_manifests():
            if tuple(part.casefold() for part in parts) == wanted:
                return ModelRef(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3])
        return None

    async def _manifest(self, ref: ModelRef) -> Manifest | None:
        found = await self.blobs.read_manifest(ref.parts)
        return None if found is None else decode_manifest(found[0], ref.display)

    async def _info(self, ref: ModelRef) -> ModelInfo | None:
        found = await self.blobs.read_manifest(ref.parts)
        if found is None:
            return None
        raw, modified = found
        manifest = decode_manifest(raw, ref.display)
        return ModelInfo(
            ref=ref,
            manifest=manifest,
            digest=manifest_digest(raw),
            modified_at=modified,
            config=await self._config(manifest.config.digest, ref),
        )

    async def _config(self, digest: str, ref: ModelRef) -> dict[str, Any]:
        config = self._configs.get(digest)
        if config is not None:
            self._configs.move_to_end(digest)
            return config
        try:
            config = await self.read_json(digest)
        except CorralError as error:
            log.warning("model %s: config blob unreadable: %s", ref.display, error)
            return {}
        config = config if isinstance(config, dict) else {}
        self._configs[digest] = config
        while len(self._configs) > CONFIG_CACHE_SIZE:
            self._configs.popitem(last=False)
        return config

    async def _referenced(self) -> set[str] | None:
        """Every digest some manifest uses; None when a manifest cannot be read, since then no
        blob is safe to remove."""
        referenced: set[str] = set()
        for parts in await self.blobs.list_manifests():
            found = await self.blobs.read_manifest(parts)
            if found is None:
                continue
            try:
                referenced.update(decode_manifest(found[0], "/".join(parts)).digests)
            except StoreError as error:
                log.warning("keeping unreferenced blobs while a manifest is unreadable: %s", error)
                return None
        return referenced

    async def _collect(self, candidates: set[str]) -> int:
        """Delete the candidate blobs that no manifest references (caller holds the lock)."""
        if self.noprune or not candidates:
            return 0
        referenced = await self._referenced()
        if referenced is None:
            return 0
        unused = candidates - referenced - set(self._held)
        for digest in unused:
            await self.blobs.delete_blob(digest)
        return len(unused)


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
