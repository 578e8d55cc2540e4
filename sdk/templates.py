"""Ollama's prompt templates: Go's text/template as Ollama configures it (see docs/templates.md).

``PromptTemplate.parse(text)`` (TemplateError with line and column otherwise) and
``template.render(PromptValues(messages=[Message(role="user", content="Hi")], tools=...))``;
``template.capabilities()`` infers ``tools``, ``insert`` and ``thinking`` as Ollama does.
``Template`` is the bare Go text/template interpreter.
"""

from corral.gotemplate import Template
from corral.gotemplate.ollama import Message, PromptTemplate, PromptValues, Tool, ToolCall

__all__ = ["Message", "PromptTemplate", "PromptValues", "Template", "Tool", "ToolCall"]
