"""Template functions: Go's builtins (text/template/funcs.go) and Ollama's additions.

A function declares its parameters the way the executor must prepare arguments: ``value``
receives the raw value (Go's reflect.Value, possibly a nil interface), ``any`` an interface
argument (a nil interface arrives as None), and ``string``/``int``/``bool``/``float`` a typed Go
argument (literals of another type are rejected, as Go does).
"""

from __future__ import annotations

import datetime
import inspect
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import gojson
from ..gofmt import is_print, sprint, sprintf, sprintln
from ..govalues import (
    NIL,
    Named,
    Pointer,
    Struct,
    indirect,
    indirect_interface,
    is_function,
    is_nil,
    is_true,
    kind,
    length,
    map_entries,
    map_key_type,
    sequence_items,
    type_name,
)


SizeCheck = Callable[[int], None]


class FunctionError(Exception):
    """The error a template function returns; execution stops with "error calling NAME: ..."."""


@dataclass(frozen=True)
class GoFunc:
    name: str
    params: tuple[str, ...]
    variadic: bool
    call: Callable[..., Any]
    sized: bool = False
    """``call`` takes a ``size_check`` keyword, to refuse a string too large before building it."""


def wrap_python_function(name: str, function: Callable[..., Any]) -> GoFunc:
    """Describe a Python callable as a template function taking interface arguments."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return GoFunc(name, ("any",), True, function)
    params: list[str] = []
    variadic = False
    for parameter in signature.parameters.values():
        if parameter.kind == parameter.VAR_POSITIONAL:
            params.append("any")
            variadic = True
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            params.append("any")
    return GoFunc(name, tuple(params), variadic, function)


# -- indexing, slicing, length -------------------------------------------------------------------


def _index_arg(index: Any, cap: int) -> int:
    if isinstance(index, int) and not isinstance(index, bool):
        x = index
    elif index is None:
        raise FunctionError("cannot index slice/array with nil")
    else:
        raise FunctionError(f"cannot index slice/array with type {type_name(index)}")
    if x < 0 or x > cap:
        raise FunctionError(f"index out of range: {x}")
    return x


def _string_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _prepare_map_key(key: Any, key_type: str) -> Any:
    if key is None:
        if key_type in ("interface {}",):
            return None
        raise FunctionError(f"value is nil; should be of type {key_type}")
    if key_type in ("interface {}", type_name(key)):
        return key
    if key_type == "int" and isinstance(key, int) and not isinstance(key, bool):
        return key
    raise FunctionError(f"value has type {type_name(key)}; should be {key_type}")


def builtin_index(item: Any, *indexes: Any) -> Any:
    item = indirect_interface(item)
    if item is None:
        raise FunctionError("index of untyped nil")
    for index in indexes:
        index = indirect_interface(index)
        item, nil = indirect(item)
        if nil:
            raise FunctionError("index of nil pointer")
        item_kind = kind(item)
        if item_kind == "string":
            data = _string_bytes(item)
            x = _index_arg(index, len(data))
            if x == len(data):
                raise FunctionError("reflect: string index out of range")
            item = data[x]
        elif item_kind == "slice":
            elements = sequence_items(item)
            x = _index_arg(index, len(elements))
            if x == len(elements):
                raise FunctionError("reflect: slice index out of range")
            item = elements[x]
            if item is None:
                item = NIL
        elif item_kind == "map":
            entries = map_entries(item)
            key = _prepare_map_key(index, map_key_type(item))
            if key in entries:
                item = entries[key]
                if item is None:
                    item = NIL
            elif isinstance(item, Named) and item.type.map_zero is not None:
                item = item.type.map_zero()
            else:
                item = NIL
        else:
            raise FunctionError(f"can't index item of type {type_name(item)}")
    return item


def builtin_slice(item: Any, *indexes: Any) -> Any:
    item = indirect_interface(item)
    if item is None:
        raise FunctionError("slice of untyped nil")
    if len(indexes) > 3:
        raise FunctionError(f"too many slice indexes: {len(indexes)}")
    item_kind = kind(item)
    if item_kind == "string":
        if len(indexes) == 3:
            raise FunctionError("cannot 3-index slice a string")
        size = length(item) or 0
    elif item_kind == "slice":
        size = len(sequence_items(item))
    else:
        raise FunctionError(f"can't slice item of type {type_name(item)}")
    bounds = [0, size, 0]
    for i, index in enumerate(indexes):
        bounds[i] = _index_arg(indirect_interface(index), size)
    if bounds[0] > bounds[1]:
        raise FunctionError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise FunctionError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    start, stop = bounds[0], bounds[1]
    if isinstance(item, str):
        if item.isascii():
            return item[start:stop]
        return _string_bytes(item)[start:stop].decode("utf-8", "surrogateescape")
    if isinstance(item, Named):
        return Named(item.type, item.value[start:stop])
    if isinstance(item, bytes):
        return item[start:stop]
    return list(item)[start:stop]


def builtin_len(item: Any) -> int:
    if item is None:
        # Go calls Type() on the zero reflect.Value and recovers the panic as the error
        raise FunctionError("reflect: call of reflect.Value.Type on zero Value")
    item, nil = indirect(item)
    if nil:
        raise FunctionError("len of nil pointer")
    size = length(item)
    if size is None:
        raise FunctionError(f"len of type {type_name(item)}")
    return size


# -- comparison ------------------------------------------------------------------------------


def _basic_kind(value: Any) -> str:
    value_kind = kind(value)
    return value_kind if value_kind in ("bool", "int", "float", "complex", "string") else "invalid"


def _comparable(value: Any) -> bool:
    if isinstance(value, (list, tuple, Mapping, bytes, Named)) or is_function(value):
        return False
    if isinstance(value, Struct):
        return all(_comparable(v) for v in value.values.values())
    return True


def builtin_eq(arg1: Any, *args: Any) -> bool:
    arg1 = indirect_interface(arg1)
    if not args:
        raise FunctionError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in args:
        arg = indirect_interface(arg)
        k2 = _basic_kind(arg)
        truth = False
        if k1 != k2:
            if arg1 is not None and arg is not None:
                raise FunctionError(f"incompatible types for comparison: {type_name(arg1)} and {type_name(arg)}")
        elif k1 != "invalid":
            truth = arg1 == arg
        else:
            if kind(arg1) != kind(arg) and arg1 is not None and arg is not None:
                raise FunctionError(
                    f"non-comparable types {sprint(arg1)}: {type_name(arg1)}, {type_name(arg)}: {sprint(arg)}"
                )
            if is_nil(arg1) or is_nil(arg):
                truth = is_nil(arg) == is_nil(arg1)
            else:
                if not _comparable(arg):
                    raise FunctionError(f"non-comparable type {sprint(arg)}: {type_name(arg)}")
                truth = arg1 is arg if isinstance(arg1, Pointer) else arg1 == arg
        if truth:
            return True
    return False


def builtin_ne(arg1: Any, arg2: Any) -> bool:
    return not builtin_eq(arg1, arg2)


def builtin_lt(arg1: Any, arg2: Any) -> bool:
    arg1 = indirect_interface(arg1)
    arg2 = indirect_interface(arg2)
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if k1 == "invalid" or k2 == "invalid":
        raise FunctionError("invalid type for comparison")
    if k1 != k2:
        raise FunctionError(f"incompatible types for comparison: {type_name(arg1)} and {type_name(arg2)}")
    if k1 in ("bool", "complex"):
        raise FunctionError("invalid type for comparison")
    if k1 == "string":
        return _string_bytes(arg1) < _string_bytes(arg2)
    return bool(arg1 < arg2)


def builtin_le(arg1: Any, arg2: Any) -> bool:
    return builtin_lt(arg1, arg2) or builtin_eq(arg1, arg2)


def builtin_gt(arg1: Any, arg2: Any) -> bool:
    return not builtin_le(arg1, arg2)


def builtin_ge(arg1: Any, arg2: Any) -> bool:
    return not builtin_lt(arg1, arg2)


def builtin_not(arg: Any) -> bool:
    return not is_true(indirect_interface(arg))


# -- escaping --------------------------------------------------------------------------------


def _printable_argument(arg: Any) -> Any:
    """exec's printableValue, applied by html, js and urlquery to each argument."""
    if isinstance(arg, Pointer):
        arg, _ = indirect(arg)
        if isinstance(arg, Pointer):
            return arg  # a nil pointer
    return "<no value>" if arg is None else arg


def _eval_args(args: tuple[Any, ...], size_check: SizeCheck | None) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(*(_printable_argument(a) for a in args), size_check=size_check)


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}


def builtin_html(*args: Any, size_check: SizeCheck | None = None) -> str:
    return "".join(_HTML.get(c, c) for c in _eval_args(args, size_check))


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _js_char(char: str) -> str:
    if char in _JS:
        return _JS[char]
    code = ord(char)
    if code < 0x20:
        return f"\\u00{code:02X}"
    # an invalid UTF-8 byte decodes to U+FFFD, which is printable, so Go copies the byte as is
    if code < 0x80 or is_print(char) or 0xDC80 <= code <= 0xDCFF:
        return char
    return f"\\u{code:04X}"


def builtin_js(*args: Any, size_check: SizeCheck | None = None) -> str:
    return "".join(_js_char(c) for c in _eval_args(args, size_check))


def builtin_urlquery(*args: Any, size_check: SizeCheck | None = None) -> str:
    return urllib.parse.quote_plus(_string_bytes(_eval_args(args, size_check)), safe="")


# -- call --------------------------------------------------------------------------------------


def builtin_call(name: str, function: Any, *args: Any) -> Any:
    function = indirect_interface(function)
    if function is None:
        raise FunctionError("call of nil")
    if not is_function(function):
        raise FunctionError(f"non-function {name} of type {type_name(function)}")
    described = wrap_python_function(name, function)
    fixed = len(described.params) - (1 if described.variadic else 0)
    if described.variadic:
        if len(args) < fixed:
            raise FunctionError(f"wrong number of args for {name}: got {len(args)} want at least {fixed}")
    elif len(args) != fixed:
        raise FunctionError(f"wrong number of args for {name}: got {len(args)} want {fixed}")
    return function(*(indirect_interface(a) for a in args))


# -- printing ----------------------------------------------------------------------------------


def builtin_print(*args: Any, size_check: SizeCheck | None = None) -> str:
    return sprint(*args, size_check=size_check)


def builtin_printf(format: str, *args: Any, size_check: SizeCheck | None = None) -> str:
    return sprintf(format, *args, size_check=size_check)


def builtin_println(*args: Any, size_check: SizeCheck | None = None) -> str:
    return sprintln(*args, size_check=size_check)


def _unreachable(*args: Any) -> Any:  # and, or: short-circuited by the executor
    raise AssertionError("and/or are evaluated by the executor")


BUILTINS: Mapping[str, GoFunc] = {
    f.name: f
    for f in (
        GoFunc("and", ("value", "value"), True, _unreachable),
        GoFunc("or", ("value", "value"), True, _unreachable),
        GoFunc("call", ("value", "value"), True, builtin_call),
        GoFunc("html", ("any",), True, builtin_html, sized=True),
        GoFunc("index", ("value", "value"), True, builtin_index),
        GoFunc("slice", ("value", "value"), True, builtin_slice),
        GoFunc("js", ("any",), True, builtin_js, sized=True),
        GoFunc("len", ("value",), False, builtin_len),
        GoFunc("not", ("value",), False, builtin_not),
        GoFunc("print", ("any",), True, builtin_print, sized=True),
        GoFunc("printf", ("string", "any"), True, builtin_printf, sized=True),
        GoFunc("println", ("any",), True, builtin_println, sized=True),
        GoFunc("urlquery", ("any",), True, builtin_urlquery, sized=True),
        GoFunc("eq", ("value", "value"), True, builtin_eq),
        GoFunc("ge", ("value", "value"), False, builtin_ge),
        GoFunc("gt", ("value", "value"), False, builtin_gt),
        GoFunc("le", ("value", "value"), False, builtin_le),
        GoFunc("lt", ("value", "value"), False, builtin_lt),
        GoFunc("ne", ("value", "value"), False, builtin_ne),
    )
}


# -- Ollama's functions (template/template.go funcs) -------------------------------------------

Clock = Callable[[], datetime.datetime]


def _json(value: Any) -> str:
    try:
        return gojson.marshal(value)
    except gojson.UnsupportedValue:
        return ""  # Ollama ignores json.Marshal's error and prints nothing


def _to_typescript_type(value: Any) -> str:
    if isinstance(value, Pointer) and value.elem is not None:
        value = value.elem
    method = value.type.methods.get("ToTypeScriptType") if isinstance(value, Struct) else None
    return method(value) if method is not None else "any"


def ollama_functions(clock: Clock | None = None) -> dict[str, GoFunc]:
    """json, currentDate, yesterdayDate and toTypeScriptType, as Ollama registers them."""
    now = clock or datetime.datetime.now

    def current_date(*_format: str) -> str:  # the format argument is accepted and ignored
        return now().strftime("%Y-%m-%d")

    def yesterday_date(*_format: str) -> str:
        return (now() - datetime.timedelta(days=1)).strftime("%Y-%m-%d")

    return {
        "json": GoFunc("json", ("any",), False, _json),
        "currentDate": GoFunc("currentDate", ("string",), True, current_date),
        "yesterdayDate": GoFunc("yesterdayDate", ("string",), True, yesterday_date),
        "toTypeScriptType": GoFunc("toTypeScriptType", ("any",), False, _to_typescript_type),
    }


OLLAMA_FUNCTION_NAMES = frozenset(ollama_functions())
