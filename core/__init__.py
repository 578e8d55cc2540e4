"""corral: a local model server that speaks Ollama's API, built as a plugin kernel.

This module is the public plugin API, with ``corral.sdk.*`` (toolkits for frontends, sources and
the command line) and ``corral.testing`` (fakes and fixtures): plugin authors import only from
those. Everything else may change; an import contract checked in CI keeps the bundled plugins to
the same rule. ``docs/plugin_hooks.md`` describes the hooks and what each name here is for.

Every name is imported from its module on first use, so that ``import corral`` (which every start
of the command line does) costs nothing until a name is needed; ``from corral import hookimpl``
loads pluggy and nothing else. ``_MODULES`` says where each name lives; the imports under
``TYPE_CHECKING`` say the same to type checkers (a test keeps the two in step).
"""

from __future__ import annotations

from ._lazy import lazy_attributes

TYPE_CHECKING = False  # not typing's: importing typing costs more than the rest of this module
if TYPE_CHECKING:
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
    from .store import Hold, Leftover, decode_manifest, encode_manifest, in_use, manifest_digest
    from .usage import Usage, recording_usage

_MODULES: dict[str, tuple[str, ...]] = {  # submodule: the names it gives
    "durations": ("FOREVER", "format_go_duration", "parse_go_duration", "parse_keep_alive"),
    "errors": ("BlobNotFound", "ConfigError", "ConversionError", "CorralError", "DigestMismatch", "InvalidDigest",
        "InvalidModelFile", "InvalidName", "InvalidRequest", "ModelNotFound", "NoSpace", "PluginError",
        "PullError", "RuntimeFailure", "ServerBusy", "StoreError", "TemplateError"),
    "hookspecs": ("hookimpl", "hookspec"),
    "interfaces": ("BlobStore", "Inference", "Kernel", "LoadedModel", "ModelSource", "PartialBlob", "Quantizer",
        "RunningModel", "Runtime", "Scheduler", "Store"),
    "names": ("DEFAULT_HOST", "DEFAULT_NAMESPACE", "DEFAULT_TAG", "ModelRef", "parse_reference",
        "validate_digest"),
    "settings": ("HostSpec", "Settings", "is_loopback_host", "parse_bool", "parse_count", "parse_duration",
        "parse_host", "parse_key", "parse_list", "parse_path", "parse_port", "parse_positive_duration",
        "parse_string"),
    "types": ("MEDIA_ADAPTER", "MEDIA_LICENSE", "MEDIA_MESSAGES", "MEDIA_MODEL", "MEDIA_PARAMS",
        "MEDIA_PROJECTOR", "MEDIA_PROMPT", "MEDIA_SYSTEM", "MEDIA_TEMPLATE", "MEDIA_TYPE_CONFIG",
        "MEDIA_TYPE_MANIFEST", "BlobPart", "BlobsPruned", "ChatRequest", "CompletionChunk", "CompletionRequest",
        "CreateRequest", "EmbedRequest", "Embeddings", "Event", "GenerateRequest", "Layer", "LoadSpec",
        "Manifest", "Metrics", "ModelDeleted", "ModelInfo", "ModelLoaded", "ModelParts", "ModelStored",
        "ModelUnloaded", "Progress", "QuantizerSpec", "Reply", "RequestFinished", "RunnerStarted",
        "RunnerStopped", "RuntimeSpec", "SettingSpec", "SourceSpec", "StoreSpec", "TransferFinished",
        "TransferProgress"),
    "store": ("Hold", "Leftover", "decode_manifest", "encode_manifest", "in_use", "manifest_digest"),
    "usage": ("Usage", "recording_usage"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


_lazy = lazy_attributes(__name__, _HOME)


def __getattr__(name: str) -> Any:
    if name != "__version__":
        return _lazy(name)
    from importlib.metadata import PackageNotFoundError, version

    try:
        globals()[name] = version("corral")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        globals()[name] = "0.0.0"
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME, "__version__"})


__all__ = sorted(_HOME)
