"""JSON encoded the way Go's encoding/json writes it, for byte-compatible files and responses."""

from __future__ import annotations

import json
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TABLE = str.maketrans(_GO_ESCAPES)


def dumps(value: Any) -> str:
    """Compact JSON with Go's HTML-safe escapes (``<`` becomes ``\\u003c``) and raw UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_TABLE)
