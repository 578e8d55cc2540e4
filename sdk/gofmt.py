"""Printing values as Go does, where corral's output must match Ollama's byte for byte.

``go_json(value)``: JSON as Go's encoding/json writes it; ``format_float(value, fmt, precision)``:
strconv.FormatFloat (``"g"``, ``"f"``, ``"e"``); ``go_quote``: strconv.Quote; ``sprintf``/``sprint``:
fmt's verbs on plain values.
"""

from corral.gojson import dumps as go_json
from corral.gotemplate.gofmt import format_float, go_quote, sprint, sprintf

__all__ = ["format_float", "go_json", "go_quote", "sprint", "sprintf"]
