"""corral: a local model server that speaks Ollama's API, built as a plugin kernel.

This module is the public plugin API, with ``corral.sdk.*`` (toolkits for frontends, sources and
the command line) and ``corral.testing`` (fakes and fixtures): plugin authors import only from
those. Everything else may change; an import contract checked in CI keeps the bundled plugins to
the same rule. ``docs/plugin_hooks.md`` describes the hooks and what each name here is for.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .durations import FOREVER, format_go_duration, parse_go_duration, parse_keep_alive
from .errors import (
    BlobNotFound,
    ConfigError,
    ConversionError,
    CorralError,
    DigestMismatch,
    InvalidDigest,
    InvalidModelFile,
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    NoSpace,
    PluginError,
    PullError,
    RuntimeFailure,
    ServerBusy,
    StoreError,
    TemplateError,
)
from .hookspecs import hookimpl, hookspec
from .interfaces import (
    BlobStore,
    Inference,
    Kernel,
    LoadedModel,
    ModelSource,
    PartialBlob,
    Quantizer,
    RunningModel,
    Runtime,
    Scheduler,
    Store,
)
from .store import Hold, Leftover, in_use
from .names import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelRef, parse_reference, validate_digest
from .settings import (
    HostSpec,
    Settings,
    is_loopback_host,
    parse_bool,
    parse_count,
    parse_duration,
    parse_host,
    parse_key,
    parse_list,
    parse_path,
    parse_port,
    parse_positive_duration,
    parse_string,
)
from .types import (
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    BlobPart,
    BlobsPruned,
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
    Metrics,
    ModelDeleted,
    ModelInfo,
    ModelLoaded,
    ModelParts,
    ModelStored,
    ModelUnloaded,
    Progress,
    QuantizerSpec,
    Reply,
    RequestFinished,
    RunnerStarted,
    RunnerStopped,
    RuntimeSpec,
    SettingSpec,
    SourceSpec,
    StoreSpec,
    TransferFinished,
    TransferProgress,
)

try:
    __version__ = version("corral")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

_LAZY = {
    # The store's manifest rules, for sources that receive a manifest from elsewhere; loaded on
    # first use so that ``import corral`` (every CLI start) stays light.
    "decode_manifest": "store",
    "encode_manifest": "store",
    "manifest_digest": "store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")


__all__ = [
    "DEFAULT_HOST", "DEFAULT_NAMESPACE", "DEFAULT_TAG", "FOREVER",
    "MEDIA_ADAPTER", "MEDIA_LICENSE", "MEDIA_MESSAGES", "MEDIA_MODEL", "MEDIA_PARAMS", "MEDIA_PROJECTOR",
    "MEDIA_PROMPT", "MEDIA_SYSTEM", "MEDIA_TEMPLATE", "MEDIA_TYPE_CONFIG", "MEDIA_TYPE_MANIFEST",
    "BlobNotFound", "BlobPart", "BlobStore", "BlobsPruned", "ChatRequest", "CompletionChunk", "CompletionRequest",
    "ConfigError", "ConversionError", "CorralError", "CreateRequest", "DigestMismatch", "EmbedRequest",
    "Embeddings", "Event", "GenerateRequest", "HostSpec", "Inference", "InvalidDigest", "InvalidModelFile",
    "InvalidName", "InvalidRequest", "Kernel", "Layer", "LoadSpec", "LoadedModel", "Manifest", "Metrics",
    "Hold", "Leftover", "ModelDeleted", "ModelInfo", "ModelLoaded", "ModelNotFound", "NoSpace", "ModelParts", "ModelRef", "ModelSource",
    "ModelStored", "ModelUnloaded", "PartialBlob", "PluginError", "Progress", "PullError", "Quantizer",
    "QuantizerSpec", "Reply", "RequestFinished", "RunnerStarted", "RunnerStopped", "RunningModel", "Runtime",
    "RuntimeFailure", "RuntimeSpec", "Scheduler", "ServerBusy", "SettingSpec", "Settings", "SourceSpec", "Store",
    "StoreError", "StoreSpec", "TemplateError", "TransferFinished", "TransferProgress",
    "decode_manifest", "encode_manifest", "format_go_duration", "hookimpl", "hookspec", "manifest_digest",
    "in_use", "is_loopback_host", "parse_bool", "parse_count", "parse_duration", "parse_go_duration", "parse_host", "parse_keep_alive", "parse_key",
    "parse_list", "parse_path", "parse_port", "parse_positive_duration", "parse_reference", "parse_string",
    "validate_digest",
]
