"""Modelfile parsing (Ollama's parser/parser_test.go cases), its errors with line numbers, the
request a Modelfile means, and the writer's output parsing back to the same values."""

from __future__ import annotations

import pytest

from corral.errors import InvalidModelFile
from corral.modelfile import format_modelfile, modelfile_request, parse_modelfile


def pairs(text: str) -> list[tuple[str, str]]:
    found = []
    for instruction in parse_modelfile(text):
        name = instruction.parameter if instruction.name == "parameter" else instruction.name
        value = f"{instruction.role}: {instruction.value}" if instruction.name == "message" else instruction.value
        found.append((name, value))
    return found


def test_trims_unquoted_values_and_keeps_quoted_ones() -> None:
    text = (
        '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\n'
        "PARAMETER param1        value1\nPARAMETER param2    value2\n"
        'TEMPLATE """   {{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}   """    \n'
    )
    assert pairs(text) == [
        ("from", "     model 1"), ("adapter", "adapter3"), ("license", "MIT       "),
        ("param1", "value1"), ("param2", "value2"),
        ("template", "   {{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}   "),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ('FROM "FOO  BAR  "', [("from", "FOO  BAR  ")]),
    ('FROM "FOO BAR"\nPARAMETER param1 value1', [("from", "FOO BAR"), ("param1", "value1")]),
    ("FROM     FOOO BAR    ", [("from", "FOOO BAR")]),
    ("FROM /what/is/the path ", [("from", "/what/is/the path")]),
    ("FROM llama3:7b-instruct-q4_K_M", [("from", "llama3:7b-instruct-q4_K_M")]),
    ("PARAMETER param1 value1\nFROM foo", [("param1", "value1"), ("from", "foo")]),
    ("PARAMETER what the \nFROM lemons make lemonade ", [("what", "the"), ("from", "lemons make lemonade")]),
    ("from foo\nsystem hi\nPaRaMeTeR top_k 1", [("from", "foo"), ("system", "hi"), ("top_k", "1")]),
    ("\n# comment\nFROM foo\n\t", [("from", "foo")]),
    ("FROM foo # not a comment", [("from", "foo # not a comment")]),
    ("\ufeffFROM foo\r\nSYSTEM a\r\n", [("from", "foo"), ("system", "a")]),
])
def test_from_and_comments(text: str, expected: list[tuple[str, str]]) -> None:
    assert pairs(text) == expected


@pytest.mark.parametrize(("text", "value"), [
    ('SYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t', "\nThis is a\nmultiline system.\n"),
    ('SYSTEM """\nThis is a\nmultiline system."""', "\nThis is a\nmultiline system."),
    ('SYSTEM """This is a\nmultiline system."""', "This is a\nmultiline system."),
    ('SYSTEM """This is a multiline system."""', "This is a multiline system."),
    ('SYSTEM """\nThis is a multiline system with "quotes".\n"""\n', '\nThis is a multiline system with "quotes".\n'),
    ('SYSTEM """"""', ""),
    ('SYSTEM ""', ""),
    ("SYSTEM \"'\"", "'"),
    ('SYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
    ('TEMPLATE """\n{{ .Prompt }}\n"""', "\n{{ .Prompt }}\n"),
])
def test_quoted_values(text: str, value: str) -> None:
    assert pairs("FROM foo\n" + text)[1][1] == value


@pytest.mark.parametrize(("line", "value"), [
    ("stop ### User:", "### User:"), ("stop ### User: ", "### User:"), ('stop "### User:"', "### User:"),
    ('stop "### User: "', "### User: "), ('stop """### User:"""', "### User:"),
    ('stop """### User:\n"""', "### User:\n"), ("stop <|eot_id|>", "<|eot_id|>"), ("stop </s>", "</s>"),
])
def test_parameter_values(line: str, value: str) -> None:
    assert pairs(f"FROM foo\nPARAMETER {line}\n")[1] == ("stop", value)


def test_messages() -> None:
    text = ('FROM foo\nMESSAGE system You are a file parser.\nMESSAGE user Hey there!\n'
            'MESSAGE assistant """\nHello\n"""\n')
    assert pairs(text)[1:] == [("message", "system: You are a file parser."), ("message", "user: Hey there!"),
                               ("message", "assistant: \nHello\n")]


@pytest.mark.parametrize(("text", "message"), [
    ("", "no FROM line"),
    ("PARAMETER top_k 1", "no FROM line"),
    ("\nFROM foo\nBADCOMMAND param1 value1\n", '(line 3): unknown instruction "BADCOMMAND"; expected one of FROM, '
                                                "PARAMETER, TEMPLATE, SYSTEM, ADAPTER, LICENSE, MESSAGE, REQUIRES"),
    ("FROM foo\nFROM: bar", '(line 2): unknown instruction "FROM:"'),
    ("FROM foo\n\nSYSTEM\nFROM x", "(line 3): SYSTEM needs a value"),
    ("FROM foo\nTEMPLATE", "(line 2): TEMPLATE needs a value"),
    ("\nFROM foo\nPARAMETER param1\n", "(line 3): PARAMETER param1 needs a value"),
    ("FROM foo\nPARAMETER\n", "(line 2): PARAMETER needs a value"),
    ("FROM foo\nPARAMETER top-k 1", '(line 2): invalid parameter name "top-"'),
    ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", '(line 3): message role must be one of "system", "user", "assistant"'),
    ("FROM foo\nMESSAGE system\n", "(line 2): MESSAGE system needs a value"),
    ("FROM foo\nMESSAGE system", "(line 2): MESSAGE needs a value"),
    ('FROM foo\nSYSTEM """This is a multiline system.""\n', '(line 2): the """ that opens the SYSTEM value is never closed'),
    ('FROM foo\n\nSYSTEM "\n\nmore\n', '(line 3): the " that opens the SYSTEM value is never closed'),
])
def test_syntax_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidModelFile) as raised:
        parse_modelfile(text)
    assert str(raised.value).startswith(message)
    assert raised.value.status == 400


def request(text: str, **kwargs):
    return modelfile_request(parse_modelfile(text), model="m", locate=lambda instruction: None, **kwargs)


def test_the_request_a_modelfile_means() -> None:
    text = ("FROM smol\nSYSTEM Be brief.\nTEMPLATE {{ .Prompt }}\nPARAMETER temperature 0.5\nPARAMETER top_k 20\n"
            "PARAMETER stop <|a|>\nPARAMETER stop <|b|>\nPARAMETER use_mmap false\nPARAMETER penalize_newline true\n"
            "LICENSE MIT\nLICENSE Apache\nMESSAGE user hi\nMESSAGE assistant hello\nREQUIRES 0.14.0\n")
    made = request(text, quantize="q4_0")
    assert made.model == "m" and made.from_ == "smol" and made.quantize == "q4_0"
    assert made.system == "Be brief." and made.template == "{{ .Prompt }}"
    assert made.parameters == {"temperature": 0.5, "top_k": 20, "stop": ["<|a|>", "<|b|>"], "use_mmap": False}
    assert made.license == ("MIT", "Apache")
    assert made.messages == ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"})


def test_files_come_from_locate() -> None:
    located = {"./m.gguf": {"m.gguf": "sha256:" + "a" * 64}, "./lora.gguf": {"lora.gguf": "sha256:" + "b" * 64}}
    made = modelfile_request(parse_modelfile("FROM ./m.gguf\nADAPTER ./lora.gguf"), model="m",
                             locate=lambda instruction: located.get(instruction.value))
    assert made.from_ is None
    assert made.files == located["./m.gguf"] and made.adapters == located["./lora.gguf"]
    with pytest.raises(InvalidModelFile, match=r'\(line 2\): ADAPTER "./missing.gguf": no such file'):
        modelfile_request(parse_modelfile("FROM x\nADAPTER ./missing.gguf"), model="m", locate=lambda _: None)


@pytest.mark.parametrize(("text", "message"), [
    ("FROM foo\nPARAMETER temprature 1", "(line 2): unknown parameter 'temprature'"),
    ("FROM foo\n\nPARAMETER top_k many", '(line 3): PARAMETER top_k must be an integer, not "many"'),
    ("FROM foo\nPARAMETER top_k 1.5", '(line 2): PARAMETER top_k must be an integer, not "1.5"'),
    ("FROM foo\nPARAMETER temperature hot", '(line 2): PARAMETER temperature must be a number, not "hot"'),
    ("FROM foo\nPARAMETER use_mmap yes", '(line 2): PARAMETER use_mmap must be true or false, not "yes"'),
    ("FROM foo\nREQUIRES soon", "(line 2): requires must be a valid semver (e.g. 0.14.0)"),
    ("FROM foo\nDRAFT ./d.gguf", "(line 2): DRAFT is not supported by corral"),
])
def test_meaning_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidModelFile) as raised:
        request(text)
    assert str(raised.value) == message


@pytest.mark.parametrize("value", [
    "plain", " leading", "trailing ", "two\nlines", 'has "quotes"\nand lines', '"starts quoted', "ends quoted\"",
    "tab\tinside", "", "# hash", "\n", 'x"""y', "ünïcödé ✓",
])
def test_written_values_parse_back(value: str) -> None:
    text = format_modelfile(model_path="/blobs/sha256-x", template=value or None, system=value,
                            params={"stop": [value or "s", "b"], "temperature": 0.7}, licenses=[value],
                            messages=[{"role": "user", "content": value}])
    made = request(text)
    assert made.template == (value or None)
    assert made.system == (value or None)
    assert made.license == (value,)
    assert made.messages == ({"role": "user", "content": value},)
    assert made.parameters == {"stop": [value or "s", "b"], "temperature": 0.7}


def test_blob_references() -> None:
    from corral.modelfile import blob_reference

    digest = "sha256:" + "c" * 64
    first, second, name = parse_modelfile(f"FROM @{digest}\nADAPTER {digest}\nFROM llama3")
    assert blob_reference(first) == blob_reference(second) == {"sha256-" + "c" * 64: digest}
    assert blob_reference(name) is None
    with pytest.raises(InvalidModelFile, match=r'\(line 1\): "@sha256:abc" is not a blob digest'):
        blob_reference(parse_modelfile("FROM @sha256:abc")[0])


@pytest.mark.parametrize(("text", "message"), [
    ("FROM foo\nPARAMETER num_ctx -5", "(line 2): PARAMETER num_ctx must be at least 1, not -5"),
    ("FROM foo\nPARAMETER num_thread 100000", "(line 2): PARAMETER num_thread must be between 0 and 512, not 100000"),
    ("FROM foo\nPARAMETER top_p 2", "(line 2): PARAMETER top_p must be between 0 and 1, not 2.0"),
    ("FROM foo\nPARAMETER num_ctx " + "9" * 25, f'(line 2): PARAMETER num_ctx: value out of range: "{"9" * 25}"'),
    ("FROM foo\nPARAMETER seed " + "1" * 20000,
     f'(line 2): PARAMETER seed: value out of range: "{"1" * 64}..."'),
    ("FROM foo\nPARAMETER temperature " + "1" * 20000 + "x",
     f'(line 2): PARAMETER temperature must be a number, not "{"1" * 64}..."'),
])
def test_parameter_ranges_and_long_values(text: str, message: str) -> None:
    """Values are range-checked as request options are, and a long value is quoted short."""
    with pytest.raises(InvalidModelFile) as raised:
        request(text)
    assert str(raised.value) == message


def test_leading_zeros_do_not_hit_python_int_limit() -> None:
    assert request("FROM foo\nPARAMETER num_ctx " + "0" * 5000 + "2048").parameters == {"num_ctx": 2048}
