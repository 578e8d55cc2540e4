"""Ollama's named templates reproduce Ollama's golden renderings, and GGUF chat templates find them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.gotemplate.named import named_template, named_templates
from corral.gotemplate.ollama import Message, PromptTemplate, PromptValues

TESTDATA = Path(__file__).resolve().parent / "data" / "ollama-templates"
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "core" / "gotemplate" / "named"

HELLO = Message(role="user", content="Hello, how are you?")
GREAT = Message(role="assistant", content="I'm doing great. How can I help you today?")
SHOW = Message(role="user", content="I'd like to show off how chat templating works!")
SYSTEM = Message(role="system", content="You are a helpful assistant.")

CONVERSATIONS = {
    "user": [HELLO],
    "user-assistant-user": [HELLO, GREAT, SHOW],
    "system-user-assistant-user": [SYSTEM, HELLO, GREAT, SHOW],
}

# Ollama's own test drops one trailing space of these templates' output before comparing.
TRAILING_SPACE = {"chatqa.gotmpl", "llama2-chat.gotmpl", "mistral-instruct.gotmpl", "openchat.gotmpl", "vicuna.gotmpl"}

TEMPLATES = sorted(p.name for p in TESTDATA.glob("*.gotmpl"))


def test_the_golden_testdata_is_there() -> None:
    assert len(TEMPLATES) == 20
    assert (TESTDATA / "testdata" / "templates.jsonl").is_file()


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", TEMPLATES)
def test_named_template_reproduces_golden_bytes(name: str, case: str) -> None:
    template = PromptTemplate.parse((TESTDATA / name).read_text(encoding="utf-8"))
    rendered = template.render(PromptValues(messages=CONVERSATIONS[case]))
    if name in TRAILING_SPACE and rendered.endswith(" "):
        rendered = rendered[:-1]
    assert rendered == (TESTDATA / "testdata" / name / case).read_text(encoding="utf-8")


def _chat_templates() -> list[tuple[str, str]]:
    lines = (TESTDATA / "testdata" / "templates.jsonl").read_text(encoding="utf-8").splitlines()
    return [item for line in lines for item in json.loads(line).items()]


@pytest.mark.parametrize(("expected", "chat_template"), _chat_templates())
def test_gguf_chat_template_is_recognised(expected: str, chat_template: str) -> None:
    found = named_template(chat_template)
    assert found is not None
    assert found.name == expected
    parsed = PromptTemplate.parse(found.template)
    assert str(parsed.template.root) != ""


def test_package_data_is_a_copy_of_ollamas_template_folder() -> None:
    for source in [*TESTDATA.glob("*.gotmpl"), *TESTDATA.glob("*.json"), TESTDATA / "LICENSE.ollama"]:
        assert (PACKAGE_DATA / source.name).read_bytes() == source.read_bytes(), source.name


def test_named_templates_carry_the_stop_parameters_ollama_keeps() -> None:
    by_name = {t.name: t for t in named_templates()}
    assert by_name["chatml"].parameters == {"stop": ["<|im_start|>", "<|im_end|>"]}
    # Ollama decodes NAME.json into struct{ Stop []string }: gemma3's temperature is dropped
    assert set(by_name["gemma3-instruct"].parameters or {}) == {"stop"}


def test_a_near_match_is_accepted_and_a_far_one_is_not() -> None:
    chatml = next(t for t in named_templates() if t.name == "chatml")
    assert named_template(chatml.chat_template + "  \n") is not None
    assert named_template(chatml.chat_template.replace("im_start", "IM_START")).name == "chatml"
    assert named_template("{{ messages }}" * 50) is None
    assert named_template("") is None
