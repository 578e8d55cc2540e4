"""How values print: Go's fmt rules for {{ . }}, print and printf, and json's encoding."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from corral.gotemplate import FieldSpec, GoType, Named, Pointer, Struct, Template
from corral.gofmt import format_float, go_quote, sprintf
from corral.gotemplate.gojson import marshal


def render(text: str, data: Any = None) -> str:
    return Template.parse(text).execute(data)


@dataclasses.dataclass
class Point:
    X: int
    Y: int


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ({"b": 2, "a": 1}, "map[a:1 b:2]"),
        (["a", "b"], "[a b]"),
        ([], "[]"),
        ({}, "map[]"),
        ([1, None, 2.5], "[1 <nil> 2.5]"),
        ({"k": [1, 2], "j": {"x": True}}, "map[j:map[x:true] k:[1 2]]"),
        ({2: "b", 10: "c", 1: "a"}, "map[1:a 2:b 10:c]"),
        ({"": 1}, "map[:1]"),
        (Point(1, 2), "{1 2}"),
        ([Point(1, 2)], "[{1 2}]"),
        (Pointer(Point(1, 2)), "{1 2}"),  # an action prints what a pointer points to
        (b"hi", "[104 105]"),
        (True, "true"),
        (None, "<no value>"),
        ("text", "text"),
        (-7, "-7"),
        (complex(1, -2), "(1-2i)"),
        (1.5, "1.5"),
        (2.0, "2"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (1e21, "1e+21"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_values_print_as_go_prints_them(value: Any, printed: str) -> None:
    assert render("{{ .V }}", {"V": value}) == printed


def test_pointers_print_with_an_ampersand_through_print() -> None:
    assert render("{{ print .P }}", {"P": Pointer(Point(1, 2))}) == "&{1 2}"
    assert render("{{ printf \"%+v\" .P }}", {"P": Point(1, 2)}) == "{X:1 Y:2}"
    assert render("{{ .P }}", {"P": Pointer(None, "main.T")}) == "<nil>"


def test_stringers_print_through_their_string_method_at_any_depth() -> None:
    celsius = GoType("main.Celsius", "struct", fields=(FieldSpec("Degrees"),), methods={"String": lambda v: f"{v.values['Degrees']}°C"})
    warm = Struct(celsius, {"Degrees": 21})
    assert render("{{ .T }}", {"T": warm}) == "21°C"
    assert render("{{ .L }}", {"L": [warm, warm]}) == "[21°C 21°C]"
    assert render("{{ .T.Degrees }}", {"T": warm}) == "21"
    assert render("{{ .T.String }}", {"T": warm}) == "21°C"
    tags = GoType("main.Tags", "slice", methods={"String": lambda v: ",".join(v.value)})
    assert render("{{ .T }} {{ len .T }} {{ index .T 1 }}", {"T": Named(tags, ["a", "b"])}) == "a,b 2 b"


@pytest.mark.parametrize(
    ("format", "args", "expected"),
    [
        ("%d|%5d|%-5d|%05d|%+d|% d", [42, 42, 42, 42, 5, 5], "42|   42|42   |00042|+5| 5"),
        ("%x|%X|%#x|%o|%#o|%O|%b", [255, 255, 255, 8, 8, 8, 5], "ff|FF|0xff|10|010|0o10|101"),
        ("%x|%08.3f|%+.1f", [-255, -3.14159, 2.0], "-ff|-003.142|+2.0"),
        ("%c|%q|%U|%#U", [65, 65, 65, 65], "A|'A'|U+0041|U+0041 'A'"),
        ("%e|%E|%f|%.2f|%g|%8.3f", [1234.5678] * 5 + [3.14159], "1.234568e+03|1.234568E+03|1234.567800|1234.57|1234.5678|   3.142"),
        ("%.0f %.0f|%6.2v|%v", [2.5, 3.5, 3.14159, 1e6], "2 4|   3.1|1e+06"),
        ("%s|%q|%10s|%-4s|%.3s", ["x", 'a"b', "x", "x", "abcdef"], 'x|"a\\"b"|         x|x   |abc'),
        ("%x|% x|%X", ["hi", "hi", "hi"], "6869|68 69|6869"),
        ("%t|%v", [True, None], "true|<nil>"),
        ("%T %T %T %T %T %T", [1, "s", 1.5, [1], {"k": 1}, True], "int string float64 []interface {} map[string]interface {} bool"),
        ("%v|%d|%q|%s", [[1, 2], [1, 2], ["a"], ["a", "b"]], '[1 2]|[1 2]|["a"]|[a b]'),
        ("100%%", [], "100%"),
        ("%*d|%-*d|%.*f", [5, 42, 5, 42, 2, 3.14159], "   42|42   |3.14"),
        ("%[2]d %[1]d", [1, 2], "2 1"),
        ("%d", ["x"], "%!d(string=x)"),
        ("%s", [1], "%!s(int=1)"),
        ("%d", [None], "%!d(<nil>)"),
        ("%d %d", [1], "1 %!d(MISSING)"),
        ("%d", [1, 2, "x"], "1%!(EXTRA int=2, string=x)"),
        ("%", [], "%!(NOVERB)"),
        ("%z|%5z", [1, 2], "%!z(int=1)|%!z(int=    2)"),
        ("%99999999d", [1], "%!(NOVERB)%!(EXTRA int=1)"),
    ],
)
def test_printf(format: str, args: list[Any], expected: str) -> None:
    assert sprintf(format, *args) == expected


def test_printf_from_a_template() -> None:
    assert render('{{ printf "%s=%d" .K .V }}', {"K": "n", "V": 3}) == "n=3"
    assert render('{{ printf "%v" . }}', {"b": 1, "a": [2]}) == "map[a:[2] b:1]"
    assert render('{{ printf "%s" .B }}', {"B": b"bytes"}) == "bytes"


@pytest.mark.parametrize(
    ("value", "fmt", "precision", "expected"),
    [
        (0.0, "g", -1, "0"),
        (100.0, "g", -1, "100"),
        (1e20, "f", -1, "100000000000000000000"),
        (1.5e-7, "e", -1, "1.5e-07"),
        (123.456, "e", 2, "1.23e+02"),
        (0.000012345, "g", -1, "1.2345e-05"),
        (5e-324, "g", -1, "5e-324"),
    ],
)
def test_format_float(value: float, fmt: str, precision: int, expected: str) -> None:
    assert format_float(value, fmt, precision) == expected


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\t\x00é\u200b') == '"a\\"b\\\\c\\n\\t\\x00é\\u200b"'


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ({"b": 1, "a": [True, None]}, '{"a":[true,null],"b":1}'),
        ("<a&b>", '"\\u003ca\\u0026b\\u003e"'),
        ("line\nbreak\ttab\b\f\x01", '"line\\nbreak\\ttab\\b\\f\\u0001"'),
        ("\u2028é", '"\\u2028é"'),
        (1.0, "1"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (-2.5, "-2.5"),
        (b"hi", '"aGk="'),
        (Point(1, 2), '{"X":1,"Y":2}'),
        ({1: "x"}, '{"1":"x"}'),
    ],
)
def test_json_encoding(value: Any, encoded: str) -> None:
    assert marshal(value) == encoded


def test_json_function_prints_nothing_for_unsupported_values() -> None:
    assert render("{{ json .V }}", {"V": math.nan}) == ""


def test_json_of_struct_types_follows_tags_and_omitempty() -> None:
    kind = GoType(
        "main.T",
        "struct",
        fields=(FieldSpec("Name", "name"), FieldSpec("Note", "note", omitempty=True), FieldSpec("Secret", skip_json=True)),
    )
    assert render("{{ json . }}", Struct(kind, {"Name": "n", "Note": "", "Secret": "s"})) == '{"name":"n"}'
    assert render("{{ json . }}", Struct(kind, {"Name": "n", "Note": "x", "Secret": "s"})) == '{"name":"n","note":"x"}'
