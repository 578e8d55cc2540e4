"""The Jinja environment chat templates run in: jinja2's immutable sandbox, bounded by a Budget.

jinja2's sandbox stops a template from reaching Python's internals, but bounds neither CPU nor
memory: ``'a' * 200000000`` builds 200 MB, ``7 ** (7 ** 8)`` is computed while the template
compiles (constant folding), and nested loops run for ever. Here:

- every ``{% for %}`` iteration and every call (macros, ``caller()``, ``loop()``, methods) is a
  step of the current render's ``Budget`` (``corral.template_limits``), which also checks the
  time;
- the operators that can build large values (``*``, ``+``, ``%``, ``**``) are intercepted, which
  also keeps jinja2 from folding them at compile time, and are refused when their result would be
  larger than the output limit: a list by the size of its text (``[big] * 1000`` is small, but
  printing it is not), a ``%`` or ``str.format`` result by its pattern and arguments;
- so are the string methods and filters that grow a value from a small argument (``center``,
  ``ljust``, ``indent``, ``replace``, ``format``, ``join``, ``batch``, ``slice``, ``tojson``'s
  indent, ...), checked before they allocate;
- everything a template writes or concatenates (``~``, ``{% set %}`` blocks, macro output, the
  output itself) is counted as it is joined.

The budget of the render under way is a context variable, set by ``ChatTemplate.render``.
"""

from __future__ import annotations

import contextvars
import json
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jinja2
import jinja2.ext
import jinja2.filters
import jinja2.nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .template_limits import Budget, TemplateLimitExceeded

CURRENT_BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("corral_template_budget")

# An integer larger than this cannot be printed anyway (Python refuses to turn an int of more than
# 4300 digits into text), and computing one can take seconds that no step check can interrupt.
MAX_INTEGER_BITS = 16384

_FORMAT_NUMBER = re.compile(r"\d+")
_PRINTF_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<type>.?)", re.S)
_FORMAT_SPEC_WIDTH = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)", re.S)
_FIELD_NAME = re.compile(r"[^.\[]*")
_TEXT_CONVERSIONS = frozenset({"s", "r", "a"})
_CONTAINERS = (list, tuple, dict, set, frozenset)
# Containers nested deeper than this count as their brackets only (the size is a lower bound).
_MAX_DEPTH = 64
_GROWING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join"})


def budget() -> Budget:
    """The current render's budget; outside a render (compiling), fresh default limits."""
    found = CURRENT_BUDGET.get(None)
    return found if found is not None else Budget()


class _Counted:
    """A ``{% for %}`` loop's iterable: each item taken is a step; the length stays known."""

    __slots__ = ("iterable",)

    def __init__(self, iterable: Any) -> None:
        self.iterable = iterable

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator[Any]:
        current = budget()
        for item in self.iterable:
            current.step()
            yield item


class _CheckedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: jinja2.nodes.Concat, frame: Frame) -> None:
        # ``a ~ b`` joins through the environment, where the result's size is checked
        self.write("environment.join_strings((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every way of spending time or memory counted (module doc)."""

    code_generator_class = _CheckedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs
        self.filters.update(
            center=_center, indent=_indent, replace=_replace, format=_format, join=_join, batch=_batch,
            slice=_slice, wordwrap=_wordwrap,
        )

    def _parse(self, source: str, name: str | None, filename: str | None) -> jinja2.nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(jinja2.nodes.For):
            counter = jinja2.nodes.EnvironmentAttribute("counted", lineno=loop.lineno)
            loop.iter = jinja2.nodes.Call(counter, [loop.iter], [], None, None, lineno=loop.lineno)
        tree.set_environment(self)
        return tree

    @staticmethod
    def counted(iterable: Any) -> _Counted:
        return _Counted(iterable)

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """Join output (a render, a macro, a ``{% set %}`` block), counting as it comes: a loop
        writing a fresh string each time must stop before they fill the memory."""
        current = budget()
        limit = current.limits.max_output
        collected = []
        total = 0
        for part in parts:
            total += len(part)
            if total > limit:
                raise current.too_large()
            collected.append(part)
        return "".join(collected)

    def join_strings(self, parts: Iterable[Any]) -> str:
        return self.concat(map(str, parts))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        current = budget()
        if operator == "+" and type(left) is str and type(right) is str:  # the common case, kept short
            current.size(len(left) + len(right))
            return left + right
        limit = current.limits.max_output
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                    current.size(text_size(sequence, limit) * max(count, 0))
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(left.bit_length() + right.bit_length())
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                current.size(text_size(left, limit) + text_size(right, limit))
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                _check_bits(right * abs(left).bit_length())
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
            current.size(printf_size(left, right, limit))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        current = budget()
        current.step()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in _GROWING_METHODS:
            args = _check_string_method(current, owner, __obj.__name__, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, (str, list, tuple, dict)):
            current.size(len(result))
        return result

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__
        is_format_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(text)
            current = budget()
            if is_format_map:
                mapping = args[0] if args and isinstance(args[0], Mapping) else {}
                current.size(format_size(text, (), mapping, current.limits.max_output))
            else:
                current.size(format_size(text, args, kwargs, current.limits.max_output))
            result: str = wrapped(*args, **kwargs)
            budget().size(len(result))
            return result

        return checked


def _check_bits(bits: int) -> None:
    if bits > MAX_INTEGER_BITS:
        raise TemplateLimitExceeded(f"integer result over {MAX_INTEGER_BITS} bits")


def _check_format(text: str) -> None:
    """Refuse a printf or str.format pattern whose width or precision exceeds the output limit."""
    limit = budget().limits.max_output
    for number in _FORMAT_NUMBER.findall(text):
        if len(number) > len(str(limit)) or int(number) > limit:
            raise budget().too_large()


def text_size(value: Any, limit: int) -> int:
    """At least ``len(str(value))``: exact for strings, close for numbers and containers; counting
    stops once past ``limit``, so a long list costs no more than the limit to measure."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return _repr_size(value, limit, 0)
    if isinstance(value, bool) or value is None:
        return 4
    if isinstance(value, int):  # str() of a huge int is slow, or refused
        return max(1, int(value.bit_length() * 0.30102999566398))
    if isinstance(value, float):
        return 3
    return 0


def _repr_size(value: Any, limit: int, depth: int) -> int:
    """At least ``len(repr(value))`` for an item inside a container."""
    if isinstance(value, str):
        return len(value) + 2
    if not isinstance(value, _CONTAINERS):
        return text_size(value, limit)
    if depth >= _MAX_DEPTH:
        return 2
    parts = (part for item in value.items() for part in item) if isinstance(value, dict) else value
    total = 0
    for part in parts:
        total += _repr_size(part, limit - total, depth + 1) + 2  # the item and ", " or ": "
        if total > limit:
            break
    return total if total else 2  # the brackets take the place of the last ", "


def printf_size(pattern: str, values: Any, limit: int) -> int:
    """At least ``len(pattern % values)``, from the conversions of ``pattern`` and the sizes of
    ``values``, without formatting anything."""
    positional = iter(values if isinstance(values, tuple) else (values,))
    total = 0
    end = 0
    for spec in _PRINTF_SPEC.finditer(pattern):
        total += spec.start() - end
        end = spec.end()
        if spec["type"] == "%":
            total += 1
            continue
        width = _printf_number(spec["width"], positional)
        precision = _printf_number(spec["precision"], positional)
        if spec["key"] is None:
            value = next(positional, None)
        else:
            value = values.get(spec["key"]) if isinstance(values, Mapping) else None
        total += max(_field_size(value, spec["type"], precision, limit), width or 0)
        if total > limit:
            return total
    return total + len(pattern) - end


def _printf_number(number: str | None, positional: Iterator[Any]) -> int | None:
    if number == "*":
        value = next(positional, None)
        return value if isinstance(value, int) else None
    return int(number) if number else None


def _field_size(value: Any, conversion: str, precision: int | None, limit: int) -> int:
    if conversion not in _TEXT_CONVERSIONS:
        return 0  # a number: its width is what can make it large
    size = text_size(value, limit) + (2 if conversion != "s" and isinstance(value, str) else 0)
    return size if precision is None else min(size, precision)


def format_size(pattern: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int) -> int:
    """At least ``len(pattern.format(*args, **kwargs))``, without formatting anything; a field
    with attributes, indexes, a precision or a nested field counts as its width only."""
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError:
        return 0  # a broken pattern: format itself will say so
    total = 0
    automatic = 0
    for literal, field, spec, conversion in fields:
        total += len(literal)
        if field is None:
            continue
        name = _FIELD_NAME.match(field)[0]  # type: ignore[index]  # it matches ""
        key: int | str = int(name) if name.isdigit() else name
        if name == "":
            key, automatic = automatic, automatic + 1
        if "{" in (spec or ""):
            continue
        width = _FORMAT_SPEC_WIDTH.match(spec or "")[1]  # type: ignore[index]  # it matches ""
        size = int(width) if width else 0
        if name == field and "." not in (spec or ""):
            value = (args[key] if key < len(args) else None) if isinstance(key, int) else kwargs.get(key)
            size = max(size, _field_size(value, conversion or "s", None, limit))
        total += size
        if total > limit:
            return total
    return total


def _check_string_method(current: Budget, text: str, name: str, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a str method that can grow its string before it runs; the arguments to call it with."""
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            current.size(width)
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            current.size(len(text) + text.count("\t") * max(size, 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        occurrences = text.count(old) if old else len(text) + 1
        current.size(len(text) + occurrences * max(len(new) - len(old), 0))
    elif name == "join" and args:
        items = list(args[0])
        current.size(sum(len(item) if isinstance(item, str) else 0 for item in items)
                     + len(text) * max(len(items) - 1, 0))
        return (items, *args[1:])
    return args


# -- filters that grow a value from a small argument ----------------------------------------------


def _center(value: Any, width: int = 80) -> str:
    if isinstance(width, int):
        budget().size(width)
    return jinja2.filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    budget().size(len(text) + (text.count("\n") + 1) * max(step, 0))
    return jinja2.filters.do_indent(s, width, first, blank)


@jinja2.pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    text, old_text, new_text = str(s), str(old), str(new)
    occurrences = text.count(old_text) if old_text else len(text) + 1
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    budget().size(len(text) + occurrences * max(len(new_text) - len(old_text), 0))
    return jinja2.filters.do_replace(eval_ctx, s, old, new, count)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format(str(value))
    current = budget()
    current.size(printf_size(str(value), kwargs or args, current.limits.max_output))
    result = jinja2.filters.do_format(value, *args, **kwargs)
    budget().size(len(result))
    return result


@jinja2.pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(jinja2.filters.make_attrgetter(eval_ctx.environment, attribute), value)
    items = [str(item) for item in value]
    separator = str(d)
    budget().size(sum(map(len, items)) + len(separator) * max(len(items) - 1, 0))
    return separator.join(items)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    if isinstance(linecount, int):
        budget().size(linecount)
    return jinja2.filters.do_batch(value, linecount, fill_with)


@jinja2.pass_environment
def _slice(environment: Any, value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int):
        budget().size(slices)
    return jinja2.filters.sync_do_slice(value, slices, fill_with)


@jinja2.pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    text = str(s)
    separator = wrapstring if isinstance(wrapstring, str) else environment.newline_sequence
    lines = len(text) // max(width, 1) + text.count("\n") + 1 if isinstance(width, int) else 1
    budget().size(len(text) + lines * len(separator))
    return jinja2.filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
           sort_keys: bool = False) -> str:
    """transformers' ``tojson`` (no HTML escaping), written in pieces so an indent cannot blow it up."""
    if isinstance(indent, (int, str)):
        budget().size(indent if isinstance(indent, int) else len(indent))
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    current = budget()
    parts = []
    size = 0
    for chunk in encoder.iterencode(value):
        size += len(chunk)
        current.size(size)
        parts.append(chunk)
    return "".join(parts)
