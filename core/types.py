"""Records shared by the kernel and plugins. Frozen attrs classes; JSON only at the edges."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .names import ModelRef, validate_digest

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_PREFIX = "application/vnd.ollama.image."
MEDIA_MODEL = MEDIA_TYPE_PREFIX + "model"
MEDIA_PROJECTOR = MEDIA_TYPE_PREFIX + "projector"
MEDIA_ADAPTER = MEDIA_TYPE_PREFIX + "adapter"
MEDIA_TEMPLATE = MEDIA_TYPE_PREFIX + "template"
MEDIA_PROMPT = MEDIA_TYPE_PREFIX + "prompt"  # legacy name of the template layer
MEDIA_SYSTEM = MEDIA_TYPE_PREFIX + "system"
MEDIA_PARAMS = MEDIA_TYPE_PREFIX + "params"
MEDIA_LICENSE = MEDIA_TYPE_PREFIX + "license"
MEDIA_MESSAGES = MEDIA_TYPE_PREFIX + "messages"


# -- plugin registration records -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SettingSpec:
    """A setting a plugin declares. ``key`` is ``<table>.<name>``: ``[table] name = ...`` in the
    config file; ``env`` optionally names an environment variable that sets it too."""

    key: str = attrs.field()
    default: Any
    help: str
    converter: Callable[[Any], Any] = attrs.field(default=lambda value: value)
    env: str | None = None

    @key.validator
    def _check_key(self, _attribute: object, value: str) -> None:
        table, _, name = value.partition(".")
        if not table or not name:
            raise ValueError(f"setting key {value!r} must look like 'table.name'")


@attrs.frozen(kw_only=True)
class StoreSpec:
    """A storage backend: ``factory(settings)`` returns a BlobStore."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen(kw_only=True)
class SourceSpec:
    """A model source (registry, hub, local files): ``factory(kernel)`` returns a ModelSource."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen(kw_only=True)
class RuntimeSpec:
    """A runtime that loads models of the given formats; higher priority wins among candidates.

    ``factory(kernel)`` is called lazily, the first time a model needs this runtime.
    """

    name: str
    formats: tuple[str, ...] = attrs.field(converter=tuple)
    factory: Callable[..., Any]
    priority: int = 0
    description: str = ""


@attrs.frozen(kw_only=True)
class QuantizerSpec:
    """A weight quantizer for the listed target ``types`` (upper case, llama.cpp's names such as
    ``Q4_K_M``). ``factory(kernel)`` is called on first use and returns a Quantizer."""

    name: str
    types: tuple[str, ...] = attrs.field(converter=lambda types: tuple(t.upper() for t in types))
    factory: Callable[..., Any]
    description: str = ""


# -- the model store -------------------------------------------------------------------------


def _digest(value: str) -> str:
    return validate_digest(value)


@attrs.frozen(kw_only=True)
class Layer:
    media_type: str
    digest: str = attrs.field(converter=_digest)
    size: int
    from_: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            data["from"] = self.from_
        if self.name:
            data["name"] = self.name
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Layer:
        size = data.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"layer size {size!r} is not a byte count")
        media_type = data.get("mediaType")
        if not isinstance(media_type, str):
            raise ValueError("layer has no mediaType")
        return cls(
            media_type=media_type,
            digest=data.get("digest", ""),
            size=size,
            from_=data.get("from") or None,
            name=data.get("name") or None,
        )


@attrs.frozen(kw_only=True)
class Manifest:
    """A Docker v2 schema 2 manifest, the way Ollama stores one model."""

    config: Layer
    layers: tuple[Layer, ...] = attrs.field(converter=tuple)
    schema_version: int = 2
    media_type: str = MEDIA_TYPE_MANIFEST

    @property
    def size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)

    @property
    def digests(self) -> list[str]:
        return [self.config.digest, *(layer.digest for layer in self.layers)]

    def layers_of(self, media_type: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.media_type == media_type]

    def layer_of(self, media_type: str) -> Layer | None:
        found = self.layers_of(media_type)
        return found[-1] if found else None


@attrs.frozen(kw_only=True)
class ModelInfo:
    """A model in the store: its name, manifest, parsed config blob and file facts."""

    ref: ModelRef
    manifest: Manifest
    digest: str  # hex sha256 of the manifest file's bytes, as Ollama reports it
    modified_at: dt.datetime
    config: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return self.ref.display

    @property
    def size(self) -> int:
        return self.manifest.size

    def details(self) -> dict[str, Any]:
        """Ollama's ``details`` object, read from the config blob."""
        config = self.config
        model_layer = self.manifest.layer_of(MEDIA_MODEL)
        return {
            "parent_model": (model_layer.from_ if model_layer and model_layer.from_ else ""),
            "format": config.get("model_format", ""),
            "family": config.get("model_family", ""),
            "families": config.get("model_families"),
            "parameter_size": config.get("model_type", ""),
            "quantization_level": config.get("file_type", ""),
        }


# -- events ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Event:
    """Base of everything passed to ``on_event``. Observers must be cheap and must not raise."""

    at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.timezone.utc))

    @property
    def kind(self) -> str:
        return type(self).__name__


@attrs.frozen(kw_only=True)
class ModelStored(Event):
    """A manifest was written (create, pull, copy)."""

    name: str
    digest: str


@attrs.frozen(kw_only=True)
class ModelDeleted(Event):
    name: str
    blobs_removed: int


@attrs.frozen(kw_only=True)
class BlobsPruned(Event):
    count: int
    bytes: int


@attrs.frozen(kw_only=True)
class Progress:
    """One line of a pull, push or create stream, as Ollama's ProgressResponse."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


@attrs.frozen(kw_only=True)
class BlobPart:
    """One byte range of a blob being downloaded: ``completed`` bytes from ``offset`` are written.

    A partial blob's parts tile ``[0, size)``; they survive restarts so a download resumes.
    """

    index: int
    offset: int
    size: int
    completed: int = 0

    @property
    def done(self) -> bool:
        return self.completed >= self.size


# -- runtimes --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LoadSpec:
    """What a runtime needs to load a model: its files and load-time options."""

    name: str
    model_path: str
    format: str = "gguf"
    adapters: tuple[str, ...] = ()
    projector: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    """Load-time options: num_ctx (already capped to the model's), num_batch, num_thread, use_mmap..."""
    num_parallel: int = 1
    embedding: bool = False


@attrs.frozen(kw_only=True)
class CompletionRequest:
    prompt: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    images: tuple[bytes, ...] = ()
    context: tuple[int, ...] = ()
    format: Any = None
    """None, "json" or a JSON schema (a dict) that the output must follow."""


@attrs.frozen(kw_only=True)
class CompletionChunk:
    text: str = ""
    done: bool = False
    done_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_duration_ns: int = 0
    eval_duration_ns: int = 0
    context: tuple[int, ...] = ()


@attrs.frozen(kw_only=True)
class ModelParts:
    """The contents of a model's small layers, and where its weights are, ready to run or show."""

    model_path: str | None
    projector_path: str | None = None
    adapter_paths: tuple[str, ...] = ()
    template: str | None = None
    system: str | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict)
    licenses: tuple[str, ...] = ()
    messages: tuple[Mapping[str, Any], ...] = ()


@attrs.frozen(kw_only=True)
class ModelLoaded(Event):
    name: str
    runtime: str
    seconds: float
    node: str | None = None
    """Where it runs when the runtime spreads models over machines (e.g. a Ray node's address)."""


@attrs.frozen(kw_only=True)
class ModelUnloaded(Event):
    name: str
    reason: str
    """``expired``, ``unloaded`` (asked for or evicted), ``runner exited``, ``shutdown``..."""


@attrs.frozen(kw_only=True)
class RunnerStarted(Event):
    """A runtime started the process (or actor) that serves a model."""

    name: str
    runtime: str
    node: str | None = None


@attrs.frozen(kw_only=True)
class RunnerStopped(Event):
    """A runner ended: asked to stop (``crashed=False``) or died on its own (``crashed=True``)."""

    name: str
    runtime: str
    crashed: bool
    reason: str = ""


@attrs.frozen(kw_only=True)
class RequestFinished(Event):
    """One HTTP request answered, whatever its outcome; emitted once, after the last byte.

    ``endpoint`` is the route pattern (``/api/chat``, ``/v1/chat/completions``, ``/api/blobs/{digest}``),
    never the raw path, so it stays low-cardinality. The inference fields stay zero for requests
    that ran no model. ``rejected`` names why a request was refused before any work: ``busy``
    (503 queue full), ``too_large`` (413), ``unauthorized`` (401), ``forbidden`` (403),
    ``invalid`` (other 4xx); None otherwise.
    """

    endpoint: str
    method: str
    status: int
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_seconds: float = 0.0
    load_seconds: float = 0.0
    ttft_seconds: float | None = None
    total_seconds: float = 0.0
    rejected: str | None = None


@attrs.frozen(kw_only=True)
class TransferProgress(Event):
    """Bytes moved by a pull or push since the last such event for the same transfer (a delta,
    so observers can add them up); emitted at most a few times a second per transfer."""

    direction: str  # "pull" or "push"
    model: str
    bytes: int


@attrs.frozen(kw_only=True)
class TransferFinished(Event):
    """A pull or push ended: ``error`` is None on success, a short message otherwise."""

    direction: str
    model: str
    bytes: int
    seconds: float
    error: str | None = None


# -- inference: what frontends ask ``kernel.inference`` and what it answers ------------------------


@attrs.frozen(kw_only=True)
class Metrics:
    """Timings and token counts of one request, in Ollama's units (nanoseconds)."""

    total_ns: int = 0
    load_ns: int = 0
    prompt_tokens: int = 0
    prompt_ns: int = 0
    eval_tokens: int = 0
    eval_ns: int = 0


@attrs.frozen(kw_only=True)
class Reply:
    """One piece of a streamed answer; the last has ``done=True`` and the metrics."""

    text: str = ""
    thinking: str = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    done: bool = False
    done_reason: str | None = None
    context: tuple[int, ...] | None = None
    metrics: Metrics | None = None


@attrs.frozen(kw_only=True)
class GenerateRequest:
    """A completion of ``prompt`` with Ollama's /api/generate semantics (template, system, raw...)."""

    model: str
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: tuple[int, ...] = ()
    raw: bool = False
    format: Any = None
    images: tuple[bytes, ...] = ()
    options: Mapping[str, Any] = attrs.field(factory=dict)
    keep_alive: float | None = None
    think: bool | str | None = None


@attrs.frozen(kw_only=True)
class ChatRequest:
    """A chat turn with Ollama's /api/chat semantics; ``messages`` are Ollama's message objects."""

    model: str
    messages: tuple[Mapping[str, Any], ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()
    format: Any = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    keep_alive: float | None = None
    think: bool | str | None = None
    truncate: bool = True


@attrs.frozen(kw_only=True)
class EmbedRequest:
    """Embeddings of ``inputs``; ``normalize=False`` gives raw vectors (the legacy /api/embeddings)."""

    model: str
    inputs: tuple[str, ...]
    truncate: bool = True
    dimensions: int | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    keep_alive: float | None = None
    normalize: bool = True


@attrs.frozen(kw_only=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    metrics: Metrics


# -- creating models -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CreateRequest:
    """Ollama's current /api/create form, parsed and validated (``kernel.create_model(request)``)."""

    model: str
    from_: str | None = None
    """An existing model whose layers are reused, or None."""
    files: Mapping[str, str] = attrs.field(factory=dict)
    """File name -> ``sha256:...`` of blobs already in the store: one GGUF file (plus an optional
    projector GGUF), or the files of a safetensors folder."""
    adapters: Mapping[str, str] = attrs.field(factory=dict)
    """LoRA GGUF file name -> digest."""
    template: str | None = None
    system: str | None = None
    license: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = attrs.field(factory=dict)
    messages: tuple[Mapping[str, Any], ...] = ()
    quantize: str | None = None
