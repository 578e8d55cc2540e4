"""Render a GGUF file's Jinja ``tokenizer.chat_template`` as Hugging Face transformers does.

The fallback for models that carry no TEMPLATE layer and match none of Ollama's named templates:
jinja2's immutable sandbox with ``trim_blocks``/``lstrip_blocks``, the loop controls extension,
``raise_exception``, ``strftime_now`` and a ``tojson`` that does not escape HTML (transformers'
``_compile_jinja_template``), bounded by the render's Budget (``corral.jinja_sandbox``). jinja2 is
imported only when a template is compiled.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from corral.errors import TemplateError
from corral.template_limits import Budget


def _strftime_now(format: str) -> str:
    return datetime.datetime.now().strftime(format)


def _environment() -> Any:
    import jinja2
    import jinja2.ext

    from corral.jinja_sandbox import BudgetedSandbox, tojson

    class GenerationTag(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers' assistant mask) renders its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    environment = BudgetedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment


def _message_dict(message: Any) -> dict[str, Any]:
    """A chat message as chat templates expect it (a record becomes an OpenAI/HF-style dict)."""
    if isinstance(message, Mapping):
        return dict(message)
    found: dict[str, Any] = {"role": message.role, "content": message.content}
    if getattr(message, "thinking", ""):
        found["reasoning_content"] = message.thinking
    if getattr(message, "tool_calls", ()):
        found["tool_calls"] = [
            {
                "type": "function",
                **({"id": call.id} if call.id else {}),
                "function": {"name": call.name, "arguments": dict(call.arguments or {})},
            }
            for call in message.tool_calls
        ]
    if getattr(message, "tool_name", ""):
        found["name"] = message.tool_name
    if getattr(message, "tool_call_id", ""):
        found["tool_call_id"] = message.tool_call_id
    return found


def _tool_dict(tool: Any) -> dict[str, Any]:
    if isinstance(tool, Mapping):
        return dict(tool)
    return {
        "type": tool.type,
        "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)},
    }


_FAULTS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError, RecursionError)


class ChatTemplate:
    """A compiled Jinja chat template; TemplateError(message, line) when it does not compile."""

    def __init__(self, source: str) -> None:
        import jinja2

        self.source = source
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(error.message or str(error), error.lineno) from None
        except _FAULTS as error:  # a constant expression that fails while it is folded
            raise TemplateError(f"{type(error).__name__}: {error}") from None
        except MemoryError:
            raise TemplateError("out of memory") from None

    def render(
        self,
        messages: Iterable[Any],
        *,
        tools: Sequence[Any] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        bos_token: str = "",
        eos_token: str = "",
        budget: Budget | None = None,
        **variables: Any,
    ) -> str:
        """Render with ``messages``, ``tools``, ``add_generation_prompt`` and the special tokens,
        within ``budget`` (default limits if none is given)."""
        import jinja2

        from corral.jinja_sandbox import CURRENT_BUDGET

        token = CURRENT_BUDGET.set(budget or Budget())
        try:
            rendered: str = self._template.render(
                messages=[_message_dict(m) for m in messages],
                tools=[_tool_dict(t) for t in tools] if tools else None,
                documents=documents,
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token,
                eos_token=eos_token,
                **variables,
            )
            return rendered
        except jinja2.TemplateError as error:
            raise TemplateError(error.message or str(error), getattr(error, "lineno", None)) from None
        except _FAULTS as error:
            raise TemplateError(f"{type(error).__name__}: {error}") from None
        except MemoryError:
            raise TemplateError("out of memory") from None
        finally:
            CURRENT_BUDGET.reset(token)


def render_chat_template(source: str, messages: Iterable[Any], **options: Any) -> str:
    """Compile and render a Jinja chat template once (see ChatTemplate.render for the options)."""
    return ChatTemplate(source).render(messages, **options)


def chat_template_capabilities(source: str) -> list[str]:
    """What a Jinja chat template supports, by Ollama's text checks: ``tools``, ``thinking``."""
    found = []
    if "tools" in source or "tool_call" in source:
        found.append("tools")
    splits_thinking = "content.split('</think>')" in source or 'content.split("</think>")' in source
    if ("<think>" in source and "</think>" in source) or (
        splits_thinking and "reasoning_content" not in source and "<SPECIAL_12>" not in source
    ):
        found.append("thinking")
    return found
