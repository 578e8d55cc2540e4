"""Every error path: Go's message, with the line and (1-based) column of the offending token or node."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from corral.errors import InvalidRequest, TemplateError
from corral.gotemplate import Template
from corral.gotemplate.ollama import PromptTemplate


def parse_error(text: str) -> tuple[str, int | None, int | None]:
    with pytest.raises(TemplateError) as caught:
        Template.parse(text)
    error = caught.value
    prefix = f"template: line {error.line}" + (f", column {error.column}" if error.column else "") + ": "
    assert str(error).startswith(prefix)
    return str(error)[len(prefix) :], error.line, error.column


def exec_error(text: str, data: Any = None, **options: Any) -> tuple[str, int | None, int | None]:
    template = Template.parse(text)
    with pytest.raises(TemplateError) as caught:
        template.execute(data, **options)
    error = caught.value
    prefix = f"template: line {error.line}, column {error.column}: " if error.line else "template: "
    assert str(error).startswith(prefix)
    return str(error)[len(prefix) :], error.line, error.column


def test_template_errors_are_invalid_requests() -> None:
    assert issubclass(TemplateError, InvalidRequest)


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("{{ .Prompt ", "unclosed action", 1, 12),
        ("ok\n{{ .Prompt", "unclosed action", 2, 11),
        ("{{/* never closed", "unclosed comment", 1, 3),
        ("{{/* c */ x}}", "comment ends before closing delimiter", 1, 3),
        ("a{{ end }}", "unexpected {{end}}", 1, 9),
        ("{{ else }}", "unexpected {{else}}", 1, 9),
        ("{{ if true }}x", "unexpected EOF", 1, 15),
        ("{{ nope 1 }}", 'function "nope" not defined', 1, 4),
        ("\n\n  {{ $x }}", 'undefined variable "$x"', 3, 6),
        ("{{ range $i, $e := .L }}{{ end }}{{ $i }}", 'undefined variable "$i"', 1, 37),
        ("{{ }}", "missing value for command", 1, 4),
        ("{{ break }}", "{{break}} outside {{range}}", 1, 10),
        ("{{ continue }}", "{{continue}} outside {{range}}", 1, 13),
        ("{{ range .L }}{{ break 1 }}{{ end }}", 'unexpected "1" in {{break}}', 1, 24),
        ("{{ if 1 }}a{{ else }}b{{ else }}c{{ end }}", "expected end; found {{else}}", 1, 31),
        ("{{ 1 | 2 }}", "non executable command in pipeline stage 2", 1, 8),
        ("{{ 3x }}", 'bad number syntax: "3x"', 1, 4),
        ('{{ "abc }}', "unterminated quoted string", 1, 4),
        ("{{ `abc }}", "unterminated raw quoted string", 1, 4),
        ("{{ 'a }}", "unterminated character constant", 1, 4),
        ("{{ 'ab' }}", "malformed character constant: 'ab'", 1, 4),
        ('{{ "\\q" }}', "invalid syntax", 1, 4),
        ("{{ .X = 1 }}", 'unexpected "=" in operand', 1, 7),
        ("{{ range $i, 3 }}{{ end }}", "range can only initialize variables", 1, 14),
        ("{{ $a, $b := 1 }}", "too many declarations in command", 1, 6),
        ('{{ "s".X }}', 'unexpected . after term "\\"s\\""', 1, 7),
        ("{{ ) }}", "unexpected right paren U+0029 ')'", 1, 5),
        ("{{ (1 }}", "unclosed left paren", 1, 7),
        ("{{ \x01 }}", "unrecognized character in action: U+0001", 1, 4),
        ("{{ .a# }}", "bad character U+0023 '#'", 1, 4),
        ('{{ $x := 1 }}{{ $x : 1 }}', "expected :=", 1, 20),
        ("{{ $x : 1 }}", 'undefined variable "$x"', 1, 4),
        ("{{ 99999999999999999999 }}", 'integer overflow: "99999999999999999999"', 1, 4),
        ('{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}', 'template: multiple definition of template "a"', 1, 51),
        ('{{ if 1 }}{{ define "x" }}{{ end }}{{ end }}', "unexpected <define> in command", 1, 14),
        ("{{ define 1 }}{{ end }}", "unexpected \"1\" in define clause", 1, 11),
        ('{{ template .X }}', 'unexpected ".X" in template clause', 1, 13),
        ('{{ template "a" }}x{{ else }}', "unexpected {{else}}", 1, 28),
        ("{{ if }}{{ end }}", "missing value for if", 1, 7),
        ("{{ with 1 }}{{ else if 2 }}{{ end }}", "unexpected <if> in input", 1, 21),
        ("{{ range .L \n 1 2 }}", "unexpected EOF", 2, 8),
    ],
)
def test_parse_errors(text: str, message: str, line: int, column: int) -> None:
    assert parse_error(text) == (message, line, column)


def test_an_error_token_on_a_later_line_names_where_the_action_began() -> None:
    message, line, _ = parse_error('{{ printf "%s"\n "unterminated\n}}')
    assert (message, line) == ("unterminated quoted string in action started at :1", 2)


@dataclasses.dataclass
class Point:
    X: int

    def Scale(self, factor: int) -> int:
        return self.X * factor


def boom(value: Any) -> str:
    raise ValueError("kaput")


@pytest.mark.parametrize(
    ("text", "data", "message", "column"),
    [
        ("{{ .A.B }}", {"A": "s"}, 'executing "" at <.A.B>: can\'t evaluate field B in type string', 6),
        ("{{ .X }}", 1, 'executing "" at <.X>: can\'t evaluate field X in type int', 4),
        ("{{ .Nope.X }}", {}, 'executing "" at <.Nope.X>: nil pointer evaluating interface {}.X', 9),
        ('{{ template "nope" }}', None, 'executing "" at <{{template "nope"}}>: template "nope" not defined', 13),
        ("{{ index .L 5 }}", {"L": [1]}, 'executing "" at <index .L 5>: error calling index: index out of range: 5', 4),
        ("{{ index .L 1 }}", {"L": [1]}, 'executing "" at <index .L 1>: error calling index: reflect: slice index out of range', 4),
        ('{{ index .L "x" }}', {"L": [1]}, 'executing "" at <index .L "x">: error calling index: cannot index slice/array with type string', 4),
        ("{{ index 3 0 }}", None, 'executing "" at <index 3 0>: error calling index: can\'t index item of type int', 4),
        ("{{ index nil 0 }}", None, 'executing "" at <index nil 0>: error calling index: index of untyped nil', 4),
        ("{{ slice .L 2 1 }}", {"L": [1, 2]}, 'executing "" at <slice .L 2 1>: error calling slice: invalid slice index: 2 > 1', 4),
        ('{{ slice "abc" 0 1 2 }}', None, 'executing "" at <slice "abc" 0 1 2>: error calling slice: cannot 3-index slice a string', 4),
        ("{{ slice 3 }}", None, 'executing "" at <slice 3>: error calling slice: can\'t slice item of type int', 4),
        ("{{ len 3 }}", None, 'executing "" at <len 3>: error calling len: len of type int', 4),
        ("{{ len .Nope }}", {}, 'executing "" at <len .Nope>: error calling len: len of nil pointer', 4),
        ("{{ eq .L .L }}", {"L": [1]}, 'executing "" at <eq .L .L>: error calling eq: non-comparable type [1]: []interface {}', 4),
        ('{{ lt 1 "a" }}', None, 'executing "" at <lt 1 "a">: error calling lt: incompatible types for comparison: int and string', 4),
        ('{{ eq 1 "a" }}', None, 'executing "" at <eq 1 "a">: error calling eq: incompatible types for comparison: int and string', 4),
        ("{{ lt true false }}", None, 'executing "" at <lt true false>: error calling lt: invalid type for comparison', 4),
        ("{{ eq 1 }}", None, 'executing "" at <eq 1>: error calling eq: missing argument for comparison', 4),
        ("{{ and }}", None, 'executing "" at <and>: wrong number of args for and: want at least 1 got 0', 4),
        ("{{ not 1 2 }}", None, 'executing "" at <not>: wrong number of args for not: want 1 got 2', 4),
        ("{{ printf 1 }}", None, 'executing "" at <1>: expected string; found 1', 11),
        ("{{ printf .N }}", {"N": 3}, 'executing "" at <.N>: wrong type for value; expected string; got int', 11),
        ("{{ printf nil }}", None, 'executing "" at <nil>: cannot assign nil to string', 11),
        ("{{ currentDate 1 }}", None, 'executing "" at <1>: expected string; found 1', 16),
        ("{{ nil }}", None, 'executing "" at <nil>: nil is not a command', 4),
        ('{{ range "abc" }}{{ end }}', None, 'executing "" at <"abc">: range can\'t iterate over abc', 10),
        ("{{ range $i, $e := 3 }}{{ end }}", None, 'executing "" at <3>: can\'t use 3 to iterate over more than one variable', 20),
        ("{{ .M.k 1 }}", {"M": {"k": 1}}, 'executing "" at <.M.k>: k is not a method but has arguments', 6),
        ("{{ .P.X 1 }}", {"P": Point(1)}, 'executing "" at <.P.X>: X has arguments but cannot be invoked as function', 6),
        ("{{ .P.Scale }}", {"P": Point(1)}, 'executing "" at <.P.Scale>: wrong number of args for Scale: want 1 got 0', 6),
        ("{{ $x := 1 }}{{ $x 2 }}", None, 'executing "" at <$x>: can\'t give argument to non-function $x', 17),
        ("{{ call .F }}", {"F": 3}, 'executing "" at <call .F>: error calling call: non-function .F of type int', 4),
        ("{{ call .Nope }}", {}, 'executing "" at <call .Nope>: error calling call: call of nil', 4),
        ("{{ call .F 1 }}", {"F": lambda: 1}, 'executing "" at <call .F 1>: error calling call: wrong number of args for .F: got 1 want 0', 4),
        ("{{ call .F 1 }}", {"F": boom}, 'executing "" at <call .F 1>: error calling call: kaput', 4),
        ("{{ .F }}", {"F": boom}, 'executing "" at <{{.F}}>: can\'t print {{.F}} of type func(...) interface {}', 4),
        ("{{ 18446744073709551615 }}", None, 'executing "" at <18446744073709551615>: 18446744073709551615 overflows int', 4),
        ('{{ define "t" }}\n{{ .X.Y }}{{ end }}{{ template "t" 1 }}', None, 'executing "t" at <.X.Y>: can\'t evaluate field X in type int', 6),
        ('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" 1 }}', None, 'executing "r" at <{{template "r" .}}>: exceeded maximum template depth (100)', 29),
    ],
)
def test_execution_errors(text: str, data: Any, message: str, column: int) -> None:
    found, _, found_column = exec_error(text, data)
    assert (found, found_column) == (message, column)


def test_execution_error_lines() -> None:
    assert exec_error("one\ntwo\n  {{ .A.B }}", {"A": 1})[1:] == (3, 8)


def test_missingkey_error() -> None:
    message, _, _ = exec_error("{{ .Nope }}", {}, missing_key="error")
    assert message == 'executing "" at <.Nope>: map has no entry for key "Nope"'
    message, _, _ = exec_error("{{ .Nope }}", None, missing_key="error")
    assert message == 'executing "" at <.Nope>: nil data; no entry for key "Nope"'
    with pytest.raises(ValueError):
        Template.parse("x").execute(None, missing_key="bogus")


def test_python_function_errors_are_reported_as_go_function_errors() -> None:
    template = Template.parse("{{ boom . }}", functions={"boom": boom})
    with pytest.raises(TemplateError, match=r'at <boom \.>: error calling boom: kaput'):
        template.execute(1)


def test_ollama_rejects_a_template_call_without_data() -> None:
    with pytest.raises(TemplateError) as caught:
        PromptTemplate.parse('{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" . }}')
    assert caught.value.message == "template: line 1, column 29: undefined template specified"
