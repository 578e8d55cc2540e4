"""Choosing a template for a GGUF file: Ollama's named-template match, and the Jinja fallback."""

from __future__ import annotations

import random

import pytest

from corral.errors import TemplateError
from corral.gotemplate.named import levenshtein, named_template, named_templates
from corral.gotemplate.ollama import Message, Tool, ToolCall
from corral.jinja_template import ChatTemplate, chat_template_capabilities, render_chat_template


def slow_levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_levenshtein_matches_the_textbook_algorithm() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("abcé{%") for _ in range(rng.randint(0, 70)))
        b = "".join(rng.choice("abcé{%") for _ in range(rng.randint(0, 70)))
        assert levenshtein(a, b) == slow_levenshtein(a, b), (a, b)
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3


def test_the_closest_entry_wins_and_the_first_on_ties() -> None:
    entries = named_templates()
    assert len(entries) == 37
    zephyr = next(t for t in entries if t.name == "zephyr")
    edited = zephyr.chat_template.replace("eos_token", "eos")
    assert named_template(edited).name == "zephyr"
    duplicated = [t.chat_template for t in entries]
    first = next(t for t in entries if duplicated.count(t.chat_template) == 1)
    assert named_template(first.chat_template) is first


def test_named_template_text_has_unix_line_endings() -> None:
    assert all("\r\n" not in t.template for t in named_templates())


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_jinja_chat_template_renders_like_transformers() -> None:
    messages = [Message(role="user", content="hi"), {"role": "assistant", "content": "yo"}]
    assert render_chat_template(CHATML, messages) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat_template(CHATML, messages, add_generation_prompt=False).endswith("yo<|im_end|>\n")


def test_jinja_helpers_trim_blocks_and_loop_controls() -> None:
    source = (
        "{% for m in messages %}\n"
        "  {% if m.role == 'system' %}{% continue %}{% endif %}\n"
        "{{ m.content | tojson }}{% if loop.index > 5 %}{% break %}{% endif %}\n"
        "{% endfor %}\n"
        "{% generation %}{{ bos_token }}{% endgeneration %}{{ strftime_now('%Y') | length }}"
    )
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "<é>"}]
    assert ChatTemplate(source).render(messages, bos_token="<s>") == '"<é>"<s>4'


def test_jinja_records_become_hugging_face_messages_and_tools() -> None:
    source = "{{ messages[0].tool_calls[0].function | tojson }}|{{ tools[0].function.name }}|{{ messages[1].name }}"
    messages = [
        Message(role="assistant", tool_calls=[ToolCall(name="f", arguments={"a": 1})]),
        Message(role="tool", content="r", tool_name="f"),
    ]
    assert ChatTemplate(source).render(messages, tools=[Tool(name="f")]) == '{"name": "f", "arguments": {"a": 1}}|f|f'


def test_jinja_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        ChatTemplate("ok\n{% if %}")
    with pytest.raises(TemplateError, match="only user and assistant"):
        render_chat_template("{{ raise_exception('only user and assistant') }}", [])
    with pytest.raises(TemplateError):
        render_chat_template("{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}", [])
    with pytest.raises(TemplateError):
        render_chat_template("{% set x = messages.append(1) %}", [])


def test_jinja_capabilities_by_ollamas_text_checks() -> None:
    assert chat_template_capabilities(CHATML) == []
    assert chat_template_capabilities("{% if tools %}{% endif %}<think></think>") == ["tools", "thinking"]
    assert chat_template_capabilities("{{ content.split('</think>')[-1] }}") == ["thinking"]
    assert chat_template_capabilities("{{ content.split('</think>') }}{{ reasoning_content }}") == []
