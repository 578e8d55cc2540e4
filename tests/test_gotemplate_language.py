"""The text/template language: actions, control structures, variables, functions, literals.

Expected outputs are what Go's text/template prints (reasoned from text/template's exec.go,
funcs.go and parse/lex.go), with Ollama's options: missingkey=zero and its extra functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from corral.gotemplate import NIL, Template


def render(text: str, data: Any = None, **options: Any) -> str:
    return Template.parse(text).execute(data, **options)


@dataclasses.dataclass
class Point:
    X: int
    Y: int

    def Sum(self) -> int:
        return self.X + self.Y

    def Scale(self, factor: int) -> Point:
        return Point(self.X * factor, self.Y * factor)


# -- text, trimming, comments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("a  {{- 1 -}}  b", "a1b"),
        ("a \n\t {{- 1 }} \n b", "a1 \n b"),
        ("a {{ 1 -}} \n\r\t b", "a 1b"),
        ("{{-3}}", "-3"),  # no space after the dash: a negative number, not a trim marker
        ("{{- 3}}", "3"),
        ("x{{/* a comment */}}y", "xy"),
        ("x {{- /* trimmed */ -}} y", "xy"),
        ("x{{/* multi\nline */}}y", "xy"),
        ("{{ if\n  true\n}}yes{{ end }}", "yes"),  # newlines are spaces inside actions
        ("{{ 1 }}{{ 2 }}", "12"),
        ("{ {{- 1 -}} }", "{1}"),
    ],
)
def test_text_trimming_and_comments(text: str, expected: str) -> None:
    assert render(text) == expected


# -- fields ----------------------------------------------------------------------------------


def test_fields_of_maps_structs_and_chains() -> None:
    data = {"A": {"B": {"C": "deep"}}, "P": Point(1, 2), "L": [Point(3, 4)]}
    assert render("{{ .A.B.C }}", data) == "deep"
    assert render("{{ .P.X }},{{ .P.Y }}", data) == "1,2"
    assert render("{{ with index .L 0 }}{{ .X }}{{ end }}", data) == "3"
    assert render("{{ (index .L 0).Y }}", data) == "4"


def test_methods_are_called_with_arguments() -> None:
    data = {"P": Point(1, 2)}
    assert render("{{ .P.Sum }}", data) == "3"
    assert render("{{ (.P.Scale 10).X }}", data) == "10"
    assert render("{{ .P.Scale 2 }}", data) == "{2 4}"
    assert render("{{ 3 | .P.Scale }}", data) == "{3 6}"


def test_missing_keys_under_each_missingkey_option() -> None:
    assert render("{{ .Nope }}", {}) == "<no value>"
    assert render("{{ .Nope }}", {}, missing_key="default") == "<no value>"
    assert render("{{ .Nope }}", {"Nope": None}) == "<no value>"
    assert render("{{ $x := .Nope }}{{ $x.Deeper }}", {}) == "<no value>"
    assert render("{{ .Nope.Deeper }}", {}, missing_key="default") == "<no value>"
    assert render("{{ . }}") == "<no value>"
    assert render("{{ .Field }}") == "<no value>"  # a field of nil data is nil


def test_field_of_a_nil_interface_is_an_error_under_missingkey_zero() -> None:
    with pytest.raises(Exception, match=r"nil pointer evaluating interface \{\}\.Deeper"):
        render("{{ .Nope.Deeper }}", {})


# -- variables -------------------------------------------------------------------------------


def test_variables_declare_assign_and_scope() -> None:
    assert render("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}") == "2"
    assert render("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}") == "21"
    assert render("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}") == "2"
    assert render('{{ $s := "" }}{{ range .L }}{{ $s = . }}{{ end }}{{ $s }}', {"L": ["a", "b"]}) == "b"
    assert render("{{ with .A }}{{ $.B }}{{ end }}", {"A": 1, "B": "root"}) == "root"
    assert render("{{ $ }}", 7) == "7"
    assert render("{{ $x := 5 }}", None) == ""  # a declaration prints nothing
    assert render("{{ $m := .M }}{{ $m.k }}", {"M": {"k": "v"}}) == "v"


# -- if / else -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "truth"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (1, True),
        (-1, True),
        (0.0, False),
        (0.5, True),
        ("", False),
        ("x", True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"k": 0}, True),
        (Point(0, 0), True),  # structs are always true
        (b"", False),
    ],
)
def test_go_truth(value: Any, truth: bool) -> None:
    assert render("{{ if .V }}T{{ else }}F{{ end }}", {"V": value}) == ("T" if truth else "F")


def test_else_if_chains() -> None:
    text = '{{ if eq .R "a" }}A{{ else if eq .R "b" }}B{{ else if eq .R "c" }}C{{ else }}?{{ end }}'
    assert [render(text, {"R": r}) for r in "abcd"] == ["A", "B", "C", "?"]


def test_and_or_return_the_deciding_value_and_short_circuit() -> None:
    assert render("{{ and 1 0 2 }}") == "0"
    assert render("{{ and 1 2 }}") == "2"
    assert render('{{ or 0 "" "x" }}') == "x"
    assert render('{{ or 0 "" }}') == ""
    assert render("{{ or 1 (index .L 99) }}", {"L": []}) == "1"
    assert render("{{ and 0 (index .L 99) }}", {"L": []}) == "0"
    assert render("{{ .A | and 1 }}", {"A": "piped"}) == "piped"
    assert render("{{ not 0 }} {{ not .L }} {{ not 1 }}", {"L": [1]}) == "true false false"


# -- range -----------------------------------------------------------------------------------


def test_range_over_slices_with_index_and_element() -> None:
    data = {"L": ["a", "b", "c"]}
    assert render("{{ range .L }}{{ . }}{{ end }}", data) == "abc"
    assert render("{{ range $e := .L }}{{ $e }}{{ end }}", data) == "abc"
    assert render("{{ range $i, $e := .L }}{{ $i }}={{ $e }} {{ end }}", data) == "0=a 1=b 2=c "
    assert render("{{ range $i, $_ := .L }}{{ . }}{{ end }}", data) == "abc"


def test_range_over_maps_in_sorted_key_order() -> None:
    assert render("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}", {"b": 2, "a": 1, "c": 3}) == "a=1;b=2;c=3;"
    assert render("{{ range $k, $v := . }}{{ $k }}{{ end }}", {10: "x", 2: "y", 1: "z"}) == "1210"
    assert render("{{ range . }}{{ . }}{{ end }}", {"b": 2, "a": 1}) == "12"
    assert render("{{ range $k, $v := . }}{{ $k }}{{ end }}", {"B": 1, "a": 2, "_": 3}) == "B_a"


def test_range_else_break_continue() -> None:
    assert render("{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}) == "empty"
    assert render("{{ range .L }}x{{ else }}empty{{ end }}", {}) == "empty"
    assert render("{{ range .M }}x{{ else }}empty{{ end }}", {"M": {}}) == "empty"
    text = "{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}"
    assert render(text, {"L": [1, 2, 3, 4, 5]}) == "13"
    nested = "{{ range .A }}{{ range $.B }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }};{{ end }}"
    assert render(nested, {"A": [1, 2], "B": [1, 2, 3]}) == "1;1;"


def test_range_over_an_integer() -> None:
    assert render("{{ range 3 }}{{ . }}{{ end }}") == "012"
    assert render("{{ range $i := 3 }}{{ $i }}{{ end }}") == "012"
    assert render("{{ range 0 }}x{{ else }}none{{ end }}") == "none"
    assert render("{{ range .N }}{{ . }}{{ end }}", {"N": 2}) == "01"


def test_range_with_assignment_to_declared_variables() -> None:
    text = '{{ $i := 0 }}{{ $e := "" }}{{ range $i, $e = .L }}{{ end }}{{ $i }}{{ $e }}'
    assert render(text, {"L": ["a", "b"]}) == "1b"


def test_range_variables_do_not_leak_between_iterations() -> None:
    text = "{{ range .L }}{{ $x := . }}{{ $x }}{{ end }}"
    assert render(text, {"L": [1, 2]}) == "12"


def test_range_nil_elements_are_nil_interfaces() -> None:
    assert render("{{ range .L }}[{{ . }}]{{ end }}", {"L": [None, 1]}) == "[<no value>][1]"


# -- with --------------------------------------------------------------------------------------


def test_with_else_and_else_with() -> None:
    text = "{{ with .X }}x={{ . }}{{ else with .Y }}y={{ . }}{{ else }}none{{ end }}"
    assert render(text, {"X": 1}) == "x=1"
    assert render(text, {"Y": 2}) == "y=2"
    assert render(text, {}) == "none"
    assert render("{{ with $v := .X }}{{ $v }}{{ . }}{{ end }}", {"X": "a"}) == "aa"


# -- define, template, block -------------------------------------------------------------------


def test_define_and_template() -> None:
    text = '{{ define "item" }}<{{ . }}>{{ end }}{{ range .L }}{{ template "item" . }}{{ end }}'
    assert render(text, {"L": [1, 2]}) == "<1><2>"
    assert render('{{ define "t" }}[{{ . }}]{{ end }}{{ template "t" }}') == "[<no value>]"
    # no dynamic scoping: $ inside a template is the template's own dot
    assert render('{{ define "t" }}{{ $ }}{{ end }}{{ $x := 1 }}{{ template "t" "dot" }}') == "dot"


def test_block_defines_and_runs() -> None:
    assert render('{{ block "b" .X }}({{ . }}){{ end }}!', {"X": 5}) == "(5)!"


def test_an_empty_redefinition_keeps_the_first() -> None:
    assert render('{{ define "a" }}A{{ end }}{{ define "a" }}  {{ end }}{{ template "a" }}') == "A"


# -- pipelines and functions -----------------------------------------------------------------


def test_pipelines_pass_the_value_as_last_argument() -> None:
    assert render('{{ "x" | printf "%s-%s" "y" }}') == "y-x"
    assert render('{{ .S | len | printf "%03d" }}', {"S": "abcd"}) == "004"
    assert render("{{ (len .L) }}", {"L": [1, 2]}) == "2"
    assert render('{{ $x := "v" | printf "<%s>" }}{{ $x }}') == "<v>"


def test_comparisons() -> None:
    assert render('{{ eq .R "user" }} {{ eq .R "a" "b" "user" }}', {"R": "user"}) == "true true"
    assert render("{{ eq 1 2 }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 3 2 }} {{ ge 1 2 }}") == (
        "false true true true true false"
    )
    assert render('{{ lt "a" "b" }} {{ gt 1.5 2.5 }} {{ eq true true }}') == "true false true"
    assert render('{{ eq "a" nil }} {{ eq .Nope nil }}', {}) == "false true"
    assert render("{{ eq .Nope .AlsoNope }}", {}) == "true"


def test_len_index_slice() -> None:
    data = {"L": ["a", "b", "c"], "M": {"k": "v"}, "LL": [[1, 2], [3, 4]], "S": "héllo"}
    assert render("{{ len .L }} {{ len .M }} {{ len .S }}", data) == "3 1 6"  # bytes, as Go counts
    assert render('{{ index .L 1 }} {{ index .M "k" }} {{ index .LL 1 0 }}', data) == "b v 3"
    assert render('{{ index .M "missing" }}', data) == "<no value>"
    assert render('{{ index "abc" 1 }}', data) == "98"
    assert render("{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .L }} {{ slice .L 0 1 3 }}", data) == "[b c] [b] [a b c] [a]"
    assert render('{{ slice "hello" 1 3 }} {{ slice .S 1 3 }}{{ slice .S 3 }}', data) == "el éllo"


def test_print_functions() -> None:
    assert render('{{ print "a" 1 2 "b" 3 }}') == "a1 2b3"
    assert render("{{ print 1 nil }}") == "1 <nil>"
    assert render('{{ print .Nope }}', {}) == "<nil>"
    assert render('{{ println "a" 1 }}') == "a 1\n"
    assert render("{{ printf \"%d-%s\" 1 \"x\" }}") == "1-x"


def test_escapers() -> None:
    assert render('{{ html "<a href=\'x\'>&\\"" }}') == "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"
    assert render('{{ html .Nope }}', {}) == "&lt;no value&gt;"
    assert render('{{ js "it\'s <b>=\\n é" }}') == "it\\'s \\u003Cb\\u003E\\u003D\\u000A é"
    assert render('{{ urlquery "a b/c?d=é" }}') == "a+b%2Fc%3Fd%3D%C3%A9"
    assert render("{{ html 1 2 }}") == "1 2"


def test_call_and_custom_functions() -> None:
    data = {"F": lambda a, b: a + b, "G": lambda: "g"}
    assert render("{{ call .F 1 2 }} {{ call .G }}", data) == "3 g"
    template = Template.parse('{{ shout "hi" }} {{ .X | shout }}', functions={"shout": lambda s: s.upper() + "!"})
    assert template.execute({"X": "yo"}) == "HI! YO!"


def test_ollama_functions() -> None:
    import datetime

    now = lambda: datetime.datetime(2024, 3, 1, 12, 0)  # noqa: E731
    assert render("{{ currentDate }} {{ yesterdayDate }}", now=now) == "2024-03-01 2024-02-29"
    assert render('{{ currentDate "ignored" }}', now=now) == "2024-03-01"
    assert render("{{ json . }}", {"b": [1, 2.5, None, True], "a": "<&>"}) == '{"a":"\\u003c\\u0026\\u003e","b":[1,2.5,null,true]}'
    assert render("{{ toTypeScriptType . }}", {}) == "any"


# -- literals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{ "a\\tb\\u00e9\\x41" }}', "a\tbéA"),
        ("{{ `raw\\n` }}", "raw\\n"),
        ("{{ `a\r\nb` }}", "a\nb"),  # carriage returns are dropped from raw strings
        ("{{ 'a' }} {{ '\\n' }} {{ '\\u00e9' }}", "97 10 233"),
        ('{{ printf "%c" \'x\' }}', "x"),
        ("{{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }} {{ 0x_1F }}", "31 15 15 5 1000 31"),
        ("{{ 1.5e3 }} {{ 1e100 }} {{ 0x1p4 }} {{ .5 }} {{ -2.50 }}", "1500 1e+100 16 0.5 -2.5"),
        ("{{ 1i }} {{ 2+3i }}", "(0+1i) (2+3i)"),
        ("{{ true }} {{ false }}", "true false"),
        ("{{ -0 }} {{ +5 }}", "0 5"),
    ],
)
def test_literals(text: str, expected: str) -> None:
    assert render(text) == expected


def test_nil_interface_constant_is_exported() -> None:
    assert repr(NIL) == "NIL"
