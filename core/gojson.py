"""JSON encoded the way Go's encoding/json writes it, for byte-compatible files and responses:
compact, raw UTF-8 with ``<``, ``>`` and ``&`` escaped, and floats formatted as Go formats them
(``100000`` not ``100000.0``, ``0.00001`` not ``1e-05``).

This is the fast path for plain JSON values (it runs per streamed token); the template engine's
``corral.gotemplate.gojson.marshal`` handles Go structs and omitempty."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .gotemplate.gojson import encode_float

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TABLE = str.maketrans(_GO_ESCAPES)
_string = json.JSONEncoder(ensure_ascii=False).encode


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(encode_float(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """Compact JSON as Go's json.Marshal writes it."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).translate(_TABLE)


def string(value: str) -> str:
    """One string as Go's json.Marshal writes it, for objects pre-encoded around it."""
    return _string(value).translate(_TABLE)
