"""A pure-Python interpreter of Go's text/template, as Ollama's prompt templates use it.

``Template.parse(text)`` and ``Template.execute(data)`` are the interpreter;
``corral.gotemplate.ollama`` renders a model's TEMPLATE for a request the way Ollama does, and
``corral.gotemplate.named`` picks one of Ollama's named templates for a GGUF chat template.

The interpreter is imported on first use of these names, so that its small pieces (``gojson``) can
be used without it. Go's printing and Go's values, which the Modelfile writer and the CLI use too,
are ``corral.gofmt`` and ``corral.govalues``.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .template import Template
    from ..govalues import NIL, FieldSpec, GoType, Named, Pointer, Struct

# ".govalues" is relative to this package's submodules: corral.govalues, beside the package
_HOME = {"Template": "template", "NIL": ".govalues", "FieldSpec": ".govalues", "GoType": ".govalues",
         "Named": ".govalues", "Pointer": ".govalues", "Struct": ".govalues"}
__getattr__ = lazy_attributes(__name__, _HOME)
__all__ = sorted(_HOME)
