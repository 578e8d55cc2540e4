"""A small, strict reader of safetensors files: the JSON header is checked (length, dtypes,
shapes, offsets) before any tensor is touched, and tensors are read through numpy memory maps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import numpy as np

from corral.errors import ConversionError

MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype -> numpy dtype of the stored bytes (BF16 is read as raw 16-bit words).
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@attrs.frozen(kw_only=True)
class StoredTensor:
    """Where one tensor's bytes are in a safetensors file."""

    file: Path
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute, from the start of the file
    nbytes: int

    def read(self) -> np.ndarray:
        """The tensor as a float32 or float16 array (memory-mapped where no conversion is needed)."""
        if self.dtype not in FLOAT_DTYPES:
            raise ConversionError(f"{self.file.name}: tensor {self.name!r} has dtype {self.dtype}, "
                                  "which is not a floating-point type")
        stored = DTYPES[self.dtype]
        count = math.prod(self.shape)
        if count == 0:
            data = np.zeros(self.shape, dtype=stored)
        else:
            data = np.memmap(self.file, dtype=stored, mode="r", offset=self.offset, shape=(count,))
            data = data.reshape(self.shape)
        if self.dtype == "BF16":
            return (data.astype(np.uint32) << 16).view(np.float32)
        if self.dtype == "F64":
            return data.astype(np.float32)
        return data


def read_header(path: Path) -> dict[str, StoredTensor]:
    """The tensors of one safetensors file, by name; raises ConversionError naming the file
    and what is wrong when the header does not describe the file."""
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ConversionError(f"{name}: truncated safetensors file ({size} bytes, no header)")
            length = int.from_bytes(prefix, "little")
            if length == 0 or length > MAX_HEADER_BYTES:
                raise ConversionError(f"{name}: corrupt safetensors header (header length {length})")
            if 8 + length > size:
                raise ConversionError(f"{name}: truncated safetensors file (header of {length} bytes, "
                                      f"file of {size} bytes)")
            raw = f.read(length)
    except OSError as e:
        raise ConversionError(f"{name}: cannot read ({e.strerror or e})") from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{name}: corrupt safetensors header (not JSON: {e})") from e
    if not isinstance(header, dict):
        raise ConversionError(f"{name}: corrupt safetensors header (not a JSON object)")
    data_start = 8 + length
    data_size = size - data_start
    tensors: dict[str, StoredTensor] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        tensors[key] = _tensor_entry(path, key, entry, data_start, data_size)
    return tensors


def _tensor_entry(path: Path, key: str, entry: object, data_start: int, data_size: int) -> StoredTensor:
    where = f"{path.name}: tensor {key!r}"
    if not isinstance(entry, dict):
        raise ConversionError(f"{where}: corrupt safetensors header (entry is not an object)")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPES:
        raise ConversionError(f"{where}: unknown or unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                               for n in shape):
        raise ConversionError(f"{where}: corrupt safetensors header (bad shape {shape!r})")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)):
        raise ConversionError(f"{where}: corrupt safetensors header (bad data_offsets {offsets!r})")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise ConversionError(f"{where}: corrupt safetensors header (data_offsets {offsets} out of order)")
    if end > data_size:
        raise ConversionError(f"{where}: data_offsets {offsets} out of range: the file holds only "
                              f"{data_size} bytes of tensor data (truncated file?)")
    expected = math.prod(shape) * DTYPES[dtype].itemsize
    if end - begin != expected:
        raise ConversionError(f"{where}: corrupt safetensors header ({end - begin} bytes for shape "
                              f"{shape} of {dtype}, expected {expected})")
    return StoredTensor(file=path, name=key, dtype=dtype, shape=tuple(shape),
                        offset=data_start + begin, nbytes=expected)
