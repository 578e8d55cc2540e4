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
    CompletionChunk,
    CompletionRequest,
    Event,
    Layer,
    LoadSpec,
    Manifest,
    ModelInfo,
    Progress,
    QuantizerSpec,
    RuntimeSpec,
    SettingSpec,
    SourceSpec,
    StoreSpec,
)

try:
    __version__ = version("corral")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = [
    "BlobNotFound", "BlobPart", "BlobStore", "CompletionChunk", "CompletionRequest", "ConfigError", "CorralError",
    "DigestMismatch", "Event", "InvalidDigest", "InvalidModelFile", "InvalidName", "InvalidRequest",
    "Layer", "LoadSpec", "LoadedModel", "Manifest", "ModelInfo", "ModelNotFound", "ModelRef",
    "ModelSource", "PartialBlob", "PluginError", "Progress", "PullError", "Quantizer", "QuantizerSpec", "Runtime",
    "RuntimeFailure", "RuntimeSpec",
    "ServerBusy", "SettingSpec", "SourceSpec", "StoreError", "StoreSpec", "TemplateError",
    "hookimpl", "hookspec", "parse_reference", "validate_digest",
]
