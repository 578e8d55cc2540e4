"""encoding/json.Marshal for template values: what Ollama's ``json`` template function prints."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

from ..gofmt import format_float
from ..govalues import (
    NIL,
    Named,
    Pointer,
    Struct,
    is_function,
    length,
    sorted_keys,
    struct_fields,
)


class UnsupportedValue(Exception):
    """A value json.Marshal refuses (NaN, infinities, functions)."""


_HEX = "0123456789abcdef"


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in '"\\':
        return "\\" + char
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    if char == "\t":
        return "\\t"
    if char == "\b":
        return "\\b"
    if char == "\f":
        return "\\f"
    if code < 0x20 or char in "<>&":
        return "\\u00" + _HEX[code >> 4] + _HEX[code & 0xF]
    if char in "\u2028\u2029":
        return f"\\u{code:04x}"
    if 0xD800 <= code <= 0xDFFF:  # invalid UTF-8 (or a lone surrogate) becomes U+FFFD
        return "\\ufffd"
    return char


def encode_string(text: str) -> str:
    """A JSON string with Go's escapes: HTML-safe (``<`` is ``\\u003c``), raw UTF-8 otherwise."""
    if text.isascii() and text.isprintable() and not any(c in text for c in '"\\<>&'):
        return '"' + text + '"'
    return '"' + "".join(_escape_char(c) for c in text) + '"'


def encode_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise UnsupportedValue(f"json: unsupported value: {format_float(value, 'g')}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = format_float(value, "e")
        mantissa, _, exponent = text.partition("e")
        if exponent.startswith("-0"):
            exponent = "-" + exponent[2:]
        return mantissa + "e" + exponent
    return format_float(value, "f")


def _is_empty(value: Any) -> bool:
    if value is None or value is NIL:
        return True
    if isinstance(value, (bool, int, float, complex)):
        return value == 0
    if isinstance(value, Pointer):
        return value.elem is None
    size = length(value)
    return size == 0 if size is not None else False


def _map_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise UnsupportedValue(f"json: unsupported type: map[{type(key).__name__}]")


def marshal(value: Any) -> str:
    """json.Marshal(value) as a string; raises UnsupportedValue where Go returns an error."""
    if value is None or value is NIL:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, str):
        return encode_string(value)
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(marshal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        keyed = {_map_key(k): v for k, v in value.items()}
        return "{" + ",".join(encode_string(k) + ":" + marshal(keyed[k]) for k in sorted_keys(list(keyed))) + "}"
    if isinstance(value, Named):
        if value.type.marshal_json is not None:
            return value.type.marshal_json(value)
        return "null" if value.nil else marshal(value.value)
    if isinstance(value, Pointer):
        return "null" if value.elem is None else marshal(value.elem)
    if isinstance(value, Struct):
        if value.type.marshal_json is not None:
            return value.type.marshal_json(value)
        parts = []
        for spec in value.type.fields:
            item = value.values.get(spec.name)
            if spec.skip_json or spec.omitempty and _is_empty(item):
                continue
            parts.append(encode_string(spec.json or spec.name) + ":" + marshal(item))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, complex) or is_function(value):
        raise UnsupportedValue(f"json: unsupported type: {type(value).__name__}")
    return "{" + ",".join(encode_string(name) + ":" + marshal(item) for name, item in struct_fields(value)) + "}"
