"""The protocols plugins implement. Every I/O method is async; the kernel awaits them under anyio."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from .names import ModelRef
from .types import BlobPart, CompletionChunk, CompletionRequest, LoadSpec, Progress


@runtime_checkable
class BlobStore(Protocol):
    """Raw storage for content-addressed blobs and named manifests.

    Digests arrive validated (``sha256:<64 hex>``); manifest names arrive as the four validated
    parts ``(host, namespace, model, tag)``. The kernel's ModelStore holds the logic (case-insensitive
    names, garbage collection, what may be written when); a BlobStore only keeps bytes safe.
    """

    location: str
    """Where the data lives, for messages and ``corral config`` (a folder, a URL)."""

    async def has_blob(self, digest: str) -> bool: ...

    async def blob_size(self, digest: str) -> int | None: ...

    def blob_path(self, digest: str) -> Path | None:
        """A local file a runtime can map, or None when the store is not a local filesystem."""

    async def read_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a blob's bytes from ``offset``; BlobNotFound when it is absent."""

    async def write_blob(self, chunks: AsyncIterable[bytes], expected: str | None = None) -> tuple[str, int]:
        """Store the bytes, verify them against ``expected`` when given (DigestMismatch otherwise,
        nothing kept) and return ``(digest, size)``. Visible only once complete and durable.
        Concurrent writers of the same blob must be safe."""

    async def delete_blob(self, digest: str) -> None: ...

    async def list_blobs(self) -> dict[str, tuple[int, dt.datetime]]:
        """Every complete blob: digest -> (size, modification time)."""

    async def read_manifest(self, parts: tuple[str, str, str, str]) -> tuple[bytes, dt.datetime] | None: ...

    async def write_manifest(self, parts: tuple[str, str, str, str], data: bytes) -> None:
        """Replace the manifest atomically and durably."""

    async def delete_manifest(self, parts: tuple[str, str, str, str]) -> bool: ...

    async def list_manifests(self) -> list[tuple[str, str, str, str]]: ...

    async def cleanup(self, older_than: float) -> int:
        """Remove abandoned temporary files (ones no process works on any more, or older than
        ``older_than`` seconds where the backend cannot tell) and return how many. Partial blobs
        are not temporary: they stay until completed or discarded, or past an age limit of the
        backend's own (the fs store's ``store.partial_max_age``).

        Optional, used when a backend has them: ``free_bytes()`` and ``reserved_bytes(digest)``
        (a pull that cannot fit is refused up front), ``leftovers()`` and
        ``remove_leftover(leftover)`` (``corral prune``; records of ``corral.store.Leftover``)."""

    async def open_partial(self, digest: str, size: int) -> PartialBlob:
        """The partial data of a blob being fetched in byte ranges, created empty or reopened as an
        earlier attempt (or process) left it. Space for ``size`` bytes is reserved up front where the
        backend can (a full disk fails here, not halfway). Never visible as a blob until committed."""


@runtime_checkable
class PartialBlob(Protocol):
    """A blob being downloaded in byte ranges, kept beside the store across attempts and restarts.

    Its methods block: downloads write from worker threads (a thread per range is how Python
    reaches loopback and LAN speeds), so call them from a thread, never from the event loop.
    """

    digest: str
    size: int

    def parts(self) -> list[BlobPart]:
        """The ranges an earlier attempt recorded (tiling ``[0, size)``), or [] for fresh data."""

    def save_parts(self, parts: list[BlobPart]) -> None:
        """Record ranges' progress (``completed`` bytes from each offset are written). The data
        they claim is made durable first, so a record never promises bytes a crash lost."""

    def write(self, offset: int, data: bytes) -> None: ...

    def hash_to(self, end: int) -> None:
        """Hash the data from where hashing stopped up to ``end`` (bytes before ``end`` are final).
        Lets verification run alongside the download; optional for a backend (may do nothing)."""

    def verify(self) -> None:
        """Hash what is not hashed yet and compare with the digest. On a mismatch the data is
        discarded and DigestMismatch raised (Ollama's message)."""

    def commit(self) -> None:
        """Make the verified data the blob, atomically and durably, and drop the range records."""

    def close(self) -> None:
        """Release handles, keeping the data for a later attempt."""

    def discard(self) -> None:
        """Remove the data and its range records."""


@runtime_checkable
class ModelSource(Protocol):
    """Where models come from: a registry, a hub, a package index."""

    name: str

    def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        """Fetch the model into the kernel's store, yielding Ollama-style progress as it goes."""

    def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        """Upload the model; sources that cannot take uploads raise InvalidRequest."""


@runtime_checkable
class LoadedModel(Protocol):
    """One model loaded by a runtime, able to serve requests until its runtime context exits."""

    def complete(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        """Stream the continuation of ``request.prompt``; the last chunk has ``done=True``.
        Closing the iterator early stops generation and frees the slot."""

    async def embed(self, inputs: list[str], *, truncate: bool = True) -> tuple[list[list[float]], int]:
        """One vector per input (not normalised) and the number of tokens read."""

    async def wait(self) -> None:
        """Return when the model can serve no more (e.g. its process died); the scheduler then
        drops it and the next request loads it again."""


@runtime_checkable
class Runtime(Protocol):
    """Loads models of some formats (``RuntimeSpec.formats``)."""

    def load(self, spec: LoadSpec) -> AbstractAsyncContextManager[LoadedModel]:
        """Load the model on entry and unload it on exit. The scheduler enters and exits it in
        one task of its own, so the runtime may start tasks inside it."""


@runtime_checkable
class Quantizer(Protocol):
    """Rewrites a GGUF file's weights to a smaller type (``QuantizerSpec.types``)."""

    def quantize(self, src: Path, dst: Path, type: str) -> AsyncIterator[Progress]:
        """Write ``dst`` from the F32/F16/BF16 GGUF ``src`` with weights of ``type`` (upper case),
        yielding progress; InvalidRequest for a source it cannot quantize."""
