"""A validating, streaming reader of GGUF headers, metadata and tensor infos (v2 and v3, little-endian).

Every length, count, type and offset in the file is checked against the file size and
:class:`Limits` before it is used, so a malformed or hostile file raises
:class:`corral.errors.InvalidModelFile` instead of crashing a parser (llama.cpp's among them).

Text: keys and tensor names must be valid UTF-8 (they are identifiers; anything else is a corrupt
file). String values with invalid UTF-8 are kept with U+FFFD replacements, which is what Ollama's
JSON output shows for them, since some real vocabularies hold byte fragments.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Final, cast

from corral.errors import InvalidModelFile
from corral.gguf.constants import (
    DEFAULT_ALIGNMENT,
    GGML_TYPES,
    MAGIC,
    MAX_DIMS,
    MAX_TENSOR_NAME_BYTES,
    SCALAR_FORMATS,
    SUPPORTED_VERSIONS,
    ValueType,
)
from corral.gguf.records import DEFAULT_LIMITS, GGUFFile, Limits, MetadataValue, SkippedArray, TensorInfo
from corral.gguf.stream import U64, Stream

_INT64_MAX: Final = (1 << 63) - 1
_F32: Final = struct.Struct("<f")
_SCALARS: Final = {vtype: struct.Struct("<" + fmt) for vtype, fmt in SCALAR_FORMATS.items()}
_MIN_KV_BYTES: Final = 8 + 1 + 4 + 1  # key length, one key byte, value type, a one-byte value
_MIN_TENSOR_INFO_BYTES: Final = 8 + 4 + 4 + 8  # name length, n_dims, ggml type, offset


def read_gguf(
    path: str | os.PathLike[str],
    *,
    skip_arrays_longer_than: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    display_name: str | None = None,
) -> GGUFFile:
    """Read and validate the metadata and tensor infos of the GGUF file at ``path``.

    Arrays with more than ``skip_arrays_longer_than`` elements are validated and stepped over,
    and appear in ``metadata`` as :class:`SkippedArray`; ``0`` is what Ollama's /api/show does
    without ``verbose`` (every non-empty array becomes null), ``None`` keeps every array.
    ``display_name`` (default: the file's name) is what error messages call the file.
    Raises InvalidModelFile for anything malformed or outside ``limits``; OSError (missing
    file, permissions) is passed through.
    """
    path = Path(path)
    label = display_name if display_name is not None else path.name

    def fail(message: str) -> InvalidModelFile:
        return InvalidModelFile(f'invalid GGUF file "{label}": {message}')

    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        stream = Stream(file, size, limits.max_metadata_bytes, fail)
        try:
            return _Parser(stream, limits, skip_arrays_longer_than).parse()
        except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
            # Not reachable by design; a safety net so that a reader bug is still a clean error.
            raise fail(f"could not be parsed ({type(exc).__name__}: {exc})") from exc


class _Parser:
    def __init__(self, stream: Stream, limits: Limits, skip_longer_than: int | None):
        self.s = stream
        self.limits = limits
        self.skip_longer_than = skip_longer_than

    def parse(self) -> GGUFFile:
        version, n_tensors, n_kv = self._header()
        metadata, types = self._metadata(n_kv)
        alignment = self._alignment(metadata, types)
        tensors = self._tensor_infos(n_tensors, alignment)
        data_offset = -(-self.s.offset // alignment) * alignment
        self._check_tensor_data(tensors, data_offset)
        return GGUFFile(
            version=version,
            metadata=metadata,
            tensors=tuple(tensors),
            alignment=alignment,
            data_offset=data_offset,
            file_size=self.s.size,
        )

    def _header(self) -> tuple[int, int, int]:
        s = self.s
        if s.size < 4:
            s.error(f"the file is {s.size} bytes long, too short for a GGUF header")
        magic = s.read(4, "magic")
        if magic != MAGIC:
            s.error(f"bad magic {magic!r}, expected {MAGIC!r}: not a GGUF file")
        version = s.u32("version")
        if version not in SUPPORTED_VERSIONS:
            if version & 0xFFFF == 0 and (version >> 24) in (1, 2, 3):
                s.error("big-endian GGUF files are not supported")
            s.error(f"unsupported GGUF version {version} (supported: 2, 3)")
        n_tensors = s.u64("tensor count")
        n_kv = s.u64("metadata count")
        limit = self.limits.max_tensor_count
        if n_tensors > limit:
            s.error(f"tensor count {n_tensors} exceeds the limit of {limit}")
        limit = self.limits.max_kv_count
        if n_kv > limit:
            s.error(f"metadata count {n_kv} exceeds the limit of {limit}")
        needed = n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES
        if needed > s.remaining:
            s.error(
                f"{n_kv} metadata entries and {n_tensors} tensors need at least {needed} bytes "
                f"but only {s.remaining} follow the header"
            )
        return version, n_tensors, n_kv

    def _metadata(self, n_kv: int) -> tuple[dict[str, MetadataValue], dict[str, ValueType]]:
        s = self.s
        metadata: dict[str, MetadataValue] = {}
        types: dict[str, ValueType] = {}
        for index in range(n_kv):
            at = s.offset
            key = self._text(self.limits.max_key_bytes, f"metadata key #{index}")
            if not key:
                s.error(f"metadata key #{index} at offset {at} is empty")
            if key in metadata:
                s.error(f"duplicate metadata key {key!r} at offset {at}")
            vtype = self._value_type(f"value type of {key!r}")
            if vtype is ValueType.ARRAY:
                metadata[key] = self._array(key)
            else:
                metadata[key] = self._scalar(vtype, key)
            types[key] = vtype
        return metadata, types

    def _value_type(self, what: str) -> ValueType:
        at = self.s.offset
        raw = self.s.u32(what)
        try:
            return ValueType(raw)
        except ValueError:
            self.s.error(f"unknown {what} {raw} at offset {at}")

    def _scalar(self, vtype: ValueType, key: str) -> MetadataValue:
        if vtype is ValueType.STRING:
            return self.s.string(self._string_limit(key), f"string value of {key!r}").decode(
                "utf-8", "replace"
            )
        (value,) = self.s.unpack(_SCALARS[vtype], f"value of {key!r}")
        if vtype is ValueType.BOOL:
            return value != 0  # as llama.cpp reads it
        if vtype is ValueType.FLOAT32:
            return _shortest_f32(value)
        return value

    def _string_limit(self, key: str) -> int:
        if key.startswith("tokenizer.chat_template") or key == "tokenizer.huggingface.json":
            return self.limits.max_large_string_bytes
        return self.limits.max_string_bytes

    def _array(self, key: str) -> MetadataValue:
        s = self.s
        what = f"array {key!r}"
        etype = self._value_type(f"element type of {what}")
        if etype is ValueType.ARRAY:
            s.error(f"{what} is an array of arrays, which GGUF readers do not support")
        at = s.offset
        count = s.u64(f"length of {what}")
        if count > self.limits.max_array_length:
            s.error(
                f"length {count} of {what} at offset {at} exceeds the limit of "
                f"{self.limits.max_array_length} elements"
            )
        keep = self.skip_longer_than is None or count <= self.skip_longer_than
        if etype is ValueType.STRING:
            values = self._string_array(count, keep, what)
        else:
            values = self._number_array(etype, count, keep, what)
        if values is None:
            return SkippedArray(type=etype.name.lower(), length=count)
        return values

    def _number_array(self, etype: ValueType, count: int, keep: bool, what: str) -> list[Any] | None:
        item = _SCALARS[etype]
        nbytes = count * item.size
        if not keep:
            self.s.skip(nbytes, what)
            return None
        data = self.s.read(nbytes, what)
        if etype is ValueType.BOOL:
            return [byte != 0 for byte in data]
        values = list(struct.unpack(f"<{count}{SCALAR_FORMATS[etype]}", data))
        if etype is ValueType.FLOAT32:
            return [_shortest_f32(value) for value in values]
        return values

    def _string_array(self, count: int, keep: bool, what: str) -> list[str] | None:
        s = self.s
        if count * U64.size > s.remaining:
            s.error(f"{what} of {count} strings cannot fit in the {s.remaining} bytes left")
        return s.strings(count, self.limits.max_string_bytes, keep, f"string in {what}")

    def _alignment(self, metadata: dict[str, MetadataValue], types: dict[str, ValueType]) -> int:
        if "general.alignment" not in metadata:
            return DEFAULT_ALIGNMENT
        if types["general.alignment"] is not ValueType.UINT32:
            self.s.error(f"general.alignment must be a uint32, not {types['general.alignment'].name.lower()}")
        alignment = cast(int, metadata["general.alignment"])
        if alignment == 0 or alignment & (alignment - 1):
            self.s.error(f"general.alignment {alignment} is not a power of two")
        return alignment

    def _tensor_infos(self, n_tensors: int, alignment: int) -> list[TensorInfo]:
        s = self.s
        tensors: list[TensorInfo] = []
        names: set[str] = set()
        for index in range(n_tensors):
            at = s.offset
            name = self._text(MAX_TENSOR_NAME_BYTES, f"name of tensor #{index}")
            if name in names:
                s.error(f"duplicate tensor name {name!r} at offset {at}")
            names.add(name)
            what = f"tensor {name!r}"
            n_dims = s.u32(f"dimension count of {what}")
            if n_dims > MAX_DIMS:
                s.error(f"{what} has {n_dims} dimensions, more than {MAX_DIMS}")
            shape = tuple(s.u64(f"shape of {what}") for _ in range(n_dims))
            # ggml holds dims and element counts in int64; zero-length dims are legal there.
            n_elements = math.prod(shape)
            if any(dim > _INT64_MAX for dim in shape) or n_elements > _INT64_MAX:
                s.error(f"{what} shape {list(shape)} overflows a 64-bit element count")
            type_at = s.offset
            type_id = s.u32(f"type of {what}")
            if type_id not in GGML_TYPES:
                s.error(f"{what} has unknown ggml type {type_id} at offset {type_at}")
            type_name, block, type_size = GGML_TYPES[type_id]
            row = shape[0] if shape else 1
            if row % block:
                s.error(f"{what} rows of {row} elements are not a multiple of the {type_name} block size {block}")
            offset = s.u64(f"data offset of {what}")
            if offset % alignment:
                s.error(f"{what} data offset {offset} is not a multiple of the alignment {alignment}")
            tensors.append(
                TensorInfo(
                    name=name,
                    shape=shape,
                    type=type_name,
                    offset=offset,
                    size=n_elements // block * type_size,
                )
            )
        return tensors

    def _check_tensor_data(self, tensors: list[TensorInfo], data_offset: int) -> None:
        size = self.s.size
        if tensors and data_offset > size:
            self.s.error(f"the tensor data would start at {data_offset}, past the end of the file at {size}")
        previous: TensorInfo | None = None
        for tensor in sorted(tensors, key=lambda t: (t.offset, t.size)):
            end = data_offset + tensor.offset + tensor.size
            if end > size:
                self.s.error(
                    f"tensor {tensor.name!r} data ({tensor.size} bytes at data offset {tensor.offset}) "
                    f"ends at {end}, past the end of the file at {size}"
                )
            if previous is not None and previous.offset + previous.size > tensor.offset:
                self.s.error(f"tensor {tensor.name!r} data overlaps tensor {previous.name!r}")
            previous = tensor

    def _text(self, limit: int, what: str) -> str:
        at = self.s.offset
        raw = self.s.string(limit, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.s.error(f"{what} at offset {at} is not valid UTF-8")


def _shortest_f32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (1e-05, not 9.999999747378752e-06)."""
    if not math.isfinite(value):
        return value
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.unpack(_F32.pack(candidate))[0] == value:
                return candidate
        except OverflowError:
            continue
    return value
