"""corral: a local model server that speaks Ollama's API, built as a plugin kernel.

This module is the public plugin API: plugin authors import only from ``corral``.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    BlobNotFound,
    ConfigError,
    CorralError,
    DigestMismatch,
    InvalidDigest,
    InvalidModelFile,
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    PluginError,
    PullError,
    RuntimeFailure,
    ServerBusy,
    StoreError,
    TemplateError,
)
from .hookspecs import hookimpl, hookspec
from .interfaces import BlobStore, LoadedModel, ModelSource, PartialBlob, Quantizer, Runtime
from .names import ModelRef, parse_reference, validate_digest
from .types import (
    BlobPart,
    BlobsPruned,
    CompletionChunk,
    CompletionRequest,
    Event,
    Layer,
    LoadSpec,
    Manifest,
    ModelDeleted,
    ModelInfo,
    ModelLoaded,
    ModelStored,
    ModelUnloaded,
    Progress,
    QuantizerSpec,
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

__all__ = [
    "BlobNotFound", "BlobPart", "BlobStore", "BlobsPruned", "CompletionChunk", "CompletionRequest", "ConfigError", "CorralError",
    "DigestMismatch", "Event", "InvalidDigest", "InvalidModelFile", "InvalidName", "InvalidRequest",
    "Layer", "LoadSpec", "LoadedModel", "Manifest", "ModelDeleted", "ModelInfo", "ModelLoaded", "ModelNotFound",
    "ModelRef", "ModelStored", "ModelUnloaded",
    "ModelSource", "PartialBlob", "PluginError", "Progress", "PullError", "Quantizer", "QuantizerSpec",
    "RequestFinished", "RunnerStarted", "RunnerStopped", "Runtime", "RuntimeFailure", "RuntimeSpec",
    "ServerBusy", "SettingSpec", "SourceSpec", "StoreError", "StoreSpec", "TemplateError", "TransferFinished",
    "TransferProgress",
    "hookimpl", "hookspec", "parse_reference", "validate_digest",
]
