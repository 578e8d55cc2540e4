"""Recognise tool calls in a model's output.

Models write tool calls as JSON (``{"name": ..., "arguments": {...}}``, or a list of them),
sometimes wrapped in a tag their template uses (``<tool_call>``, ``[TOOL_CALLS]``,
``<|python_tag|>``). While the output could still be a tool call it is held back; once it cannot,
it is released as ordinary content.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterable
from typing import Any

PREFIXES = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function_call>", "```json", "```")
SUFFIXES = ("</tool_call>", "</function_call>", "```", "<|eom_id|>", "<|eot_id|>")


def call_id() -> str:
    return "call_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class ToolCallParser:
    def __init__(self, tool_names: Iterable[str]) -> None:
        self.names = set(tool_names)
        self.buffer = ""
        self.holding = True
        self.calls: list[dict[str, Any]] = []

    def feed(self, text: str) -> str:
        """Content to show now; tool-call text is kept back."""
        if not self.holding:
            return text
        self.buffer += text
        stripped = self.buffer.lstrip()
        if not stripped or self._could_be_call(stripped):
            return ""
        self.holding = False
        out, self.buffer = self.buffer, ""
        return out

    def _could_be_call(self, text: str) -> bool:
        body = _strip_prefix(text)
        if body is None:
            return any(prefix.startswith(text) for prefix in PREFIXES)
        return body == "" or body[0] in "{["

    def finish(self) -> str:
        """At the end of output: record the tool calls, or return held text as content."""
        if not self.holding or not self.buffer.strip():
            rest, self.buffer = self.buffer, ""
            return rest
        calls = parse_calls(self.buffer, self.names)
        if calls is None:
            rest, self.buffer = self.buffer, ""
            return rest
        self.calls = calls
        self.buffer = ""
        return ""


def _strip_prefix(text: str) -> str | None:
    if text[:1] in "{[":
        return text
    for prefix in PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix):].lstrip()
    return None


def parse_calls(text: str, names: set[str]) -> list[dict[str, Any]] | None:
    body = _strip_prefix(text.strip())
    if body is None:
        return None
    for suffix in SUFFIXES:
        if body.rstrip().endswith(suffix):
            body = body.rstrip()[: -len(suffix)]
    decoder = json.JSONDecoder()
    found: list[Any] = []
    position = 0
    body = body.strip()
    while position < len(body):
        try:
            value, end = decoder.raw_decode(body, position)
        except ValueError:
            return None
        found.extend(value if isinstance(value, list) else [value])
        position = end
        while position < len(body) and body[position] in " \n\t,;":
            position += 1
        for prefix in PREFIXES:
            if body.startswith(prefix, position):
                position += len(prefix)
    calls = []
    for index, item in enumerate(found):
        if not isinstance(item, dict):
            return None
        function = item.get("function") if isinstance(item.get("function"), dict) else item
        name = function.get("name")
        arguments = function.get("arguments", function.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(name, str) or (names and name not in names) or not isinstance(arguments, dict):
            return None
        calls.append({"id": call_id(), "function": {"index": index, "name": name, "arguments": arguments}})
    return calls or None
