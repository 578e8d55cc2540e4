"""The lexer of Go's text/template (text/template/parse/lex.go), state for state.

Positions are indexes into the Python string (code points); lines count from 1 as Go counts them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from ..gofmt import format_rune_u, go_quote


class ItemType(IntEnum):
    ERROR = 0
    BOOL = 1
    CHAR = 2
    CHAR_CONSTANT = 3
    COMMENT = 4
    COMPLEX = 5
    ASSIGN = 6
    DECLARE = 7
    EOF = 8
    FIELD = 9
    IDENTIFIER = 10
    LEFT_DELIM = 11
    LEFT_PAREN = 12
    NUMBER = 13
    PIPE = 14
    RAW_STRING = 15
    RIGHT_DELIM = 16
    RIGHT_PAREN = 17
    SPACE = 18
    STRING = 19
    TEXT = 20
    VARIABLE = 21
    KEYWORD = 22  # only delimits the keywords below
    BLOCK = 23
    BREAK = 24
    CONTINUE = 25
    DOT = 26
    DEFINE = 27
    ELSE = 28
    END = 29
    IF = 30
    NIL = 31
    RANGE = 32
    TEMPLATE = 33
    WITH = 34


KEYWORDS = {
    ".": ItemType.DOT,
    "block": ItemType.BLOCK,
    "break": ItemType.BREAK,
    "continue": ItemType.CONTINUE,
    "define": ItemType.DEFINE,
    "else": ItemType.ELSE,
    "end": ItemType.END,
    "if": ItemType.IF,
    "range": ItemType.RANGE,
    "nil": ItemType.NIL,
    "template": ItemType.TEMPLATE,
    "with": ItemType.WITH,
}

LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
LEFT_COMMENT = "/*"
RIGHT_COMMENT = "*/"
SPACE_CHARS = " \t\r\n"
TRIM_MARKER_LEN = 2  # the "-" plus the space before or after it


@dataclass(frozen=True, slots=True)
class Item:
    type: ItemType
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.type == ItemType.EOF:
            return "EOF"
        if self.type == ItemType.ERROR:
            return self.val
        if self.type > ItemType.KEYWORD:
            return f"<{self.val}>"
        if len(self.val.encode("utf-8", "surrogateescape")) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_space(char: str) -> bool:
    return char in (" ", "\t", "\r", "\n")


def is_alphanumeric(char: str) -> bool:
    return char == "_" or char.isalpha() or char.isdecimal()


def _has_left_trim_marker(text: str, pos: int) -> bool:
    return text[pos : pos + 1] == "-" and is_space(text[pos + 1 : pos + 2] or "x")


def _has_right_trim_marker(text: str, pos: int) -> bool:
    return is_space(text[pos : pos + 1] or "x") and text[pos + 1 : pos + 2] == "-"


_EOF = ""

State = Callable[[], "tuple[Item | None, State | None]"]


class Lexer:
    """Scans a template into items; ``items()`` ends with an EOF or an ERROR item."""

    def __init__(self, text: str, *, break_ok: bool = True, continue_ok: bool = True) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.width = 0
        self.paren_depth = 0
        self.line = 1
        self.start_line = 1
        self.break_ok = break_ok
        self.continue_ok = continue_ok

    def items(self, check: Callable[[], None] | None = None) -> list[Item]:
        """Every item; ``check()``, if given, is called after each (it may raise to stop)."""
        found: list[Item] = []
        state: State | None = self.lex_text
        while state is not None:
            item, state = state()
            if item is not None:
                if check is not None:
                    check()
                found.append(item)
                if item.type in (ItemType.EOF, ItemType.ERROR):
                    return found
        found.append(self.emit(ItemType.EOF))
        return found

    # -- primitives ----------------------------------------------------------------------------

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.width = 0
            return _EOF
        char = self.input[self.pos]
        self.width = 1
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def peek(self) -> str:
        char = self.next()
        self.backup()
        return char

    def backup(self) -> None:
        self.pos -= self.width
        if self.width == 1 and self.input[self.pos] == "\n":
            self.line -= 1

    def emit(self, type: ItemType) -> Item:
        item = Item(type, self.start, self.input[self.start : self.pos], self.start_line)
        self.start = self.pos
        self.start_line = self.line
        return item

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        char = self.next()
        if char and char in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            char = self.next()
            if not char or char not in valid:
                break
        self.backup()

    def errorf(self, message: str) -> Item:
        return Item(ItemType.ERROR, self.start, message, self.start_line)

    def at_right_delim(self) -> tuple[bool, bool]:
        if _has_right_trim_marker(self.input, self.pos) and self.input.startswith(
            RIGHT_DELIM, self.pos + TRIM_MARKER_LEN
        ):
            return True, True
        if self.input.startswith(RIGHT_DELIM, self.pos):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        char = self.peek()
        return is_space(char) or char in (_EOF, ".", ",", "|", ":", ")", "(", RIGHT_DELIM[0])

    # -- states --------------------------------------------------------------------------------

    def lex_text(self) -> tuple[Item | None, State | None]:
        self.width = 0
        found = self.input.find(LEFT_DELIM, self.pos)
        if found >= 0:
            self.pos = found
            trim = 0
            if _has_left_trim_marker(self.input, self.pos + len(LEFT_DELIM)):
                segment = self.input[self.start : self.pos]
                trim = len(segment) - len(segment.rstrip(SPACE_CHARS))
            self.pos -= trim
            item = None
            if self.pos > self.start:
                self.line += self.input.count("\n", self.start, self.pos)
                item = self.emit(ItemType.TEXT)
            self.pos += trim
            self.ignore()
            return item, self.lex_left_delim
        self.pos = len(self.input)
        if self.pos > self.start:
            self.line += self.input.count("\n", self.start, self.pos)
            return self.emit(ItemType.TEXT), None
        return self.emit(ItemType.EOF), None

    def lex_left_delim(self) -> tuple[Item | None, State | None]:
        self.pos += len(LEFT_DELIM)
        trim_space = _has_left_trim_marker(self.input, self.pos)
        after_marker = TRIM_MARKER_LEN if trim_space else 0
        if self.input.startswith(LEFT_COMMENT, self.pos + after_marker):
            self.pos += after_marker
            self.ignore()
            return None, self.lex_comment
        item = self.emit(ItemType.LEFT_DELIM)
        self.pos += after_marker
        self.ignore()
        self.paren_depth = 0
        return item, self.lex_inside_action

    def lex_comment(self) -> tuple[Item | None, State | None]:
        self.pos += len(LEFT_COMMENT)
        found = self.input.find(RIGHT_COMMENT, self.pos)
        if found < 0:
            return self.errorf("unclosed comment"), None
        self.pos = found + len(RIGHT_COMMENT)
        delim, trim_space = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter"), None
        if trim_space:
            self.pos += TRIM_MARKER_LEN
        self.pos += len(RIGHT_DELIM)
        if trim_space:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(SPACE_CHARS))
        self.ignore()
        return None, self.lex_text

    def lex_right_delim(self) -> tuple[Item | None, State | None]:
        trim_space = _has_right_trim_marker(self.input, self.pos)
        if trim_space:
            self.pos += TRIM_MARKER_LEN
            self.ignore()
        self.pos += len(RIGHT_DELIM)
        item = self.emit(ItemType.RIGHT_DELIM)
        if trim_space:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(SPACE_CHARS))
            self.ignore()
        return item, self.lex_text

    def lex_inside_action(self) -> tuple[Item | None, State | None]:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return None, self.lex_right_delim
            return self.errorf("unclosed left paren"), None
        char = self.next()
        if char == _EOF:
            return self.errorf("unclosed action"), None
        if is_space(char):
            self.backup()  # put the space back in case we have " -}}"
            return None, self.lex_space
        if char == "=":
            return self.emit(ItemType.ASSIGN), self.lex_inside_action
        if char == ":":
            if self.next() != "=":
                return self.errorf("expected :="), None
            return self.emit(ItemType.DECLARE), self.lex_inside_action
        if char == "|":
            return self.emit(ItemType.PIPE), self.lex_inside_action
        if char == '"':
            return None, self.lex_quote
        if char == "`":
            return None, self.lex_raw_quote
        if char == "$":
            return None, self.lex_variable
        if char == "'":
            return None, self.lex_char
        if char == ".":
            # special look-ahead for ".field" so we don't break backup()
            if self.pos < len(self.input) and not "0" <= self.input[self.pos] <= "9":
                return None, self.lex_field
        if char in "+-." or "0" <= char <= "9":
            self.backup()
            return None, self.lex_number
        if is_alphanumeric(char):
            self.backup()
            return None, self.lex_identifier
        if char == "(":
            self.paren_depth += 1
            return self.emit(ItemType.LEFT_PAREN), self.lex_inside_action
        if char == ")":
            item = self.emit(ItemType.RIGHT_PAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf(f"unexpected right paren {format_rune_u(ord(char))}"), None
            return item, self.lex_inside_action
        if ord(char) <= 0x7F and char.isprintable():
            return self.emit(ItemType.CHAR), self.lex_inside_action
        return self.errorf(f"unrecognized character in action: {format_rune_u(ord(char))}"), None

    def lex_space(self) -> tuple[Item | None, State | None]:
        spaces = 0
        while is_space(self.peek()):
            self.next()
            spaces += 1
        # Careful about a trim-marked closing delimiter, which has a minus after a space.
        if _has_right_trim_marker(self.input, self.pos - 1) and self.input.startswith(
            RIGHT_DELIM, self.pos - 1 + TRIM_MARKER_LEN
        ):
            self.backup()  # before the space
            if spaces == 1:
                return None, self.lex_right_delim
        return self.emit(ItemType.SPACE), self.lex_inside_action

    def lex_identifier(self) -> tuple[Item | None, State | None]:
        while True:
            char = self.next()
            if char and is_alphanumeric(char):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {format_rune_u(ord(char)) if char else 'U+FFFFFFFF'}"), None
            keyword = KEYWORDS.get(word)
            if keyword is not None:
                if keyword == ItemType.BREAK and not self.break_ok or keyword == ItemType.CONTINUE and not self.continue_ok:
                    return self.emit(ItemType.IDENTIFIER), self.lex_inside_action
                return self.emit(keyword), self.lex_inside_action
            if word[0] == ".":
                return self.emit(ItemType.FIELD), self.lex_inside_action
            if word in ("true", "false"):
                return self.emit(ItemType.BOOL), self.lex_inside_action
            return self.emit(ItemType.IDENTIFIER), self.lex_inside_action

    def lex_field(self) -> tuple[Item | None, State | None]:
        return self.lex_field_or_variable(ItemType.FIELD)

    def lex_variable(self) -> tuple[Item | None, State | None]:
        if self.at_terminator():  # nothing interesting follows: "$"
            return self.emit(ItemType.VARIABLE), self.lex_inside_action
        return self.lex_field_or_variable(ItemType.VARIABLE)

    def lex_field_or_variable(self, type: ItemType) -> tuple[Item | None, State | None]:
        if self.at_terminator():  # nothing interesting follows: "." or "$"
            return self.emit(ItemType.VARIABLE if type == ItemType.VARIABLE else ItemType.DOT), self.lex_inside_action
        while True:
            char = self.next()
            if not char or not is_alphanumeric(char):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {format_rune_u(ord(char)) if char else 'U+FFFFFFFF'}"), None
        return self.emit(type), self.lex_inside_action

    def lex_char(self) -> tuple[Item | None, State | None]:
        while True:
            char = self.next()
            if char == "\\":
                following = self.next()
                if following not in (_EOF, "\n"):
                    continue
                return self.errorf("unterminated character constant"), None
            if char in (_EOF, "\n"):
                return self.errorf("unterminated character constant"), None
            if char == "'":
                return self.emit(ItemType.CHAR_CONSTANT), self.lex_inside_action

    def lex_number(self) -> tuple[Item | None, State | None]:
        if not self.scan_number():
            return self.errorf(f"bad number syntax: {go_quote(self.input[self.start : self.pos])}"), None
        sign = self.peek()
        if sign in ("+", "-"):
            # Complex: 1+2i. No spaces, must end in 'i'.
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(f"bad number syntax: {go_quote(self.input[self.start : self.pos])}"), None
            return self.emit(ItemType.COMPLEX), self.lex_inside_action
        return self.emit(ItemType.NUMBER), self.lex_inside_action

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            # Note: a leading 0 does not mean octal in floats.
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 10 + 1 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 16 + 6 + 1 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")  # imaginary
        following = self.peek()
        if following and is_alphanumeric(following):
            self.next()
            return False
        return True

    def lex_quote(self) -> tuple[Item | None, State | None]:
        while True:
            char = self.next()
            if char == "\\":
                following = self.next()
                if following not in (_EOF, "\n"):
                    continue
                return self.errorf("unterminated quoted string"), None
            if char in (_EOF, "\n"):
                return self.errorf("unterminated quoted string"), None
            if char == '"':
                return self.emit(ItemType.STRING), self.lex_inside_action

    def lex_raw_quote(self) -> tuple[Item | None, State | None]:
        while True:
            char = self.next()
            if char == _EOF:
                return self.errorf("unterminated raw quoted string"), None
            if char == "`":
                return self.emit(ItemType.RAW_STRING), self.lex_inside_action
