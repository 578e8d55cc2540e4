"""The pieces of a SentencePiece ``tokenizer.model`` (a ModelProto protobuf), read with a small
bounds-checked protobuf decoder: only ModelProto.pieces (field 1) and each piece's text (1),
score (2) and type (3) are needed."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import attrs

from corral.errors import ConversionError

MAX_MODEL_BYTES = 64 * 1024 * 1024

# sentencepiece_model.proto SentencePiece.Type; the GGUF token types use the same numbers.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@attrs.frozen(kw_only=True)
class Piece:
    text: str
    score: float = 0.0
    kind: int = NORMAL


def read_pieces(path: Path) -> list[Piece]:
    """Every piece of the model, by id; a ConversionError naming the file if it is not one."""
    try:
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ConversionError(f"{path.name}: larger than {MAX_MODEL_BYTES >> 20} MB, not a tokenizer model")
        data = path.read_bytes()
    except OSError as e:
        raise ConversionError(f"{path.name}: cannot read ({e.strerror or e})") from e
    try:
        pieces = [_piece(value) for field, value in _fields(data) if field == 1]
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ConversionError(f"{path.name}: not a SentencePiece model ({e})") from e
    if not pieces:
        raise ConversionError(f"{path.name}: not a SentencePiece model (no pieces)")
    return pieces


def _piece(message: bytes | int) -> Piece:
    if not isinstance(message, bytes):
        raise ValueError("piece is not a message")
    text, score, kind = None, 0.0, NORMAL
    for field, value in _fields(message):
        if field == 1 and isinstance(value, bytes):
            text = value.decode("utf-8")
        elif field == 2 and isinstance(value, bytes) and len(value) == 4:
            score = struct.unpack("<f", value)[0]
        elif field == 3 and isinstance(value, int):
            kind = value
    if text is None or not NORMAL <= kind <= BYTE:
        raise ValueError("piece without text or with an unknown type")
    return Piece(text=text, score=score, kind=kind)


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) pairs: ints for varints, bytes for the other wire types."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield field, value
            continue
        if wire == 2:
            length, pos = _varint(data, pos)
        elif wire in (1, 5):
            length = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos + length > len(data):
            raise ValueError("field runs past the end of the data")
        yield field, data[pos:pos + length]
        pos += length


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
