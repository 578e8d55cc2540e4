"""A pure-Python interpreter of Go's text/template, as Ollama's prompt templates use it.

``Template.parse(text)`` and ``Template.execute(data)`` are the interpreter;
``corral.gotemplate.ollama`` renders a model's TEMPLATE for a request the way Ollama does, and
``corral.gotemplate.named`` picks one of Ollama's named templates for a GGUF chat template.

The interpreter is imported on first use of these names, so that its small pieces (``gofmt``,
``gojson``: printing values as Go does) can be used without it.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .template import Template
    from .values import NIL, FieldSpec, GoType, Named, Pointer, Struct

_HOME = {"Template": "template", "NIL": "values", "FieldSpec": "values", "GoType": "values", "Named": "values",
         "Pointer": "values", "Struct": "values"}
__getattr__ = lazy_attributes(__name__, _HOME)
__all__ = sorted(_HOME)
