"""Modelfiles: Ollama's text format for building a model (FROM, PARAMETER, TEMPLATE, ...).

This module writes them the way Ollama's parser.Command.String does; parsing comes with
``corral create``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .gotemplate.gofmt import sprint, sprintf


def quote(value: str) -> str:
    """Quote a value only when it needs it: a newline, or leading or trailing space."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def format_modelfile(
    *,
    model_path: str,
    adapter_paths: Iterable[str] = (),
    template: str | None = None,
    system: str | None = None,
    params: Mapping[str, Any] | None = None,
    licenses: Iterable[str] = (),
    messages: Iterable[Mapping[str, Any]] = (),
) -> str:
    """The Modelfile text of a stored model, in the order Ollama's Model.String writes it."""
    lines = [f"FROM {model_path}"]
    lines += [f"ADAPTER {quote(path)}" for path in adapter_paths]
    if template is not None:
        lines.append(f"TEMPLATE {quote(template)}")
    if system:
        lines.append(f"SYSTEM {quote(system)}")
    for name, value in (params or {}).items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {name} {quote(sprint(item))}")
    lines += [f"LICENSE {quote(text)}" for text in licenses]
    for message in messages:
        lines.append(f"MESSAGE {message.get('role', '')} {quote(str(message.get('content', '')))}")
    return "".join(line + "\n" for line in lines)


def format_parameters(params: Mapping[str, Any]) -> str:
    """``/api/show``'s ``parameters``: ``fmt.Sprintf("%-30s %#v", key, value)`` per value."""
    lines = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(sprintf("%-30s %#v", name, item))
    return "\n".join(lines)
