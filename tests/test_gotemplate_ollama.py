"""Rendering for a request as Ollama's template.Execute does, and what Ollama reads off a template.

Cases marked "Ollama:" are ported from Ollama's template/template_test.go and
thinking/template_test.go.
"""

from __future__ import annotations

import datetime
import json

import pytest

from corral.errors import TemplateError
from corral.gotemplate.ollama import (
    DEFAULT_TEMPLATE,
    Message,
    PromptTemplate,
    PromptValues,
    Tool,
    ToolCall,
    collate,
    message_from,
)


def render(text: str, **values: object) -> str:
    return PromptTemplate.parse(text).render(PromptValues(**values))  # type: ignore[arg-type]


def user(text: str) -> Message:
    return Message(role="user", content=text)


def assistant(text: str) -> Message:
    return Message(role="assistant", content=text)


def system(text: str) -> Message:
    return Message(role="system", content=text)


MISTRAL_LEGACY = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
MISTRAL_LEGACY_RESPONSE = MISTRAL_LEGACY + "{{ .Response }}"
MISTRAL_MESSAGES = (
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n"
    '{{- range .Messages }}\n{{- if eq .Role "user" }}{{ .Content }}[/INST] '
    '{{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n{{- end }}'
)


@pytest.mark.parametrize("text", [MISTRAL_LEGACY, MISTRAL_LEGACY_RESPONSE, MISTRAL_MESSAGES])
def test_legacy_and_messages_templates_agree(text: str) -> None:
    # Ollama: TestExecuteWithMessages "mistral" and "mistral system"
    messages = [user("Hello friend!"), assistant("Hello human!"), user("What is your name?")]
    assert render(text, messages=messages) == "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
    with_system = [system("You are a helpful assistant!"), *messages]
    assert render(text, messages=with_system) == (
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )


@pytest.mark.parametrize(
    "text",
    [
        "[INST] {{ .Prompt }}[/INST] ",
        "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
        '\n{{- range $i, $m := .Messages }}\n{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST] '
        '{{ else if eq .Role "assistant" }}{{ .Content }}{{ end }}\n{{- end }}',
    ],
)
def test_a_trailing_assistant_message_is_continued(text: str) -> None:
    # Ollama: TestExecuteWithMessages "mistral assistant"
    messages = [user("Hello friend!"), assistant("Hello human!"), user("What is your name?"), assistant("My name is Ollama and I")]
    assert render(text, messages=messages) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I"
    )


@pytest.mark.parametrize(
    "text",
    [
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n"
        "{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
        "\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
    ],
)
def test_chatml_legacy_and_messages(text: str) -> None:
    # Ollama: TestExecuteWithMessages "chatml"
    messages = [system("You are a helpful assistant!"), user("Hello friend!"), assistant("Hello human!"), user("What is your name?")]
    assert render(text, messages=messages) == (
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
        "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_fill_in_the_middle() -> None:
    # Ollama: TestExecuteWithSuffix
    text = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}"
    assert render(text, messages=[user("hello")]) == "hello"
    assert render(text, prompt="def add(", suffix="return x") == "<PRE> def add( <SUF>return x <MID>"
    assert PromptTemplate.parse(text).capabilities() == ["insert"]


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("{{ .Prompt }}", ["prompt", "response"]),
        ("{{ .System }} {{ .Prompt }}", ["prompt", "response", "system"]),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", ["prompt", "response", "system"]),
        ("{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}", ["prompt", "response", "system", "tools"]),
        ("{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}", ["content", "messages", "role"]),
        (
            '{{ range .Messages }}{{ if eq .Role "tool" }}Tool Result: {{ .ToolName }} {{ .Content }}{{ end }}{{ end }}',
            ["content", "messages", "role", "toolname"],
        ),
        # declared variables and chained terms are not identifiers; a parenthesized pipeline is
        ("{{ $x := .Function.Name }}{{ (.A).B }}{{ (.C) }}", ["c", "function", "name", "response"]),
    ],
)
def test_vars(text: str, variables: list[str]) -> None:
    # Ollama: TestParse (the Response action is appended when neither messages nor response is used)
    assert PromptTemplate.parse(text).vars == variables


def test_the_default_template_renders_the_prompt() -> None:
    assert DEFAULT_TEMPLATE.render(PromptValues(messages=[system("s"), user("hi")])) == "hi"
    assert DEFAULT_TEMPLATE.raw == "{{ .Prompt }}"


def test_legacy_turns_render_one_after_another() -> None:
    text = "{{ if .System }}S:{{ .System }};{{ end }}U:{{ .Prompt }};A:{{ .Response }};"
    messages = [system("s1"), user("u1"), assistant("a1"), system("s2"), user("u2")]
    assert render(text, messages=messages) == "S:s1;U:u1;A:a1;S:s2;U:u2;A:"


def test_legacy_last_turn_runs_without_ollama_functions() -> None:
    # Ollama executes the cut tree as a bare template: json is not defined there.
    after = "{{ .Prompt }}:{{ .Response }}{{ json .Response }};"
    assert render(after, messages=[user("a"), assistant("b"), user("c")]) == 'a:b"b";c:'
    before = "{{ json .Prompt }}{{ .Response }}"
    with pytest.raises(TemplateError, match='"json" is not a defined function'):
        render(before, messages=[user("a"), assistant("b"), user("c")])


def test_legacy_cut_drops_everything_after_the_response_field() -> None:
    text = "<s>{{ .Prompt }}{{ if .Prompt }}[{{ .Response }}|after]{{ end }}tail"
    assert render(text, messages=[user("q")]) == "<s>q["
    assert render("{{ .Prompt }}={{ .Response | printf \"%s!\" }}", messages=[user("q")]) == "q="


def test_collate_merges_consecutive_roles_but_not_tool_results() -> None:
    # Ollama: TestCollate
    found_system, merged = collate([user("Hello"), user("How are you?")])
    assert (found_system, [m.content for m in merged]) == ("", ["Hello\n\nHow are you?"])
    tools = [Message(role="tool", content="sunny", tool_name="a"), Message(role="tool", content="72F", tool_name="b")]
    assert [m.tool_name for m in collate(tools)[1]] == ["a", "b"]
    found_system, merged = collate([system("one"), system("two"), user("x")])
    assert found_system == "one\n\ntwo"
    assert [(m.role, m.content) for m in merged] == [("system", "one\n\ntwo"), ("user", "x")]


def test_system_is_all_system_messages_in_messages_mode() -> None:
    text = "{{ .System }}|{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}"
    assert render(text, messages=[system("a"), user("u"), system("b")]) == "a\n\nb|system:a;user:u;system:b;"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {
            "type": "object",
            "required": ["location"],
            "properties": {
                "location": {"type": "string", "description": "City <name>"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"], "default": "c"},
                "opts": {"type": "object", "properties": {"z": {"type": "integer"}, "a": {"type": "boolean"}}},
            },
        },
    },
}
CALL = {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"unit": "c", "location": "Tokyo", "n": 1000000}}}]}
MESSAGES_MODE = "{{ range .Messages }}{{ end }}"


def test_tools_print_as_json() -> None:
    expected_tool = (
        '{"type":"function","function":{"name":"get_weather","description":"Get weather","parameters":{"type":"object",'
        '"required":["location"],"properties":{"location":{"type":"string","description":"City \\u003cname\\u003e"},'
        '"opts":{"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"boolean"}}},'
        '"unit":{"type":["string","null"],"enum":["c","f"]}}}}}'
    )
    assert render(MESSAGES_MODE + "{{ .Tools }}", tools=[WEATHER_TOOL]) == f"[{expected_tool}]"
    assert render(MESSAGES_MODE + "{{ json .Tools }}", tools=[WEATHER_TOOL]) == f"[{expected_tool}]"
    assert render(MESSAGES_MODE + "{{ range .Tools }}{{ . }}{{ end }}", tools=[WEATHER_TOOL]) == expected_tool
    assert json.loads(expected_tool)["function"]["parameters"]["properties"]["unit"] == {"type": ["string", "null"], "enum": ["c", "f"]}


def test_a_tool_function_and_its_parameters_print_as_json() -> None:
    # ollama/ollama#14601: Ollama's main branch prints a Go struct here; corral follows the fix
    tool = Tool(name="f", description="d", parameters={"type": "object", "properties": {"x": {"type": "string"}}})
    text = MESSAGES_MODE + "{{ range .Tools }}{{ .Function }}|{{ .Function.Parameters }}{{ end }}"
    assert render(text, tools=[tool]) == (
        '{"name":"f","description":"d","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}'
        '|{"type":"object","properties":{"x":{"type":"string"}}}'
    )


def test_no_tools() -> None:
    assert render(MESSAGES_MODE + "{{ .Tools }}|{{ json .Tools }}|{{ if .Tools }}yes{{ end }}") == "null|null|"
    assert render(MESSAGES_MODE + "{{ .Tools }}", tools=[]) == "[]"
    assert render("{{ .Tools }}{{ .Prompt }}", messages=[user("x")]) == "<no value>x"  # legacy mode has no .Tools


def test_tool_properties_range_in_sorted_order_with_types() -> None:
    # Ollama: TestTemplatePropertiesRange
    text = MESSAGES_MODE + (
        "{{ range .Tools }}{{ range $name, $p := .Function.Parameters.Properties }}"
        "{{ $name }}:{{ $p.Type }}:{{ toTypeScriptType $p }};{{ end }}{{ end }}"
    )
    assert render(text, tools=[WEATHER_TOOL]) == "location:string:string;opts:object:Record<string, any>;unit:[string null]:string | null;"
    text = MESSAGES_MODE + "{{ range .Tools }}{{ .Function.Parameters.Properties }}{{ end }}"
    assert json.loads(render(text, tools=[WEATHER_TOOL]))["location"] == {"type": "string", "description": "City <name>"}


def test_tool_call_arguments() -> None:
    # Ollama: TestTemplateArgumentsJSON and TestTemplateArgumentsRange
    text = MESSAGES_MODE + "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }} {{ .Function.Arguments }}{{ end }}{{ end }}"
    assert render(text, messages=[CALL]) == 'get_weather {"location":"Tokyo","n":1000000,"unit":"c"}'
    text = MESSAGES_MODE + "{{ range .Messages }}{{ range .ToolCalls }}{{ range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }};{{ end }}{{ end }}{{ end }}"
    # arguments decode as Go's any: numbers are float64 and print with %v
    assert render(text, messages=[CALL]) == "location=Tokyo;n=1e+06;unit=c;"


def test_tool_call_without_arguments() -> None:
    text = MESSAGES_MODE + "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments }}|{{ json .Function.Arguments }}{{ end }}{{ end }}"
    call = Message(role="assistant", tool_calls=[ToolCall(name="now")])
    assert render(text, messages=[call]) == "{}|null"
    call = Message(role="assistant", tool_calls=[ToolCall(name="now", arguments={})])
    assert render(text, messages=[call]) == "{}|{}"


def test_messages_print_as_go_structs_and_json_with_go_field_names() -> None:
    text = MESSAGES_MODE + "{{ range .Messages }}{{ . }}|{{ json . }}{{ end }}"
    assert render(text, messages=[Message(role="tool", content="sunny", tool_name="w")]) == (
        '{tool sunny  [] [] w }|{"Role":"tool","Content":"sunny","Thinking":"","Images":null,'
        '"ToolCalls":null,"ToolName":"w","ToolCallID":""}'
    )


def test_api_mappings_are_accepted() -> None:
    message = message_from({"role": "USER", "content": "hi", "images": ["aGk="]})
    assert (message.role, message.images) == ("user", [b"hi"])
    text = MESSAGES_MODE + "{{ range .Messages }}{{ .Role }}{{ len .Images }}{{ json .Images }}{{ end }}"
    assert render(text, messages=[{"role": "user", "content": "x", "images": ["aGk="]}]) == 'user1["aGk="]'


def test_thinking_values() -> None:
    text = MESSAGES_MODE + "{{ .Think }} {{ .ThinkLevel }} {{ .IsThinkSet }}"
    assert render(text) == "false  false"
    assert render(text, think=True, think_level="high", is_think_set=True) == "true high true"
    assert render("{{ .Think }}{{ .Prompt }}", messages=[user("x")], think=True) == "truex"


def test_current_date_in_a_template() -> None:
    template = PromptTemplate.parse("{{- range .Messages }}{{ .Content }}{{ end }} Today is {{ currentDate }}")
    now = lambda: datetime.datetime(2025, 1, 2)  # noqa: E731
    assert template.render(PromptValues(messages=[user("Hello")]), now=now) == "Hello Today is 2025-01-02"


def test_capabilities() -> None:
    assert PromptTemplate.parse("{{ .Prompt }}").capabilities() == []
    assert PromptTemplate.parse("{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}").capabilities() == ["tools"]
    assert PromptTemplate.parse("{{ .Prompt }}{{ .Suffix }}").capabilities() == ["insert"]
    thinking = "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}{{ end }}"
    assert PromptTemplate.parse("{{ $.Tools }}" + thinking).capabilities() == ["tools", "thinking"]


QWEN3 = """
{{- if or .System .Tools .Thinking }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>
{{- end }}
{{- if .Thinking }}
/think
{{- else }}
/no_think
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if and $last .Thinking }}
<think>{{ .Thinking }}</think>
{{ end }}
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
"""


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        (
            "\n{{ if .Thinking}}\n/think\n{{ end }}\n{{- range $i, $_ := .Messages }}\n"
            "{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n{{ if and $last .Thinking }}\n"
            "<think>{{ .Thinking }}</think>\n{{ end }}\n{{ end }}\n",
            ("<think>", "</think>"),
        ),
        (
            "\n{{ if .Thinking}}\n/think\n{{ end }}\n{{- range $i, $_ := .Messages }}\n"
            "{{- range $j, $_ := .NotMessages }}\n{{ if .Thinking }}\n<think>{{ .Thinking }}</think>\n{{ end }}\n"
            "{{ end }}\n{{ end }}\n",
            ("", ""),
        ),
        (
            "{{- range $i, $_ := .Messages }}\n{{ if .Thinking }}\n  Some text before   {{ .Thinking }}    Some text after\n"
            "{{ end }}\n{{ end }}",
            ("Some text before", "Some text after"),
        ),
        (QWEN3, ("<think>", "</think>")),
        ("{{ range .Messages }}{{ .Content }}{{ end }}", ("", "")),
    ],
)
def test_thinking_tags(text: str, tags: tuple[str, str]) -> None:
    # Ollama: TestInferThinkingTags
    assert PromptTemplate.parse(text).thinking_tags() == tags


def test_qwen3_renders_a_tool_round_trip() -> None:
    messages = [user("weather?"), CALL, {"role": "tool", "content": "sunny"}]
    rendered = render(QWEN3, messages=messages, tools=[Tool(name="f", parameters={"type": "object"})])
    assert rendered == (
        "<|im_start|>system\n<tools>\n"
        '{"type": "function", "function": {"name":"f","description":"","parameters":{"type":"object","properties":null}}}\n'
        "</tools>\n/no_think<|im_end|>\n"
        "<|im_start|>user\nweather?<|im_end|>\n"
        "<|im_start|>assistant\n\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"location":"Tokyo","n":1000000,"unit":"c"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n\n"
    )


def test_parse_errors_surface_as_template_errors() -> None:
    with pytest.raises(TemplateError, match="unclosed action"):
        PromptTemplate.parse("{{ .Prompt ")
