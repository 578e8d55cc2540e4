"""What a model can do, decided as Ollama's server/images.go Capabilities does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .gguf import GGUFFile

_TOOLS = re.compile(r"\{\{[^}]*\$?\.Tools\b")
_SUFFIX = re.compile(r"\{\{[^}]*\.Suffix\b")
_THINKING = re.compile(r"\{\{-?\s*if\s+[^}]*\.Thinking\b")


def capabilities(
    *, gguf: GGUFFile | None, template: str | None, has_projector: bool, config: Mapping[str, Any]
) -> list[str]:
    """``completion`` or ``embedding``, then ``tools``, ``insert``, ``vision``, ``thinking``."""
    found: list[str] = []
    if gguf is not None and gguf.pooling_type is not None:
        found.append("embedding")
    else:
        found.append("completion")
    if template:
        if _TOOLS.search(template):
            found.append("tools")
        if _SUFFIX.search(template):
            found.append("insert")
    vision_key = f"{gguf.architecture}.vision.block_count" if gguf and gguf.architecture else None
    if has_projector or (gguf is not None and vision_key in gguf.metadata):
        found.append("vision")
    if template and _THINKING.search(template):
        found.append("thinking")
    for extra in config.get("capabilities") or ():
        if isinstance(extra, str) and extra not in found:
            found.append(extra)
    return found
