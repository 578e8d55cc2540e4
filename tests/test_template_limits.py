"""Prompt templates are code from a model file or a request (issue 15, findings 2 and 10): both
executors count loop iterations, calls and output against a Budget, Jinja's sandbox refuses
values that would blow up memory (also while it compiles), and truncating a long chat renders and
tokenizes O(log n) times."""

from __future__ import annotations

import math
import time
import tracemalloc
from pathlib import Path
from collections.abc import Callable
from types import SimpleNamespace

import anyio
import pytest

from corral.errors import TemplateError
from corral.gotemplate.ollama import PromptTemplate, PromptValues
from corral.inference import Inference, Prepared
from corral.jinja_template import ChatTemplate
from corral.settings import Settings
from corral.types import ModelFacts
from corral.template_limits import Budget, TemplateLimitExceeded, TemplateLimits, run_template

from servers import SMOL_TEMPLATE

SMALL = TemplateLimits(timeout=2, max_iterations=10_000, max_output=100_000)
USER = [{"role": "user", "content": "hi"}]


def go(source: str, limits: TemplateLimits = SMALL, **values: object) -> str:
    return PromptTemplate.parse(source).render(PromptValues(**values), budget=Budget(limits))


def jinja(source: str, limits: TemplateLimits = SMALL) -> str:
    return ChatTemplate(source).render(USER, budget=Budget(limits))


@pytest.mark.parametrize(("source", "setting"), [
    ("{{range 1000000000}}{{end}}", "server.template_max_iterations"),
    ('{{define "a"}}{{if .}}{{template "a" (slice . 1)}}{{template "a" (slice . 1)}}{{end}}{{end}}'
     '{{range .Messages}}{{end}}{{template "a" (slice "abcdefghijklmnopqrstuvwxyzabcdefghij" 0)}}',
     "server.template_max_iterations"),
    ('{{range 1000}}{{printf "%1000d" 1}}{{end}}', "server.template_max_output"),
    ('{{$x := "ab"}}{{range 30}}{{$x = printf "%s%s" $x $x}}{{end}}', "server.template_max_output"),
])
def test_go_templates_stop_at_their_limits(source: str, setting: str) -> None:
    with pytest.raises(TemplateLimitExceeded, match=setting.replace(".", r"\.")):
        go(source, messages=USER)


ONE_MB = TemplateLimits(timeout=60, max_iterations=10_000, max_output=1_000_000)
_900K = '{{$a := printf "%100000s" ""}}{{$b := print' + " $a" * 9 + "}}"


def peak_memory(render: Callable[[], object]) -> int:
    """The most memory ``render`` held at once, in bytes (it must raise TemplateLimitExceeded)."""
    tracemalloc.start()
    try:
        with pytest.raises(TemplateLimitExceeded, match=r"server\.template_max_output"):
            render()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("source", [
    _900K + "{{$c := print" + " $b" * 100 + "}}",
    _900K + "{{$c := println" + " $b" * 100 + "}}",
    _900K + '{{$c := printf "' + "%[1]s" * 100 + '" $b}}',
    _900K + "{{$c := html" + " $b" * 100 + "}}",
    '{{$c := printf "' + "%900000s" * 100 + '"' + ' ""' * 100 + "}}",
    _900K + '{{$c := printf "% #x" $b}}',
])
def test_go_printing_refuses_a_string_over_the_limit_before_building_it(source: str) -> None:
    """print, printf, println (and html, js, urlquery, which print their arguments) used to join
    every argument and only then check the size: a request could make one call allocate
    gigabytes, in C, where the deadline cannot stop it."""
    assert peak_memory(lambda: go(source, ONE_MB, messages=USER)) < 10 * ONE_MB.max_output


def test_go_templates_stop_at_their_deadline() -> None:
    budget = Budget(TemplateLimits(timeout=0.2))
    started = time.monotonic()
    with pytest.raises(TemplateLimitExceeded, match=r"longer than 0\.2s \(server\.template_timeout\)"):
        PromptTemplate.parse("{{range 1000000000}}{{end}}").render(PromptValues(prompt="x"), budget=budget)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("source", "message"), [
    ("{{ 'a' * 200000000 }}", "server.template_max_output"),
    ("{{ 7 ** (7 ** 8) }}", "integer result over 16384 bits"),
    ("{% set ns = namespace(x=2) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
     "integer result over"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "server.template_max_iterations"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
     "server.template_max_iterations"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
     "server.template_max_output"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
     "server.template_max_output"),
    ("{{ 'a'|center(1000000000) }}", "server.template_max_output"),
    ("{{ 'a'.ljust(1000000000) }}", "server.template_max_output"),
    ("{{ '%1000000000s'|format('x') }}", "server.template_max_output"),
    ("{{ '%1000000000s' % 'x' }}", "server.template_max_output"),
    ("{{ '{:>1000000000}'.format('x') }}", "server.template_max_output"),
    ("{{ ('a' * 1000)|replace('a', 'a' * 1000)|replace('a', 'a' * 1000) }}", "server.template_max_output"),
    ("{{ [1]|batch(1000000000, 'x')|list|length }}", "server.template_max_output"),
    ("{{ [1]|slice(1000000000)|list|length }}", "server.template_max_output"),
    ("{{ messages|tojson(indent=1000000000) }}", "server.template_max_output"),
    ("{% set big = 'x' * 90000 %}{{ ([big] * 1000)|join }}", "server.template_max_output"),
    ("{% set big = 'x' * 90000 %}{{ ''.join([big] * 1000) }}", "server.template_max_output"),
    ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "server.template_max_output"),
    ("{{ lipsum(1000000) }}", "'lipsum' is undefined"),
    ("{{ 10.0 ** 1000 }}", "OverflowError"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
])
def test_jinja_templates_stop_at_their_limits(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        jinja(source)


_BIG = "{% set b = 'x' * 900000 %}"
_HUNDRED_BS = ", ".join(["b"] * 100)


@pytest.mark.parametrize("source", [
    _BIG + "{{ ('%s' * 100) % (" + _HUNDRED_BS + ") }}",
    _BIG + "{{ ('%(a)s' * 100) % {'a': b} }}",
    _BIG + "{{ ('%s' * 100)|format(" + _HUNDRED_BS + ") }}",
    _BIG + "{{ ('{0}' * 100).format(b) }}",
    _BIG + "{{ ('{a}' * 100).format_map({'a': b}) }}",
    "{{ ('{0:>900000}' * 100).format('') }}",
    _BIG + "{{ [b] * 100 }}",
    _BIG + "{{ ([b] * 100) ~ '' }}",
    _BIG + "{{ ('%s' * 100) % ((b,) * 100) }}",
    _BIG + "{% set l = [b, b, b, b, b, b, b, b, b, b] %}{{ (l + l)|string }}",
])
def test_jinja_refuses_a_string_over_the_limit_before_building_it(source: str) -> None:
    """``%``, ``format`` and printing a list repeated with ``*`` used to build their whole result
    (in C) before its size was checked."""
    assert peak_memory(lambda: jinja(source, ONE_MB)) < 10 * ONE_MB.max_output


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ '%s-%5d-%%-%-4s|%.2s|%r' % ('ab', 3, 'c', 'xyz', 'q') }}", "ab-    3-%-c   |xy|'q'"),
    ("{{ '%(a)s/%(a)r' % {'a': 1} }}", "1/1"),
    ("{{ '{0}-{x!r}-{0:>4}'.format('a', x=[1, 'b']) }}", "a-[1, 'b']-   a"),
    ("{{ [1, 'a'] * 2 }}{{ (1,) + (2,) }}", "[1, 'a', 1, 'a'](1, 2)"),
])
def test_jinja_formatting_within_the_limit_is_unchanged(source: str, expected: str) -> None:
    assert jinja(source, ONE_MB) == expected


def test_jinja_does_not_fold_huge_constants_while_compiling() -> None:
    started = time.monotonic()
    template = ChatTemplate("{{ 7 ** (7 ** 8) }}{{ 'a' * 2000000000 }}")  # old code: minutes, or out of memory
    assert time.monotonic() - started < 5
    with pytest.raises(TemplateLimitExceeded):
        template.render(USER)


def test_jinja_loops_keep_their_length_and_else() -> None:
    source = ("{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.content }}{% if loop.last %}.{% endif %}"
              "{% else %}none{% endfor %}{% for x in [] %}{% else %}-{% endfor %}{{ messages|tojson(indent=2) }}")
    assert ChatTemplate(source).render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == (
        '1/2:a2/2:b.-[\n  {\n    "role": "user",\n    "content": "a"\n  },\n  {\n    "role": "user",\n'
        '    "content": "b"\n  }\n]')


def test_a_stuck_render_is_abandoned_and_stops_when_cancelled() -> None:
    """run_template answers at the deadline even if the render ignores it, and a cancelled
    caller stops the render at its next step."""
    stopped = []

    def stubborn(budget: Budget) -> str:
        time.sleep(1.5)  # one step that no check can interrupt
        try:
            while True:
                budget.check_time()
                time.sleep(0.01)
        finally:
            stopped.append(budget.cancelled)

    async def main() -> None:
        budget = Budget(TemplateLimits(timeout=0.1))
        started = time.monotonic()
        with pytest.raises(TemplateLimitExceeded, match="longer than 0.1s"):
            await run_template(budget, stubborn, budget)
        assert time.monotonic() - started < 1.4  # the deadline and its grace second, not the sleep
        with anyio.CancelScope() as scope:
            scope.cancel()
            await run_template(Budget(TemplateLimits(timeout=60)), stubborn, Budget(TemplateLimits(timeout=60)))
        await anyio.sleep(2)

    anyio.run(main)
    assert stopped and stopped[0] is True


# -- truncation ------------------------------------------------------------------------------------


class CountingModel:
    """A loaded model whose tokenizer counts one token per four characters, and its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def tokenize(self, text: str) -> list[int]:
        self.calls += 1
        return [0] * math.ceil(len(text) / 4)


def conversation(turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are terse."}]
    for index in range(turns):
        role = "user" if index % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"message {index}: " + "lorem ipsum dolor sit amet " * 3})
    return messages


def fit(messages: list[dict[str, str]], limit: int, tmp_path: Path) -> tuple[str, int]:
    settings = Settings.load(environ={"HOME": str(tmp_path)})
    inference = Inference(SimpleNamespace(settings=settings))
    prepared = Prepared(info=None, parts=None, facts=ModelFacts(), template=PromptTemplate.parse(SMOL_TEMPLATE), params={},
                        capabilities=("completion",))
    model = CountingModel()
    lease = SimpleNamespace(model=model)

    async def main() -> str:
        return await inference._fit(prepared, lease, list(messages), (), False, "", False, limit=limit, truncate=True)

    return anyio.run(main), model.calls


def reference_fit(messages: list[dict[str, str]], limit: int) -> str:
    """Ollama's chatPrompt: the first cut point, from the front, whose prompt fits."""
    template = PromptTemplate.parse(SMOL_TEMPLATE)
    for cut in range(len(messages)):
        kept = [m for m in messages[:cut] if m["role"] == "system"] + messages[cut:]
        prompt = template.render(PromptValues(messages=kept))
        if math.ceil(len(prompt) / 4) <= limit or cut == len(messages) - 1:
            return prompt
    raise AssertionError("unreachable")


@pytest.mark.parametrize("limit", [8, 60, 300, 1000, 100_000])
def test_truncation_keeps_what_ollama_keeps(limit: int, tmp_path: Path) -> None:
    messages = conversation(41)
    prompt, _ = fit(messages, limit, tmp_path)
    assert prompt == reference_fit(messages, limit)
    assert prompt.startswith("<|im_start|>system\nYou are terse.") and "message 40:" in prompt


def test_truncating_a_long_chat_tokenizes_a_logarithmic_number_of_times(tmp_path: Path) -> None:
    """1,500 messages, about 133 KB: Ollama's way tokenizes once per dropped message (over a
    thousand times here); a binary search needs about log2(1500) = 11."""
    messages = conversation(1500)
    assert 125_000 < sum(len(m["content"]) for m in messages) < 145_000
    prompt, calls = fit(messages, 2048, tmp_path)
    assert calls <= 2 * math.ceil(math.log2(1500)) + 2, calls
    assert math.ceil(len(prompt) / 4) <= 2048 and "message 1499:" in prompt and "You are terse." in prompt
