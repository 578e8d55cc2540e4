"""Go's view of Python data: kinds, type names, nil-ness and truth as text/template sees them.

Plain Python values map onto Go's dynamic types: ``None`` is an untyped nil, ``bool``/``int``/
``float``/``complex``/``str`` are Go's basic kinds, ``bytes`` is ``[]uint8``, lists and tuples are
``[]interface {}`` and dicts are maps. Go-typed data (structs, pointers, named slice and map types
with methods such as ``String``) is described with the records here, so that printing, JSON and
field access behave as they do on Ollama's template values. Any other Python object is treated as
a struct whose exported fields are its public attributes.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class _NilInterface:
    """An interface value holding nil, as read from a ``map[string]any`` or an ``any`` field.

    Go tells it apart from an untyped nil in a few places: ``.Missing.Field`` fails with "nil
    pointer evaluating interface {}.Field" and ``len`` says "len of nil pointer".
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NIL"


NIL: Any = _NilInterface()


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""No value: the absent final argument of a pipeline stage."""


@dataclass(frozen=True)
class FieldSpec:
    """One exported field of a Go struct type."""

    name: str
    json: str | None = None  # the JSON key; None means the Go field name
    omitempty: bool = False
    skip_json: bool = False


@dataclass(frozen=True, eq=False)
class GoType:
    """A named Go type: its printed name, methods and custom JSON marshalling.

    ``kind`` is ``struct``, ``slice`` or ``map``. Methods take the receiver first; a ``String``
    method makes values of the type a fmt.Stringer. ``map_zero`` builds the zero value of a map
    type's element type, returned for missing keys under ``missingkey=zero``.
    """

    name: str
    kind: str
    fields: tuple[FieldSpec, ...] = ()
    methods: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    marshal_json: Callable[[Any], str] | None = None
    map_zero: Callable[[], Any] | None = None


class Struct:
    """A value of a Go struct type; ``values`` holds the exported fields by name."""

    __slots__ = ("type", "values")

    def __init__(self, type: GoType, values: Mapping[str, Any]) -> None:
        self.type = type
        self.values = dict(values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Struct) and other.type is self.type and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.type.name)

    def __repr__(self) -> str:
        return f"Struct({self.type.name}, {self.values!r})"


class Named:
    """A slice or map of a named Go type (for its methods and JSON); ``nil`` marks a nil one."""

    __slots__ = ("type", "value", "nil")

    def __init__(self, type: GoType, value: list[Any] | dict[Any, Any] | None) -> None:
        self.type = type
        self.nil = value is None
        self.value: Any = value if value is not None else ([] if type.kind == "slice" else {})

    def __repr__(self) -> str:
        return f"Named({self.type.name}, {'nil' if self.nil else repr(self.value)})"


class Pointer:
    """A pointer to a Go value; ``elem`` None is a nil pointer of type ``*type_name``."""

    __slots__ = ("elem", "elem_type")

    def __init__(self, elem: Any, elem_type: str | None = None) -> None:
        self.elem = elem
        self.elem_type = elem_type if elem_type is not None else type_name(elem)

    def __repr__(self) -> str:
        return f"Pointer({self.elem!r})"


_SCALARS = (bool, int, float, complex, str, bytes)


def is_function(value: Any) -> bool:
    return callable(value) and not isinstance(value, (type, Struct, Named, Pointer))


def is_plain_object(value: Any) -> bool:
    """A Python object read as a struct: not nil, not a scalar, container or Go-typed value."""
    return not (
        value is None
        or value is NIL
        or isinstance(value, (*_SCALARS, list, tuple, Mapping, Struct, Named, Pointer))
        or is_function(value)
    )


def kind(value: Any) -> str:
    """The reflect.Kind of a value, spelled in lower case (``invalid`` for an untyped nil)."""
    if value is None:
        return "invalid"
    if value is NIL:
        return "interface"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, complex):
        return "complex"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, list, tuple)):
        return "slice"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, Named):
        return value.type.kind
    if isinstance(value, Struct):
        return "struct"
    if isinstance(value, Pointer):
        return "ptr"
    if is_function(value):
        return "func"
    return "struct"


def _map_key_type(value: Mapping[Any, Any]) -> str:
    keys = {type_name(k) for k in value}
    return keys.pop() if len(keys) == 1 else ("string" if not keys else "interface {}")


def type_name(value: Any) -> str:
    """The Go type of a value as reflect's Type.String() spells it."""
    if value is None:
        return "<nil>"
    if value is NIL:
        return "interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, complex):
        return "complex128"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "[]uint8"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    if isinstance(value, Mapping):
        return f"map[{_map_key_type(value)}]interface {{}}"
    if isinstance(value, (Named, Struct)):
        return value.type.name
    if isinstance(value, Pointer):
        return "*" + value.elem_type
    if is_function(value):
        return "func(...) interface {}"
    cls = type(value)
    return f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"


def map_key_type(value: Any) -> str:
    """The key type of a map value (``string`` for an empty Python dict)."""
    mapping = value.value if isinstance(value, Named) else value
    return _map_key_type(mapping)


def indirect_interface(value: Any) -> Any:
    """The concrete value inside an interface: a nil interface becomes an untyped nil."""
    return None if value is NIL else value


def indirect(value: Any) -> tuple[Any, bool]:
    """Follow pointers and interfaces; return the last value reached and whether it was nil."""
    while isinstance(value, Pointer) or value is NIL:
        if value is NIL or value.elem is None:
            return value, True
        value = value.elem
    return value, False


def is_nil(value: Any) -> bool:
    """True for an untyped nil or a nil of a nillable type (the builtin comparisons' notion)."""
    if value is None or value is NIL:
        return True
    if isinstance(value, Named):
        return value.nil
    if isinstance(value, Pointer):
        return value.elem is None
    return False


def is_true(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, slices and maps are false."""
    if value is None or value is NIL:
        return False
    if isinstance(value, (bool, int, float, complex)):
        return value != 0
    if isinstance(value, (str, bytes, list, tuple, Mapping)):
        return len(value) > 0
    if isinstance(value, Named):
        return len(value.value) > 0
    if isinstance(value, Pointer):
        return value.elem is not None
    return True  # structs and functions


def length(value: Any) -> int | None:
    """The Go length of a string (in UTF-8 bytes), slice or map; None for other kinds."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, (bytes, list, tuple, Mapping)):
        return len(value)
    if isinstance(value, Named):
        return len(value.value)
    return None


def sequence_items(value: Any) -> list[Any]:
    """The elements of a slice value (bytes read as integers)."""
    if isinstance(value, Named):
        return list(value.value)
    return list(value)


def map_entries(value: Any) -> Mapping[Any, Any]:
    entries: Mapping[Any, Any] = value.value if isinstance(value, Named) else value
    return entries


def sorted_keys(keys: list[Any]) -> list[Any]:
    """Map keys in Go's fmtsort order: numbers by value, strings bytewise, false before true."""

    def rank(key: Any) -> tuple[int, Any]:
        if key is None:
            return (0, 0)
        if isinstance(key, bool):
            return (1, int(key))
        if isinstance(key, (int, float)):
            return (2, key)
        if isinstance(key, str):
            return (3, key.encode("utf-8", "surrogateescape"))
        return (4, repr(key))

    return sorted(keys, key=rank)


def struct_fields(value: Any) -> list[tuple[str, Any]]:
    """The exported fields of a struct value, in declaration order."""
    if isinstance(value, Struct):
        return [(spec.name, value.values.get(spec.name)) for spec in value.type.fields]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    attrs_fields = getattr(type(value), "__attrs_attrs__", None)
    if attrs_fields is not None:
        return [(a.name, getattr(value, a.name)) for a in attrs_fields]
    names = getattr(value, "__dict__", {})
    return [(name, item) for name, item in names.items() if not name.startswith("_")]


def lookup_method(value: Any, name: str) -> Callable[..., Any] | None:
    """A method of the value's type, bound to the value; None when there is none."""
    if isinstance(value, (Struct, Named)):
        method = value.type.methods.get(name)
        if method is None:
            return None
        receiver = value

        def bound(*args: Any) -> Any:
            return method(receiver, *args)

        bound.__signature__ = _drop_first_parameter(method)  # type: ignore[attr-defined]
        return bound
    if is_plain_object(value) and not name.startswith("_"):
        # methods live on the class; a callable in an instance attribute is a field of func type
        attribute = inspect.getattr_static(type(value), name, None)
        if attribute is not None and (inspect.isfunction(attribute) or isinstance(attribute, (staticmethod, classmethod))):
            bound_method: Callable[..., Any] = getattr(value, name)
            return bound_method
    return None


def _drop_first_parameter(function: Callable[..., Any]) -> inspect.Signature:
    signature = inspect.signature(function)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def stringer(value: Any) -> Callable[[], str] | None:
    """The value's ``String`` method when it is a fmt.Stringer."""
    if isinstance(value, (Struct, Named)):
        method = value.type.methods.get("String")
        return (lambda: method(value)) if method is not None else None
    if isinstance(value, Pointer) and isinstance(value.elem, (Struct, Named)):
        return stringer(value.elem)
    return None


def struct_field(value: Any, name: str) -> tuple[bool, Any]:
    """Look up an exported struct field: (found, value); a nil field reads as a nil interface."""
    if isinstance(value, Struct):
        if name not in value.values and not any(spec.name == name for spec in value.type.fields):
            return False, None
        found = value.values.get(name)
    else:
        if name.startswith("_") or not hasattr(value, name):
            return False, None
        found = getattr(value, name)
    return True, NIL if found is None else found
