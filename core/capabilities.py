"""What a model can do, decided as Ollama's server/images.go Capabilities does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import TemplateError
from .gguf import GGUFFile
from .gotemplate.ollama import PromptTemplate
from .jinja_template import chat_template_capabilities


def capabilities(
    *, gguf: GGUFFile | None, template: str | PromptTemplate | None, has_projector: bool,
    config: Mapping[str, Any], jinja: str | None = None,
) -> list[str]:
    """``completion`` or ``embedding``, then what the template supports (``tools``, ``insert``,
    ``thinking``), ``vision``, and any the config declares. ``template`` is the Go TEMPLATE (its
    text, or already parsed); ``jinja`` the GGUF chat template used when there is none."""
    found = ["embedding" if gguf is not None and gguf.pooling_type is not None else "completion"]
    if isinstance(template, PromptTemplate):
        found += template.capabilities()
    elif template:
        try:
            found += PromptTemplate.parse(template).capabilities()
        except TemplateError:
            pass
    elif jinja:
        found += chat_template_capabilities(jinja)
    vision_key = f"{gguf.architecture}.vision.block_count" if gguf and gguf.architecture else None
    if has_projector or (gguf is not None and vision_key in gguf.metadata):
        found.append("vision")
    for extra in config.get("capabilities") or ():
        if isinstance(extra, str):
            found.append(extra)
    return list(dict.fromkeys(found))
