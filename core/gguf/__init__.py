"""GGUF metadata: a validating streaming reader, and Ollama's human parameter count."""

from corral.gguf.constants import FILE_TYPES, GGML_TYPES, ValueType
from corral.gguf.human import human_number
from corral.gguf.reader import read_gguf
from corral.gguf.records import (
    DEFAULT_LIMITS,
    GGUFFile,
    Limits,
    MetadataValue,
    SkippedArray,
    TensorInfo,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FILE_TYPES",
    "GGML_TYPES",
    "GGUFFile",
    "Limits",
    "MetadataValue",
    "SkippedArray",
    "TensorInfo",
    "ValueType",
    "human_number",
    "read_gguf",
]
