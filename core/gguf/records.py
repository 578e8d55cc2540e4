"""What the reader returns: a GGUF file's metadata and tensor layout, never its tensor data."""

from __future__ import annotations

import math
from typing import Any

import attrs

from corral.gguf.constants import FILE_TYPES


@attrs.frozen(kw_only=True)
class Limits:
    """Bounds a GGUF file must stay within before anything it declares is trusted.

    The defaults are far above any published model (the largest vocabularies are about 260k
    tokens, whole metadata sections about 10 MiB, tensor counts a few thousand). The metadata
    budget is what bounds memory: a hostile file read with every array kept costs at most about
    400 MB of Python objects (6.7 million two-byte strings); with arrays skipped, next to nothing.
    """

    max_tensor_count: int = 1 << 17
    max_kv_count: int = 1 << 16
    max_key_bytes: int = 4096
    max_string_bytes: int = 1 << 20
    # tokenizer.chat_template (and its named variants) and tokenizer.huggingface.json; Ollama
    # caps every string at 16 MiB, so a longer one would not load in Ollama either.
    max_large_string_bytes: int = 16 << 20
    max_array_length: int = 1 << 24
    # Everything before the tensor data: header, metadata and tensor infos.
    max_metadata_bytes: int = 64 << 20


DEFAULT_LIMITS = Limits()


@attrs.frozen(kw_only=True)
class SkippedArray:
    """An array the reader validated and stepped over without keeping its values.

    The HTTP edge shows it as ``null``, as Ollama's /api/show does without ``verbose``.
    """

    type: str  # element type: "uint8", ..., "float64", "bool", "string"
    length: int


# A metadata value: arrays are lists of one scalar type, or SkippedArray when not kept.
MetadataValue = int | float | bool | str | list[int] | list[float] | list[bool] | list[str] | SkippedArray


@attrs.frozen(kw_only=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # in file order: shape[0] is the innermost (row) dimension
    type: str  # ggml type name: "F32", "Q4_K", ...
    offset: int  # from the start of the data section, as stored in the file
    size: int  # bytes

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@attrs.frozen(kw_only=True)
class GGUFFile:
    version: int
    metadata: dict[str, MetadataValue]  # in file order
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int  # absolute offset of the (aligned) tensor data section
    file_size: int

    @property
    def architecture(self) -> str | None:
        return self._get("general.architecture", str)

    @property
    def parameter_count(self) -> int:
        """Sum of the tensors' element counts; Ollama reports this, not general.parameter_count."""
        return sum(tensor.n_elements for tensor in self.tensors)

    @property
    def file_type(self) -> str:
        """``general.file_type`` named as llama.cpp and Ollama name it (``Q4_K_M``), or ``unknown``.

        Ollama's own FileType.String() says ``unknown`` for the IQ*/TQ* types and, because it
        treats 0 as absent, for an all-F32 file; here those get their llama.cpp names.
        """
        value = self._get("general.file_type", int)
        return FILE_TYPES.get(value, "unknown") if value is not None else "unknown"

    @property
    def context_length(self) -> int | None:
        return self._arch_get("context_length", int)

    @property
    def embedding_length(self) -> int | None:
        return self._arch_get("embedding_length", int)

    @property
    def pooling_type(self) -> int | None:
        """``<arch>.pooling_type``; Ollama gives a model the embedding capability when it is present."""
        return self._arch_get("pooling_type", int)

    @property
    def chat_template(self) -> str | None:
        return self._get("tokenizer.chat_template", str)

    def _arch_get(self, suffix: str, kind: type) -> Any:
        architecture = self.architecture
        return self._get(f"{architecture}.{suffix}", kind) if architecture else None

    def _get(self, key: str, kind: type) -> Any:
        value = self.metadata.get(key)
        # bool is an int subclass; a bool where a count is expected is as wrong as a string.
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        return None
