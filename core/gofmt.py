"""Values printed the way Go's fmt prints them (``%v`` and ``%#v``), for Ollama-identical text."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


def go_float(value: float) -> str:
    """``fmt.Sprint(float64)``: the shortest round-trip digits, in %e form when the decimal
    exponent is below -4 or at least 6 (``1e+06``, ``4096``, ``1e-05``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    decimal_exponent = len(digits) + int(exponent) - 1
    prefix = "-" if sign else ""
    if decimal_exponent < -4 or decimal_exponent >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if decimal_exponent < 0 else '+'}{abs(decimal_exponent):02d}"
    if decimal_exponent < 0:
        return f"{prefix}0.{'0' * (-decimal_exponent - 1)}{text}"
    whole = text[: decimal_exponent + 1].ljust(decimal_exponent + 1, "0")
    fraction = text[decimal_exponent + 1 :]
    return f"{prefix}{whole}.{fraction}" if fraction else f"{prefix}{whole}"


def go_value(value: Any, *, quoted: bool = False) -> str:
    """``fmt.Sprint(value)`` (or ``%#v`` when ``quoted``) for JSON-decoded values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if quoted else value
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(go_value(item) for item in value) + "]"
    return str(value)
