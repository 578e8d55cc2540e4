"""The checks a create runs first, on the request alone, so that bad input fails before any blob is
read, converted or quantized."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import options as option_rules
from ..errors import InvalidDigest, InvalidRequest
from ..names import validate_digest

MESSAGE_ROLES = ("system", "user", "assistant", "tool")


def check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values by name, converted to their option types; unknown names are a 400."""
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        if value is None or name in option_rules.RETIRED:
            continue
        if name not in option_rules.OPTION_TYPES:
            raise InvalidRequest(f"unknown parameter '{name}'")
        if option_rules.OPTION_TYPES[name] == option_rules.STRINGS and isinstance(value, str):
            value = [value]
        checked[name] = option_rules.convert_option(name, value)
    return checked


def check_messages(messages: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(messages, (list, tuple)):
        raise InvalidRequest("messages must be a list of {role, content} objects")
    checked = []
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("content", ""), str):
            raise InvalidRequest("messages must be a list of {role, content} objects")
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise InvalidRequest(f'message role must be one of "system", "user", "assistant" or "tool", not {role!r}')
        checked.append({"role": role, "content": message.get("content", "")})
    return tuple(checked)


def check_file_name(name: str) -> None:
    """Go's fs.ValidPath: a relative, slash-separated path without ``.``/``..`` or empty parts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise InvalidRequest("file path must be relative")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidRequest("file path must be relative")


def check_digest(digest: Any) -> str:
    try:
        return validate_digest(digest)
    except InvalidDigest:
        raise InvalidRequest("invalid digest format") from None


def is_digest(text: str) -> bool:
    try:
        validate_digest(text.removeprefix("@"))
    except InvalidDigest:
        return False
    return True
