"""What a model can do, decided as Ollama's server/images.go Capabilities does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import TemplateError
from .gotemplate.ollama import PromptTemplate
from .jinja_template import chat_template_capabilities
from .types import ModelFacts


def capabilities(
    *, facts: ModelFacts, template: str | PromptTemplate | None, has_projector: bool, config: Mapping[str, Any],
) -> list[str]:
    """``completion`` or ``embedding``, then what the template supports (``tools``, ``insert``,
    ``thinking``), ``vision``, and any the config declares. ``template`` is the Go TEMPLATE (its
    text, or already parsed); the model's own Jinja chat template (``facts.chat_template``) counts
    when there is none."""
    found = ["embedding" if facts.embedding else "completion"]
    if isinstance(template, PromptTemplate):
        found += template.capabilities()
    elif template:
        try:
            found += PromptTemplate.parse(template).capabilities()
        except TemplateError:
            pass
    elif facts.chat_template:
        found += chat_template_capabilities(facts.chat_template)
    if has_projector or facts.vision:
        found.append("vision")
    for extra in config.get("capabilities") or ():
        if isinstance(extra, str):
            found.append(extra)
    return list(dict.fromkeys(found))
