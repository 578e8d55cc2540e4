"""Go's fmt printing (Sprint, Sprintln, Sprintf) and strconv quoting and float formatting: how Go prints
values, for templates, Modelfiles written back (PARAMETER lines, show's parameters), JSON and the CLI."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .govalues import (
    NIL,
    Named,
    Pointer,
    Struct,
    is_function,
    is_plain_object,
    map_entries,
    sorted_keys,
    stringer,
    struct_fields,
    type_name,
)

_FAKE_ADDRESS = "0xc000010000"  # Go prints an address here; a Python port has none to show


def is_print(char: str) -> bool:
    """strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    if char == " ":
        return True
    if "\ud800" <= char <= "\udfff":
        return False
    return unicodedata.category(char)[0] in "LMNPS"


_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _escape_rune(char: str, quote: str) -> str:
    if char == quote or char == "\\":
        return "\\" + char
    if is_print(char):
        return char
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char]
    code = ord(char)
    if "\udc80" <= char <= "\udcff":  # an invalid UTF-8 byte carried by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(text: str) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    return '"' + "".join(_escape_rune(c, '"') for c in text) + '"'


def go_quote_rune(code: int) -> str:
    """strconv.QuoteRune: a single-quoted Go character literal."""
    if code < 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        code = 0xFFFD
    return "'" + _escape_rune(chr(code), "'") + "'"


def format_rune_u(code: int) -> str:
    """%#U: ``U+0041 'A'`` for printable runes, ``U+000A`` otherwise (used in lexer errors)."""
    text = f"U+{code:04X}"
    if 0 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF and is_print(chr(code)):
        text += f" '{chr(code)}'"
    return text


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest decimal digits d1d2... and point position dp with value = 0.d1d2... * 10**dp."""
    text = repr(abs(value))
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, point) if digits else ("", 0)


def _format_e(digits: str, point: int, precision: int, letter: str) -> str:
    first = digits[:1] or "0"
    text = first
    if precision > 0:
        text += "." + digits[1 : 1 + precision].ljust(precision, "0")
    exponent = point - 1 if digits else 0
    sign = "-" if exponent < 0 else "+"
    return f"{text}{letter}{sign}{abs(exponent):02d}"


def _format_f(digits: str, point: int, precision: int) -> str:
    whole = digits[:point].ljust(point, "0") if point > 0 else "0"
    if precision <= 0:
        return whole
    fraction = "".join(
        digits[point + i] if 0 <= point + i < len(digits) else "0" for i in range(precision)
    )
    return whole + "." + fraction


def format_float(value: float, fmt: str, precision: int = -1) -> str:
    """strconv.FormatFloat(value, fmt, precision, 64) for fmt in e, E, f, F, g, G."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if precision >= 0:
        letter = "f" if fmt == "F" else fmt
        return sign + format(abs(value), f".{precision}{letter}")
    digits, point = _shortest_digits(value)
    if fmt in "eE":
        return sign + _format_e(digits, point, max(len(digits) - 1, 0), fmt)
    if fmt in "fF":
        return sign + _format_f(digits, point, max(len(digits) - point, 0))
    exponent = point - 1
    if exponent < -4 or exponent >= 6:  # shortest %g switches to %e with precision 6
        return sign + _format_e(digits, point, len(digits) - 1, "e" if fmt == "g" else "E")
    return sign + _format_f(digits, point, max(len(digits) - point, 0))


@dataclass
class _Flags:
    plus: bool = False
    minus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    plus_v: bool = False
    sharp_v: bool = False
    width: int | None = None
    precision: int | None = None


class _Printer:
    """A port of fmt's pp: one instance formats one call of Sprint, Sprintln or Sprintf."""

    def __init__(self, size_check: Callable[[int], None] | None = None) -> None:
        self.out: list[str] = []
        self.size = 0
        self.size_check = size_check
        self.flags = _Flags()
        self.erroring = False

    def write(self, text: str) -> None:
        self.reserve(len(text))
        self.size += len(text)
        self.out.append(text)

    def reserve(self, extra: int) -> None:
        """Let the caller's size check refuse ``extra`` more characters before they are built."""
        if self.size_check is not None:
            self.size_check(self.size + extra)

    # -- padding -------------------------------------------------------------------------------

    def pad(self, text: str) -> None:
        width = self.flags.width
        if width is None or len(text) >= width:
            self.write(text)
            return
        self.reserve(width)
        fill = width - len(text)
        if self.flags.minus:
            self.write(text + " " * fill)
        elif self.flags.zero:
            self.write("0" * fill + text)
        else:
            self.write(" " * fill + text)

    # -- basic kinds ---------------------------------------------------------------------------

    def fmt_bool(self, value: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if value else "false")
        else:
            self.bad_verb(verb, value)

    def fmt_integer(self, value: int, verb: str) -> None:
        flags = self.flags
        if verb in "vd":
            self.integer(value, 10, "0123456789abcdef")
        elif verb == "b":
            self.integer(value, 2, "01")
        elif verb in "oO":
            self.integer(value, 8, "01234567", prefix_o=verb == "O")
        elif verb == "x":
            self.integer(value, 16, "0123456789abcdef")
        elif verb == "X":
            self.integer(value, 16, "0123456789ABCDEF")
        elif verb == "c":
            self.pad(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd")
        elif verb == "q":
            self.pad(go_quote_rune(value))
        elif verb == "U":
            text = f"U+{value:04X}" if value >= 0 else f"U+{value & 0xFFFFFFFFFFFFFFFF:04X}"
            if flags.sharp and 0 <= value <= 0x10FFFF and is_print(chr(value)):
                text += f" '{chr(value)}'"
            self.pad(text)
        else:
            self.bad_verb(verb, value)

    def integer(self, value: int, base: int, digits: str, prefix_o: bool = False) -> None:
        flags = self.flags
        negative = value < 0
        magnitude = -value if negative else value
        minimum = 0  # %.3d and %03d both ask for leading zero digits
        if flags.precision is not None:
            minimum = flags.precision
            if minimum == 0 and value == 0:
                zero = flags.zero
                flags.zero = False
                self.pad("")
                flags.zero = zero
                return
        elif flags.zero and not flags.minus and flags.width is not None:
            minimum = flags.width - (negative or flags.plus or flags.space)
        body = ""
        while magnitude:
            magnitude, rest = divmod(magnitude, base)
            body = digits[rest] + body
        body = (body or "0").rjust(minimum, "0")
        if flags.sharp:
            if base == 8 and not body.startswith("0"):
                body = "0" + body
            elif base == 16:
                body = ("0x" if digits[10] == "a" else "0X") + body
            elif base == 2:
                body = "0b" + body
        if prefix_o:
            body = "0o" + body
        sign = "-" if negative else "+" if flags.plus else " " if flags.space else ""
        zero = flags.zero
        flags.zero = False
        self.pad(sign + body)
        flags.zero = zero

    def fmt_float(self, value: float, verb: str) -> None:
        flags = self.flags
        if verb == "v":
            text = format_float(value, "g", -1 if flags.precision is None else flags.precision)
        elif verb in "gGeEfF":
            default = -1 if verb in "gG" else 6
            text = format_float(value, verb, default if flags.precision is None else flags.precision)
        else:
            self.bad_verb(verb, value)
            return
        if text[0] not in "+-":
            text = "+" + text
        if flags.space and text[0] == "+" and not flags.plus:
            text = " " + text[1:]
        if text[1] in "IN":
            zero = flags.zero
            flags.zero = False
            if text[1] == "N" and not flags.space and not flags.plus:
                text = text[1:]
            self.pad(text)
            flags.zero = zero
            return
        if flags.plus or text[0] != "+":
            if flags.zero and flags.width is not None and not flags.minus and flags.width > len(text):
                self.write(text[0] + text[1:].rjust(flags.width - 1, "0"))
                return
            self.pad(text)
            return
        self.pad(text[1:])

    def fmt_complex(self, value: complex, verb: str) -> None:
        if verb not in "vbgGxXfFeE":
            self.bad_verb(verb, value)
            return
        plus = self.flags.plus
        self.write("(")
        self.fmt_float(value.real, verb)
        self.flags.plus = True
        self.fmt_float(value.imag, verb)
        self.write("i)")
        self.flags.plus = plus

    def fmt_string(self, value: str, verb: str) -> None:
        flags = self.flags
        if verb == "v" and flags.sharp_v or verb == "q":
            text = value if flags.precision is None else value[: flags.precision]
            self.reserve(len(text) + 2)  # quoting copies the text, escapes only make it longer
            if flags.sharp and "`" not in text and all(is_print(c) or c == "\t" for c in text):
                self.pad("`" + text + "`")
            else:
                self.pad(go_quote(text))
        elif verb in "vs":
            self.pad(value if flags.precision is None else value[: flags.precision])
        elif verb in "xX":
            self.fmt_hex_bytes(value.encode("utf-8", "surrogateescape"), verb)
        else:
            self.bad_verb(verb, value)

    def fmt_hex_bytes(self, data: bytes, verb: str) -> None:
        flags = self.flags
        if flags.precision is not None:
            data = data[: flags.precision]
        prefix = ("0x" if verb == "x" else "0X") if flags.sharp else ""
        if not data:
            self.pad("")
            return
        if flags.space:
            self.reserve(len(data) * (3 + len(prefix)) - 1)
            text = prefix + data.hex(" ").replace(" ", " " + prefix) if prefix else data.hex(" ")
        else:
            self.reserve(len(data) * 2 + len(prefix))
            text = prefix + data.hex()
        self.pad(text.upper() if verb == "X" else text)

    def fmt_bytes(self, data: bytes, verb: str, depth: int) -> None:
        if verb in "vd":
            self.write("[")
            for i, b in enumerate(data):
                if i:
                    self.write(" ")
                self.fmt_integer(b, verb)
            self.write("]")
        elif verb == "s":
            self.pad(data.decode("utf-8", "surrogateescape"))
        elif verb in "xX":
            self.fmt_hex_bytes(data, verb)
        elif verb == "q":
            self.pad(go_quote(data.decode("utf-8", "surrogateescape")))
        else:
            self.print_value(list(data), verb, depth)

    # -- errors --------------------------------------------------------------------------------

    def bad_verb(self, verb: str, value: Any) -> None:
        self.erroring = True
        self.write("%!" + verb + "(")
        if value is None or value is NIL:
            self.write("<nil>")
        else:
            self.write(type_name(value) + "=")
            self.print_arg(value, "v")
        self.write(")")
        self.erroring = False

    # -- dispatch ------------------------------------------------------------------------------

    def print_arg(self, arg: Any, verb: str) -> None:
        if arg is None or arg is NIL:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
            return
        if verb == "T":
            self.pad(type_name(arg))
            return
        if verb == "p":
            self.pad(_FAKE_ADDRESS if is_function(arg) or isinstance(arg, (Pointer, list, Mapping, Named)) else f"%!p({type_name(arg)}={arg})")
            return
        if isinstance(arg, (bool, int, float, complex, str, bytes)):
            self.print_value(arg, verb, 0)
            return
        if not self.handle_methods(arg, verb):
            self.print_value(arg, verb, 0)

    def handle_methods(self, arg: Any, verb: str) -> bool:
        if self.erroring or self.flags.sharp_v or verb not in "vsxXq":
            return False
        string_method = stringer(arg)
        if string_method is None:
            return False
        self.fmt_string(string_method(), verb)
        return True

    def print_value(self, value: Any, verb: str, depth: int) -> None:
        if depth > 0 and value is not None and value is not NIL and self.handle_methods(value, verb):
            return
        if value is None or value is NIL:
            if depth == 0 and value is None:
                self.write("<invalid reflect.Value>")
            elif verb == "v":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
        elif isinstance(value, bool):
            self.fmt_bool(value, verb)
        elif isinstance(value, int):
            self.fmt_integer(value, verb)
        elif isinstance(value, float):
            self.fmt_float(value, verb)
        elif isinstance(value, complex):
            self.fmt_complex(value, verb)
        elif isinstance(value, str):
            self.fmt_string(value, verb)
        elif isinstance(value, bytes):
            self.fmt_bytes(value, verb, depth)
        elif isinstance(value, (list, tuple)) or isinstance(value, Named) and value.type.kind == "slice":
            items = value.value if isinstance(value, Named) else value
            self.write("[")
            for i, item in enumerate(items):
                if i:
                    self.write(" ")
                self.print_value(item, verb, depth + 1)
            self.write("]")
        elif isinstance(value, (Mapping, Named)):
            entries = map_entries(value)
            self.write("map[")
            for i, key in enumerate(sorted_keys(list(entries))):
                if i:
                    self.write(" ")
                self.print_value(key, verb, depth + 1)
                self.write(":")
                self.print_value(entries[key], verb, depth + 1)
            self.write("]")
        elif isinstance(value, Pointer):
            if value.elem is None:
                self.pad("<nil>") if verb == "v" else self.bad_verb(verb, value)
            elif depth == 0 and isinstance(value.elem, (Struct, Named, list, Mapping)) or (
                depth == 0 and is_plain_object(value.elem)
            ):
                self.write("&")
                self.print_value(value.elem, verb, depth + 1)
            else:
                self.pad(_FAKE_ADDRESS)
        elif is_function(value):
            self.pad(_FAKE_ADDRESS)
        else:
            self.write("{")
            for i, (name, item) in enumerate(struct_fields(value)):
                if i:
                    self.write(" ")
                if self.flags.plus_v:
                    self.write(name + ":")
                self.print_value(item, verb, depth + 1)
            self.write("}")

    # -- entry points --------------------------------------------------------------------------

    def do_print(self, args: list[Any]) -> None:
        previous_string = False
        for i, arg in enumerate(args):
            is_string = isinstance(arg, str)
            if i > 0 and not is_string and not previous_string:
                self.write(" ")
            self.print_arg(arg, "v")
            previous_string = is_string

    def do_println(self, args: list[Any]) -> None:
        for i, arg in enumerate(args):
            if i > 0:
                self.write(" ")
            self.print_arg(arg, "v")
        self.write("\n")

    def do_printf(self, format: str, args: list[Any]) -> None:
        end = len(format)
        arg_num = 0
        reordered = False
        after_index = False
        i = 0
        while i < end:
            start = i
            while i < end and format[i] != "%":
                i += 1
            if i > start:
                self.write(format[start:i])
            if i >= end:
                break
            i += 1  # the %
            self.flags = _Flags()
            flags = self.flags
            while i < end:
                c = format[i]
                if c == "#":
                    flags.sharp = True
                elif c == "0":
                    flags.zero = not flags.minus
                elif c == "+":
                    flags.plus = True
                elif c == "-":
                    flags.minus = True
                    flags.zero = False
                elif c == " ":
                    flags.space = True
                else:
                    break
                i += 1
            arg_num, i, after_index = self._arg_number(arg_num, format, i, len(args))
            if i < end and format[i] == "*":
                i += 1
                flags.width, ok, arg_num = self._int_from_arg(args, arg_num)
                if not ok:
                    self.write("%!(BADWIDTH)")
                if flags.width is not None and flags.width < 0:
                    flags.width = -flags.width
                    flags.minus = True
                    flags.zero = False
                after_index = False
            else:
                width, i, found = _parse_number(format, i, end)
                if found:
                    flags.width = width
                    if after_index:
                        self.write("%!(BADWIDTH)")
            if i < end and format[i] == ".":
                i += 1
                if after_index:
                    self.write("%!(BADPREC)")
                arg_num, i, after_index = self._arg_number(arg_num, format, i, len(args))
                if i < end and format[i] == "*":
                    i += 1
                    flags.precision, ok, arg_num = self._int_from_arg(args, arg_num)
                    if flags.precision is not None and flags.precision < 0:
                        flags.precision = None
                    if not ok:
                        self.write("%!(BADPREC)")
                    after_index = False
                else:
                    precision, i, found = _parse_number(format, i, end)
                    flags.precision = precision if found else 0
            if not after_index:
                arg_num, i, after_index = self._arg_number(arg_num, format, i, len(args))
            if i >= end:
                self.write("%!(NOVERB)")
                break
            verb = format[i]
            i += 1
            reordered = reordered or after_index
            if verb == "%":
                self.write("%")
            elif arg_num >= len(args):
                self.write(f"%!{verb}(MISSING)")
            elif verb == "w":
                self.bad_verb(verb, args[arg_num])
                arg_num += 1
            else:
                if verb == "v":
                    if flags.sharp:
                        flags.sharp = False
                        flags.sharp_v = True
                    if flags.plus:
                        flags.plus = False
                        flags.plus_v = True
                self.print_arg(args[arg_num], verb)
                arg_num += 1
        if not reordered and arg_num < len(args):
            self.flags = _Flags()
            self.write("%!(EXTRA ")
            for j, arg in enumerate(args[arg_num:]):
                if j:
                    self.write(", ")
                if arg is None or arg is NIL:
                    self.write("<nil>")
                else:
                    self.write(type_name(arg) + "=")
                    self.print_arg(arg, "v")
            self.write(")")

    def _arg_number(self, arg_num: int, format: str, i: int, num_args: int) -> tuple[int, int, bool]:
        if i >= len(format) or format[i] != "[":
            return arg_num, i, False
        close = format.find("]", i + 1)
        if close < 0 or not format[i + 1 : close].isdigit():
            self.write("%!(BADINDEX)")
            return arg_num, (close + 1 if close >= 0 else len(format)), False
        index = int(format[i + 1 : close]) - 1
        if not 0 <= index < num_args:
            self.write("%!(BADINDEX)")
            return arg_num, close + 1, False
        return index, close + 1, True

    @staticmethod
    def _int_from_arg(args: list[Any], arg_num: int) -> tuple[int | None, bool, int]:
        if arg_num < len(args):
            value = args[arg_num]
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 1_000_000:
                return value, True, arg_num + 1
            return None, False, arg_num + 1
        return None, False, arg_num


def _parse_number(format: str, i: int, end: int) -> tuple[int | None, int, bool]:
    """fmt's parsenum: a width or precision; past a million Go gives up on the rest of the format."""
    start = i
    while i < end and "0" <= format[i] <= "9":
        i += 1
        if int(format[start:i]) > 1_000_000:
            return None, end, False
    if i == start:
        return None, i, False
    return int(format[start:i]), i, True


def sprint(*args: Any, size_check: Callable[[int], None] | None = None) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string. ``size_check``, if
    given, is called with the result's size so far before each piece is added, and can raise to
    stop a result that would be too large before it is built."""
    printer = _Printer(size_check)
    printer.do_print(list(args))
    return "".join(printer.out)


def sprintln(*args: Any, size_check: Callable[[int], None] | None = None) -> str:
    """fmt.Sprintln: operands separated by spaces, then a newline (``size_check`` as for sprint)."""
    printer = _Printer(size_check)
    printer.do_println(list(args))
    return "".join(printer.out)


def sprintf(format: str, *args: Any, size_check: Callable[[int], None] | None = None) -> str:
    """fmt.Sprintf with Go's verbs, flags, widths, precisions and %!verb(...) error notes
    (``size_check`` as for sprint)."""
    printer = _Printer(size_check)
    printer.do_printf(format, list(args))
    return "".join(printer.out)
