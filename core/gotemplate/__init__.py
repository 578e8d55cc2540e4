"""A pure-Python interpreter of Go's text/template, as Ollama's prompt templates use it.

``Template.parse(text)`` and ``Template.execute(data)`` are the interpreter;
``corral.gotemplate.ollama`` renders a model's TEMPLATE for a request the way Ollama does, and
``corral.gotemplate.named`` picks one of Ollama's named templates for a GGUF chat template.
"""

from __future__ import annotations

from .template import Template
from ..govalues import NIL, FieldSpec, GoType, Named, Pointer, Struct

__all__ = ["NIL", "FieldSpec", "GoType", "Named", "Pointer", "Struct", "Template"]
