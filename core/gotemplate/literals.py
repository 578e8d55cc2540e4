"""Go literal syntax: strconv.Unquote for strings and characters, and template number constants."""

from __future__ import annotations

from ..gofmt import go_quote
from .nodes import NumberNode

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1

_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


class SyntaxErrorGo(ValueError):
    """strconv's ErrSyntax; its message is Go's "invalid syntax"."""

    def __init__(self) -> None:
        super().__init__("invalid syntax")


def unquote_char(text: str, i: int, quote: str) -> tuple[str, int]:
    """strconv.UnquoteChar: decode one (possibly escaped) character at text[i]; return it and the next index."""
    if i >= len(text):
        raise SyntaxErrorGo()
    char = text[i]
    if char == quote and quote in "'\"":
        raise SyntaxErrorGo()
    if char != "\\":
        return char, i + 1
    if i + 1 >= len(text):
        raise SyntaxErrorGo()
    escape = text[i + 1]
    i += 2
    if escape in _SIMPLE:
        return _SIMPLE[escape], i
    if escape in "xuU":
        size = {"x": 2, "u": 4, "U": 8}[escape]
        digits = text[i : i + size]
        if len(digits) < size or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise SyntaxErrorGo()
        code = int(digits, 16)
        if escape == "x":
            # a byte value; above 0x7f it is not valid UTF-8 on its own
            return (chr(code) if code < 0x80 else chr(0xDC00 + code)), i + size
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise SyntaxErrorGo()
        return chr(code), i + size
    if escape in "01234567":
        digits = text[i - 1 : i + 2]
        if len(digits) < 3 or not all(c in "01234567" for c in digits):
            raise SyntaxErrorGo()
        code = int(digits, 8)
        if code > 255:
            raise SyntaxErrorGo()
        return (chr(code) if code < 0x80 else chr(0xDC00 + code)), i + 2
    if escape in "'\"":
        if escape != quote:
            raise SyntaxErrorGo()
        return escape, i
    raise SyntaxErrorGo()


def unquote(text: str) -> str:
    """strconv.Unquote for a double-quoted or back-quoted Go string literal."""
    if len(text) < 2 or text[0] != text[-1]:
        raise SyntaxErrorGo()
    quote, body = text[0], text[1:-1]
    if quote == "`":
        if "`" in body:
            raise SyntaxErrorGo()
        return body.replace("\r", "")  # carriage returns are discarded from raw strings
    if quote != '"' or "\n" in body:
        raise SyntaxErrorGo()
    out: list[str] = []
    i = 0
    while i < len(body):
        char, i = unquote_char(body, i, '"')
        out.append(char)
    return "".join(out)


def _underscore_ok(text: str) -> bool:
    """strconv's underscoreOK: underscores only between digits (a base prefix counts as one)."""
    body = text[1:] if text[:1] in "+-" else text
    saw, i, hexadecimal = "^", 0, False
    if len(body) >= 2 and body[0] == "0" and body[1].lower() in "box":
        saw, i, hexadecimal = "0", 2, body[1].lower() == "x"
    for char in body[i:]:
        if "0" <= char <= "9" or hexadecimal and "a" <= char.lower() <= "f":
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def _parse_integer(text: str) -> int | None:
    """strconv.ParseInt/ParseUint with base 0: prefixes 0x, 0o, 0b, a leading 0 for octal, underscores."""
    if "_" in text and not _underscore_ok(text):
        return None
    body = text.replace("_", "")
    sign = -1 if body[:1] == "-" else 1
    digits = body[1:] if body[:1] in "+-" else body
    if not digits or not digits.isascii():
        return None
    lowered = digits.lower()
    try:
        if lowered.startswith(("0x", "0o", "0b")):
            value = int(lowered[2:], {"x": 16, "o": 8, "b": 2}[lowered[1]])
        elif len(digits) > 1 and digits[0] == "0":
            value = int(digits[1:], 8)
        else:
            value = int(digits, 10)
    except ValueError:
        return None
    return sign * value


def _parse_float(text: str) -> float | None:
    """strconv.ParseFloat for the forms the lexer lets through (decimal and hex, underscores)."""
    body = text.replace("_", "") if "_" in text else text
    try:
        lowered = body.lower()
        sign = -1.0 if lowered.startswith("-") else 1.0
        unsigned = lowered.lstrip("+-")
        if unsigned.startswith("0x"):
            if "p" not in unsigned:
                return None
            return sign * float.fromhex(unsigned)
        if unsigned in ("inf", "infinity", "nan") or not unsigned or not unsigned.isascii():
            return None
        return float(body)
    except (ValueError, OverflowError):
        return None


def _parse_complex(text: str) -> complex | None:
    try:
        return complex(text.replace("i", "j"))
    except ValueError:
        return None


def _simplify_complex(node: NumberNode) -> None:
    value = node.complex_value
    node.is_float = value.imag == 0
    if node.is_float:
        node.float_value = value.real
        node.is_int = value.real.is_integer() and _INT64_MIN <= value.real <= _INT64_MAX
        if node.is_int:
            node.int_value = int(value.real)
        node.is_uint = value.real.is_integer() and 0 <= value.real <= _UINT64_MAX
        if node.is_uint:
            node.uint_value = int(value.real)


def new_number(pos: int, text: str, is_char: bool, is_complex: bool) -> NumberNode:
    """parse.newNumber: read a number constant; ValueError carries Go's message."""
    node = NumberNode(pos, text)
    if is_char:
        char, rest = unquote_char(text, 1, text[0])
        if text[rest:] != "'":
            raise ValueError(f"malformed character constant: {text}")
        code = ord(char) - 0xDC00 if "\udc80" <= char <= "\udcff" else ord(char)
        node.int_value = node.uint_value = code
        node.float_value = float(code)
        node.is_int = node.is_uint = node.is_float = True
        return node
    if is_complex:
        value = _parse_complex(text)
        if value is None:
            raise ValueError("expected integer")
        node.is_complex = True
        node.complex_value = value
        _simplify_complex(node)
        return node
    if text.endswith("i"):
        imaginary = _parse_float(text[:-1]) if not text[:-1].lstrip("+-").startswith(("0x", "0X")) else None
        if imaginary is None:
            integer = _parse_integer(text[:-1])
            imaginary = float(integer) if integer is not None else None
        if imaginary is not None:
            node.is_complex = True
            node.complex_value = complex(0, imaginary)
            _simplify_complex(node)
            return node
    value = _parse_integer(text)
    if value is not None:
        if 0 <= value <= _UINT64_MAX and text[:1] not in "+-":  # ParseUint takes no sign
            node.is_uint, node.uint_value = True, value
        if _INT64_MIN <= value <= _INT64_MAX:
            node.is_int, node.int_value = True, value
            if value == 0:
                node.is_uint, node.uint_value = True, 0  # in case of -0
    if node.is_int:
        node.is_float, node.float_value = True, float(node.int_value)
    elif node.is_uint:
        node.is_float, node.float_value = True, float(node.uint_value)
    else:
        number = _parse_float(text)
        if number is not None:
            # parsed as a float but looks like an integer: a huge number too large for an int
            if not any(c in text for c in ".eEpP"):
                raise ValueError(f"integer overflow: {go_quote(text)}")
            node.is_float, node.float_value = True, number
            if number.is_integer() and _INT64_MIN <= number <= _INT64_MAX:
                node.is_int, node.int_value = True, int(number)
            if number.is_integer() and 0 <= number <= _UINT64_MAX:
                node.is_uint, node.uint_value = True, int(number)
    if not (node.is_int or node.is_uint or node.is_float):
        raise ValueError(f"illegal number syntax: {go_quote(text)}")
    return node


