"""The protocols between the kernel and plugins.

Plugins implement BlobStore, PartialBlob, ModelSource, Runtime, LoadedModel and Quantizer; the
kernel calls exactly the members declared here. Plugins use the kernel through ``Kernel`` (and its
``Store``, ``Inference`` and ``Scheduler``): those members are the kernel's promise to plugin
authors, everything else on the objects may change. Every I/O method is async (anyio).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .names import ModelRef
from .types import (
    BlobPart,
    ChatRequest,
    CompletionChunk,
    CompletionRequest,
    CreateRequest,
    EmbedRequest,
    Embeddings,
    Event,
    GenerateRequest,
    Layer,
    LoadSpec,
    Manifest,
    ModelInfo,
    ModelParts,
    Progress,
    Reply,
    RuntimeSpec,
)

if TYPE_CHECKING:
    import pluggy

    from .settings import Settings


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
    """Loads models of some formats (``RuntimeSpec.formats``).

    Optional members the kernel uses when present: ``nodes() -> int``, the machines the runtime
    spreads models over (OLLAMA_MAX_LOADED_MODELS then counts per node), and ``close()`` (async),
    called once the scheduler stops. A loaded model may have ``node``, where it runs (``/api/ps``).
    """

    def load(self, spec: LoadSpec) -> AbstractAsyncContextManager[LoadedModel]:
        """Load the model on entry and unload it on exit. The scheduler enters and exits it in
        one task of its own, so the runtime may start tasks inside it."""


@runtime_checkable
class Quantizer(Protocol):
    """Rewrites a GGUF file's weights to a smaller type (``QuantizerSpec.types``)."""

    def quantize(self, src: Path, dst: Path, type: str) -> AsyncIterator[Progress]:
        """Write ``dst`` from the F32/F16/BF16 GGUF ``src`` with weights of ``type`` (upper case),
        yielding progress; InvalidRequest for a source it cannot quantize."""


# -- the kernel, as plugins see it ---------------------------------------------------------------


@runtime_checkable
class Store(Protocol):
    """``kernel.store``: models by name, their manifests and blobs, with every naming and safety
    rule (case-insensitive names, manifests only after their blobs, garbage collection)."""

    blobs: BlobStore
    """The backend, for what the rules above do not cover (sizes of blobs, raw manifests)."""

    @property
    def location(self) -> str:
        """Where the models live, for messages."""

    async def find(self, name: str | ModelRef) -> ModelRef:
        """The stored spelling of ``name`` (names are case-insensitive); ModelNotFound otherwise."""

    async def get(self, name: str | ModelRef) -> ModelInfo:
        """The model ``name``: manifest, digest, config; ModelNotFound otherwise."""

    async def list(self) -> list[ModelInfo]:
        """Every model, newest first."""

    async def parts(self, info: ModelInfo) -> ModelParts:
        """The model's small layers read (template, system, parameters...) and its blobs' paths."""

    def blob_path(self, digest: str) -> Path | None:
        """A local file holding the blob, or None when the backend is not a local filesystem."""

    async def has_blob(self, digest: str) -> bool: ...

    def read_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a blob from ``offset``; BlobNotFound when it is absent."""

    async def read_json(self, digest: str) -> Any:
        """A small JSON blob (a config layer), parsed."""

    async def add_blob(self, chunks: AsyncIterable[bytes], expected: str | None = None) -> tuple[str, int]:
        """Store bytes as a blob, verified against ``expected`` when given; ``(digest, size)``."""

    async def add_bytes(self, data: bytes, media_type: str) -> Layer:
        """Store a small blob and describe it as a manifest layer."""

    async def add_json(self, value: Any, media_type: str) -> Layer: ...

    async def open_partial(self, digest: str, size: int) -> PartialBlob:
        """Resumable partial data for a blob fetched in byte ranges (see PartialBlob)."""

    async def put(self, name: str | ModelRef, manifest: Manifest) -> str:
        """Write the manifest of ``name`` (every blob must be present); its digest."""

    async def put_raw(self, name: str | ModelRef, raw: bytes) -> str:
        """Write a manifest as received (a pull keeps the registry's bytes); its digest."""

    async def copy(self, source: str | ModelRef, destination: str | ModelRef) -> ModelRef: ...

    async def delete(self, name: str | ModelRef) -> int:
        """Remove the model; the number of blobs no other model needed, removed with it."""

    async def prune(self, older_than: float = ...) -> int:
        """Remove unreferenced blobs and abandoned temporary files; how many."""


@runtime_checkable
class RunningModel(Protocol):
    """A model the scheduler holds loaded, as ``/api/ps`` lists it."""

    info: ModelInfo
    runtime: str
    """The name of the runtime that loaded it."""
    keep_alive: float
    """Seconds it stays loaded after its last request (``FOREVER``: never unloaded)."""
    expires_at: dt.datetime | None
    """When it will be unloaded, while idle; None while in use or kept forever."""
    context_length: int
    node: str | None
    """Where it runs when the runtime spreads models over machines, else None."""

    @property
    def name(self) -> str: ...


@runtime_checkable
class Scheduler(Protocol):
    """``kernel.scheduler``: which models are loaded."""

    waiting: int
    """Requests waiting now for a slot, for room to load, or for a load (at most OLLAMA_MAX_QUEUE)."""

    def loaded(self) -> list[RunningModel]:
        """Loaded models, latest to expire first."""

    async def unload(self, info: ModelInfo) -> bool:
        """Unload the model now, or when its requests end; False when it was not loaded."""


@runtime_checkable
class Inference(Protocol):
    """``kernel.inference``: generation, chat and embeddings with Ollama's semantics, for every
    frontend to share. Errors are CorralErrors (ModelNotFound, InvalidRequest, ServerBusy...)."""

    def generate(self, request: GenerateRequest) -> AsyncIterator[Reply]:
        """Stream the answer; the last Reply has ``done=True`` and the metrics."""

    def chat(self, request: ChatRequest) -> AsyncIterator[Reply]:
        """Stream the assistant's turn; the last Reply has ``done=True`` and the metrics."""

    async def embed(self, request: EmbedRequest) -> Embeddings: ...

    async def capabilities(self, name: str) -> tuple[str, ...]:
        """What the model can do: ``completion`` or ``embedding``, ``tools``, ``insert``,
        ``thinking``, ``vision``..., as Ollama's /api/show lists them."""

    async def unload(self, name: str) -> ModelInfo:
        """Unload the model named ``name`` (stored names only)."""


@runtime_checkable
class Kernel(Protocol):
    """What plugins may use of the kernel: every hook that takes ``kernel`` gets one, and
    ``corral.sdk.http.kernel()`` gives it to a request handler."""

    settings: Settings
    """The effective settings; a plugin's own are in ``settings.plugin["<table>.<name>"]``."""
    pm: pluggy.PluginManager
    """The plugin manager, to call hooks a plugin added (``kernel.pm.hook.<name>(...)``)."""

    @property
    def store(self) -> Store: ...

    @property
    def inference(self) -> Inference: ...

    @property
    def scheduler(self) -> Scheduler: ...

    def source_for(self, reference: str) -> ModelSource:
        """The source that owns ``reference`` (``resolve_reference``), built on first use."""

    def runtime_for(self, model: ModelInfo) -> RuntimeSpec:
        """The runtime ``select_runtime`` chooses for ``model``; InvalidRequest when none can."""

    def quantizer_for(self, kind: str) -> Quantizer:
        """The quantizer that makes ``kind`` (``Q4_K_M``...); InvalidRequest naming the known types."""

    def create_model(self, request: CreateRequest) -> AsyncIterator[Progress]:
        """Make a model as /api/create does, streaming Ollama's statuses; nothing is written
        unless every check passes."""

    def emit(self, event: Event) -> None:
        """Tell every ``on_event`` observer (an observer that raises is logged and skipped)."""

    def running(self) -> AbstractAsyncContextManager[Kernel]:
        """Run the scheduler and every plugin's lifespan for the life of a server."""
