"""Modelfiles: Ollama's text format for building a model (FROM, PARAMETER, TEMPLATE, ...).

The parser follows Ollama's parser.ParseFile rune by rune (instructions are case-insensitive,
``#`` starts a comment line, a value runs to the end of its line unless it is in ``"..."`` or
triple quotes, which may span lines; leading and trailing blanks of an unquoted value are dropped),
with line numbers and a word on what was expected in every error. The writer quotes values the
way parser.Command.String does, so that what it writes parses back to the same values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from . import options as option_rules
from .errors import InvalidModelFile, InvalidRequest
from .gofmt import is_print, sprint, sprintf

log = logging.getLogger(__name__)

INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires",
                "draft", "renderer", "parser")
SUPPORTED = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE", "REQUIRES")
ROLES = ("system", "user", "assistant", "tool")
_EXPECTED = "expected one of " + ", ".join(SUPPORTED)
_SEMVER = re.compile(r"v?(0|[1-9]\d*)(\.(0|[1-9]\d*)(\.(0|[1-9]\d*))?)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_INTEGER = re.compile(r"[+-]?\d+")
# Each part can match a digit only one way, so a failed match costs linear time (a pattern like
# ``\d+\.?\d*`` tries every split of a long run of digits: quadratic).
_FLOAT = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[Ii]nf(?:inity)?|NaN)")
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")


@attrs.frozen(kw_only=True)
class Instruction:
    """One instruction: ``name`` in lower case (``from``, ``parameter``, ...), its value, the
    line it starts on, and for PARAMETER the parameter's name, for MESSAGE the role."""

    name: str
    value: str
    line: int
    parameter: str | None = None
    role: str | None = None


def _error(line: int, message: str) -> InvalidModelFile:
    return InvalidModelFile(f"(line {line}): {message}")


def _unquote(text: str) -> tuple[str, bool]:
    if text.startswith('"""'):
        if len(text) >= 6 and text.endswith('"""'):
            return text[3:-3], True
        return "", False
    if text.startswith('"'):
        if len(text) >= 2 and text.endswith('"'):
            return text[1:-1], True
        return "", False
    return text, True


def _go_trim(text: str) -> str:
    return text.strip(" \t\n\r\v\f\x85\xa0")


def parse_modelfile(text: str | bytes) -> list[Instruction]:
    """The instructions of a Modelfile; InvalidModelFile with the line number on any error."""
    if isinstance(text, bytes):
        text = _decode(text)
    text = text.removeprefix("\ufeff")
    nil, name, value, parameter, message, comment = range(6)
    state = nil
    buffer: list[str] = []
    instructions: list[Instruction] = []
    current: dict[str, Any] = {}
    line = start = 1
    previous = ""
    for char in text:
        if char == "\n" and previous == "\r":
            previous = char
            if state == value:
                buffer.append(char)
            continue
        previous = char
        newline = char in "\r\n"
        if state == nil:
            if char == "#":
                state = comment
            elif not (newline or char in " \t"):
                state, start = name, line
                buffer = [char] if is_print(char) else []
        elif state == comment:
            if newline:
                state = nil
        elif state == name:
            if char.isascii() and char.isalpha():
                buffer.append(char)
            elif char in " \t":
                word = "".join(buffer)
                kind = word.lower()
                if kind not in INSTRUCTIONS:
                    raise _error(line, f'unknown instruction "{word}"; {_EXPECTED}')
                current = {"name": kind, "line": start}
                state = parameter if kind == "parameter" else message if kind == "message" else value
                buffer = []
            else:
                word = "".join(buffer)
                if newline and word.lower() in INSTRUCTIONS:
                    raise _error(line, f"{word.upper()} needs a value")
                shown = word + ("" if newline else char)
                raise _error(line, f'unknown instruction "{shown}"; {_EXPECTED}')
        elif state in (parameter, message):
            word = "".join(buffer)
            label = "PARAMETER" if state == parameter else "MESSAGE"
            if char in " \t":
                if not word:
                    continue
                if state == parameter:
                    current["parameter"] = word
                else:
                    if word not in ROLES:
                        raise _error(line, 'message role must be one of "system", "user", "assistant" or "tool"')
                    current["role"] = word
                state, buffer = value, []
            elif char.isascii() and (char.isalnum() or (char == "_" and state == parameter)):
                buffer.append(char)
            elif newline:
                what = "a name and a value" if state == parameter else "a role and a value"
                raise _error(line, f"{label} {word} needs a value" if word else f"{label} needs {what}")
            else:
                kind = "parameter name" if state == parameter else "message role"
                raise _error(line, f'invalid {kind} "{word}{char}"')
        elif state == value:
            if newline:
                unquoted, closed = _unquote(_go_trim("".join(buffer)))
                if closed:
                    instructions.append(Instruction(value=unquoted, **current))
                    state, buffer = nil, []
                else:
                    buffer.append(char)
            elif char in " \t" or is_print(char):
                buffer.append(char)
        if char in "\r\n":
            line += 1
    if state == value:
        unquoted, closed = _unquote(_go_trim("".join(buffer)))
        if not closed:
            quote = '"""' if _go_trim("".join(buffer)).startswith('"""') else '"'
            raise _error(current["line"], f"the {quote} that opens the {current['name'].upper()} value is never closed")
        instructions.append(Instruction(value=unquoted, **current))
    elif state == name:
        word = "".join(buffer)
        if word.lower() in INSTRUCTIONS:
            raise _error(line, f"{word.upper()} needs a value")
        raise _error(line, f'unknown instruction "{word}"; {_EXPECTED}')
    elif state in (parameter, message):
        label = "PARAMETER" if state == parameter else "MESSAGE"
        raise _error(line, f"{label} needs a value")
    if not any(instruction.name == "from" for instruction in instructions):
        raise InvalidModelFile("no FROM line")
    return instructions


def _decode(data: bytes) -> str:
    """UTF-8, or UTF-16 when a byte order mark says so (Go's unicode.BOMOverride)."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidModelFile(f"the Modelfile is not UTF-8 text: {error}") from None


def parameter_value(instruction: Instruction) -> Any:
    """A PARAMETER's value converted to its option's type and checked against its range;
    InvalidModelFile naming the line."""
    name, text, line = instruction.parameter or "", instruction.value, instruction.line
    kind = option_rules.OPTION_TYPES.get(name)
    if kind is None:
        raise _error(line, f"unknown parameter '{name}'")
    if kind == option_rules.INT:
        if not _INTEGER.fullmatch(text):
            raise _error(line, f'PARAMETER {name} must be an integer, not "{_shown(text)}"')
        digits = text.lstrip("+-").lstrip("0") or "0"
        if len(digits) > 19:  # beyond int64 (and int() refuses over 4300 digits)
            raise _error(line, f'PARAMETER {name}: value out of range: "{_shown(text)}"')
        value: Any = -int(digits) if text.startswith("-") else int(digits)
    elif kind == option_rules.FLOAT:
        if not _FLOAT.fullmatch(text):
            raise _error(line, f'PARAMETER {name} must be a number, not "{_shown(text)}"')
        value = float(text)
    elif kind == option_rules.BOOL:
        if text not in _TRUE + _FALSE:
            raise _error(line, f'PARAMETER {name} must be true or false, not "{_shown(text)}"')
        return text in _TRUE
    else:
        return text
    try:
        return option_rules.convert_option(name, value)
    except InvalidRequest as error:
        raise _error(line, error.message.replace(f'option "{name}"', f"PARAMETER {name}")) from None


def _shown(text: str, limit: int = 64) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def blob_reference(instruction: Instruction) -> dict[str, str] | None:
    """A FROM or ADAPTER value that names a blob (``@sha256:<hex>`` or ``sha256:<hex>``) as the
    ``files`` entry it means, else None."""
    from .errors import InvalidDigest
    from .names import validate_digest

    text = instruction.value.removeprefix("@")
    if not text.startswith("sha256:"):
        return None
    try:
        digest = validate_digest(text)
    except InvalidDigest:
        raise _error(instruction.line, f'"{instruction.value}" is not a blob digest (sha256: and 64 hex digits)') from None
    return {digest.replace(":", "-"): digest}


def modelfile_request(instructions: Iterable[Instruction], *, model: str, quantize: str | None = None,
                      locate: Callable[[Instruction], Mapping[str, str] | None]) -> Any:
    """The CreateRequest a Modelfile means.

    ``locate(instruction)`` turns a FROM or ADAPTER value into blobs (file name -> digest), or
    returns None when a FROM value names a model rather than a file.
    """
    from .create import CreateRequest

    fields: dict[str, Any] = {"model": model, "quantize": quantize or None}
    files: dict[str, str] = {}
    adapters: dict[str, str] = {}
    params: dict[str, Any] = {}
    licenses: list[str] = []
    messages: list[dict[str, str]] = []
    for instruction in instructions:
        kind, text, line = instruction.name, instruction.value, instruction.line
        if kind == "from":
            found = locate(instruction)
            if found is None:
                fields["from_"] = text
            else:
                files.update(found)
        elif kind == "adapter":
            found = locate(instruction)
            if not found:
                raise _error(line, f'ADAPTER "{text}": no such file')
            adapters = dict(found)
        elif kind in ("template", "system"):
            fields[kind] = text
        elif kind == "license":
            licenses.append(text)
        elif kind == "message":
            messages.append({"role": instruction.role or "", "content": text})
        elif kind == "requires":
            if not _SEMVER.fullmatch(text):
                raise _error(line, "requires must be a valid semver (e.g. 0.14.0)")
        elif kind == "parameter":
            name = instruction.parameter or ""
            if name in option_rules.RETIRED:
                log.warning("parameter %s is deprecated and ignored", name)
                continue
            converted = parameter_value(instruction)
            if option_rules.OPTION_TYPES[name] == option_rules.STRINGS:
                params.setdefault(name, []).append(converted)
            else:
                params[name] = converted
        else:
            raise _error(line, f"{kind.upper()} is not supported by corral")
    return CreateRequest(**fields, files=files, adapters=adapters, parameters=params,
                         license=tuple(licenses), messages=tuple(messages))


def quote(value: str) -> str:
    """Quote a value only when it needs it to parse back the same: a line break, blanks at either
    end, a leading quote, or nothing at all."""
    if not value or "\n" in value or "\r" in value or value != _go_trim(value) or value.startswith('"'):
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
