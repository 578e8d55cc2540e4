"""Render a model's TEMPLATE for a request exactly as Ollama's template.Execute does.

The request side is described with plain records (``Message``, ``ToolCall``, ``Tool``) or the
JSON-shaped mappings of Ollama's API; they are converted to the Go values templates see
(``templateMessage``, ``templateTool`` and friends in Ollama's template/template.go), so that
printing, ``json`` and ranging give Ollama's bytes.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import gojson
from corral.errors import InvalidRequest
from corral.template_limits import Budget

from .analysis import cut_after_response, infer_thinking_tags, template_vars
from ..gofmt import sprint
from .nodes import ActionNode, CommandNode, FieldNode, PipeNode
from .template import Template
from ..govalues import FieldSpec, GoType, Named, Pointer, Struct

# -- request records ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """A tool call made by the assistant; ``arguments`` None means none were sent."""

    name: str
    arguments: Mapping[str, Any] | None = None
    index: int = 0
    id: str = ""


@dataclass(frozen=True, kw_only=True)
class Message:
    role: str
    content: str = ""
    thinking: str = ""
    images: Sequence[bytes] = ()
    tool_calls: Sequence[ToolCall] = ()
    tool_name: str = ""
    tool_call_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    type: str = "function"
    items: Any = None


MessageLike = Message | Mapping[str, Any]
ToolLike = Tool | Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class PromptValues:
    """What a request gives the template (Ollama's template.Values)."""

    messages: Sequence[MessageLike] = ()
    tools: Sequence[ToolLike] | None = None
    prompt: str = ""
    suffix: str = ""
    think: bool = False
    think_level: str = ""
    is_think_set: bool = False


_JSON_KINDS = ((bool, "bool"), (str, "string"), ((int, float), "number"), (list, "array"), (Mapping, "object"))


def _field(mapping: Any, name: str, kind: type | tuple[type, ...], where: str, go_type: str) -> Any:
    """``mapping[name]`` if it has the JSON kind Go would accept (or is absent); else the 400 Go's
    JSON decoder gives, instead of a crash further on."""
    if not isinstance(mapping, Mapping):
        raise _unmarshal(mapping, where.rpartition(".")[0], "object")
    value = mapping.get(name)
    if value is None or (isinstance(value, kind) and not (isinstance(value, bool) and bool not in _kinds(kind))):
        return value
    raise _unmarshal(value, f"{where}", go_type)


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _unmarshal(value: Any, where: str, go_type: str) -> InvalidRequest:
    found = next((label for kind, label in _JSON_KINDS if isinstance(value, kind)), "value")
    return InvalidRequest(f"json: cannot unmarshal {found} into Go struct field {where} of type {go_type}")


def message_from(value: MessageLike) -> Message:
    """A Message from a record or from an API mapping (``tool_calls[].function``, base64 images);
    InvalidRequest when a field has the wrong JSON type."""
    if isinstance(value, Message):
        return value
    calls = []
    for call in _field(value, "tool_calls", list, "Message.tool_calls", "[]api.ToolCall") or ():
        if isinstance(call, ToolCall):
            calls.append(call)
            continue
        function = _field(call, "function", Mapping, "Message.tool_calls.function", "api.ToolCallFunction") or {}
        arguments_type = "api.ToolCallFunctionArguments"
        calls.append(
            ToolCall(
                name=_field(function, "name", str, "Message.tool_calls.function.name", "string") or "",
                arguments=_field(function, "arguments", Mapping, "Message.tool_calls.function.arguments", arguments_type),
                index=_field(function, "index", int, "Message.tool_calls.function.index", "int") or 0,
                id=_field(call, "id", str, "Message.tool_calls.id", "string") or "",
            )
        )
    images = []
    for image in _field(value, "images", list, "Message.images", "[]api.ImageData") or ():
        if not isinstance(image, (str, bytes)):
            raise _unmarshal(image, "Message.images", "api.ImageData")
        images.append(base64.b64decode(image) if isinstance(image, str) else image)
    return Message(
        role=(_field(value, "role", str, "Message.role", "string") or "").lower(),
        content=_field(value, "content", str, "Message.content", "string") or "",
        thinking=_field(value, "thinking", str, "Message.thinking", "string") or "",
        images=images,
        tool_calls=calls,
        tool_name=_field(value, "tool_name", str, "Message.tool_name", "string") or "",
        tool_call_id=_field(value, "tool_call_id", str, "Message.tool_call_id", "string") or "",
    )


def tool_from(value: ToolLike) -> Tool:
    """A Tool from a record or from an API mapping ``{"type", "function": {...}}``; InvalidRequest
    when a field has the wrong JSON type."""
    if isinstance(value, Tool):
        return value
    function = _field(value, "function", Mapping, "Tool.function", "api.ToolFunction") or {}
    parameters = _field(function, "parameters", Mapping, "Tool.function.parameters", "api.ToolFunctionParameters") or {}
    _field(parameters, "type", str, "Tool.function.parameters.type", "string")
    _field(parameters, "properties", Mapping, "Tool.function.parameters.properties", "api.ToolPropertiesMap")
    _strings_field(parameters, "Tool.function.parameters.required")
    return Tool(
        name=_field(function, "name", str, "Tool.function.name", "string") or "",
        description=_field(function, "description", str, "Tool.function.description", "string") or "",
        parameters=parameters,
        type=_field(value, "type", str, "Tool.type", "string") or "",
        items=value.get("items"),
    )


def _strings_field(mapping: Mapping[str, Any], where: str) -> list[str] | None:
    name = where.rpartition(".")[2]
    values = _field(mapping, name, list, where, "[]string")
    for item in values or ():
        if not isinstance(item, str):
            raise _unmarshal(item, where, "string")
    return values


# -- the Go types templates see ----------------------------------------------------------------


def _go_any(value: Any) -> Any:
    """JSON decoded into Go's ``any``: numbers become float64."""
    if isinstance(value, Mapping):
        return {str(k): _go_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_go_any(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _json_string_method(value: Any) -> str:
    return gojson.marshal(value)


def _property_type_string(value: Named) -> str:
    types = value.value
    if not types:
        return ""
    return types[0] if len(types) == 1 else sprint(list(types))


def _property_type_json(value: Named) -> str:
    types = value.value
    if len(types) == 1:
        return gojson.encode_string(types[0])
    return "null" if value.nil else gojson.marshal(list(types))


_TYPESCRIPT = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


def _to_typescript_type(value: Struct) -> str:
    any_of = value.values["AnyOf"].value
    if any_of:
        return " | ".join(_to_typescript_type(p) for p in any_of)
    types = value.values["Type"].value
    if not types:
        return "any"
    return " | ".join(_TYPESCRIPT.get(t, "any") for t in types)


def _ordered_map_json(value: Struct) -> str:
    entries = value.values["om"]
    return "{" + ",".join(gojson.encode_string(k) + ":" + gojson.marshal(v) for k, v in entries.items()) + "}"


STRING_SLICE = GoType("[]string", "slice")
ANY_SLICE = GoType("[]interface {}", "slice")
IMAGE_SLICE = GoType("[]api.ImageData", "slice")
PROPERTY_TYPE = GoType(
    "api.PropertyType", "slice", methods={"String": _property_type_string}, marshal_json=_property_type_json
)
TOOL_PROPERTIES_MAP = GoType("api.ToolPropertiesMap", "struct", marshal_json=_ordered_map_json)
TOOL_PROPERTY = GoType(
    "api.ToolProperty",
    "struct",
    fields=(
        FieldSpec("AnyOf", "anyOf", omitempty=True),
        FieldSpec("Type", "type", omitempty=True),
        FieldSpec("Items", "items", omitempty=True),
        FieldSpec("Description", "description", omitempty=True),
        FieldSpec("Enum", "enum", omitempty=True),
        FieldSpec("Properties", "properties", omitempty=True),
        FieldSpec("Required", "required", omitempty=True),
    ),
    methods={"ToTypeScriptType": _to_typescript_type},
)
PROPERTY_SLICE = GoType("[]api.ToolProperty", "slice")


def _zero_property() -> Struct:
    return _property({})


def _properties_string(value: Named) -> str:
    return "{}" if value.nil else gojson.marshal(value)


TEMPLATE_PROPERTIES = GoType(
    "template.templateProperties", "map", methods={"String": _properties_string}, map_zero=_zero_property
)
TEMPLATE_ARGS = GoType("template.templateArgs", "map", methods={"String": _properties_string})
# Ollama's main branch gives these two no String method, so {{ .Function }} prints a Go struct
# and breaks templates such as qwen3's (ollama/ollama#14601). We follow the fix (c470357bc) and
# Ollama's behaviour before its templateTool conversion: they print as JSON.
TEMPLATE_TOOL_FUNCTION_PARAMETERS = GoType(
    "template.templateToolFunctionParameters",
    "struct",
    fields=(
        FieldSpec("Type", "type"),
        FieldSpec("Defs", "$defs", omitempty=True),
        FieldSpec("Items", "items", omitempty=True),
        FieldSpec("Required", "required", omitempty=True),
        FieldSpec("Properties", "properties"),
    ),
    methods={"String": _json_string_method},
)
TEMPLATE_TOOL_FUNCTION = GoType(
    "template.templateToolFunction",
    "struct",
    fields=(FieldSpec("Name", "name"), FieldSpec("Description", "description"), FieldSpec("Parameters", "parameters")),
    methods={"String": _json_string_method},
)
TEMPLATE_TOOL = GoType(
    "template.templateTool",
    "struct",
    fields=(FieldSpec("Type", "type"), FieldSpec("Items", "items", omitempty=True), FieldSpec("Function", "function")),
    methods={"String": _json_string_method},
)
TEMPLATE_TOOLS = GoType("template.templateTools", "slice", methods={"String": _json_string_method})
TEMPLATE_TOOL_CALL_FUNCTION = GoType(
    "template.templateToolCallFunction", "struct", fields=(FieldSpec("Index"), FieldSpec("Name"), FieldSpec("Arguments"))
)
TEMPLATE_TOOL_CALL = GoType("template.templateToolCall", "struct", fields=(FieldSpec("ID"), FieldSpec("Function")))
TOOL_CALL_SLICE = GoType("[]template.templateToolCall", "slice")
TEMPLATE_MESSAGE = GoType(
    "template.templateMessage",
    "struct",
    fields=tuple(
        FieldSpec(name) for name in ("Role", "Content", "Thinking", "Images", "ToolCalls", "ToolName", "ToolCallID")
    ),
)
MESSAGE_SLICE = GoType("[]*template.templateMessage", "slice")


def _strings(value: Any) -> Named:
    if value is None:
        return Named(STRING_SLICE, None)
    return Named(STRING_SLICE, [str(v) for v in value])


def _property(schema: Mapping[str, Any]) -> Struct:
    """An api.ToolProperty decoded from a JSON schema fragment (unknown keys are dropped, as in Go);
    InvalidRequest when a field has the wrong JSON type."""
    where = "ToolProperty"
    any_of = _field(schema, "anyOf", list, f"{where}.anyOf", "[]api.ToolProperty")
    type_value = _field(schema, "type", (str, list), f"{where}.type", "api.PropertyType")
    if isinstance(type_value, str):
        type_value = [type_value]
    for item in type_value or ():
        if not isinstance(item, str):
            raise _unmarshal(item, f"{where}.type", "string")
    _field(schema, "description", str, f"{where}.description", "string")
    _field(schema, "enum", list, f"{where}.enum", "[]interface {}")
    _strings_field(schema, f"{where}.required")
    nested = _field(schema, "properties", Mapping, f"{where}.properties", "api.ToolPropertiesMap")
    properties = (
        Pointer(Struct(TOOL_PROPERTIES_MAP, {"om": {k: _property(v) for k, v in nested.items()}}))
        if isinstance(nested, Mapping)
        else Pointer(None, TOOL_PROPERTIES_MAP.name)
    )
    enum = schema.get("enum")
    return Struct(
        TOOL_PROPERTY,
        {
            "AnyOf": Named(PROPERTY_SLICE, [_property(p) for p in any_of] if any_of is not None else None),
            "Type": Named(PROPERTY_TYPE, [str(t) for t in type_value] if type_value is not None else None),
            "Items": _go_any(schema.get("items")),
            "Description": schema.get("description") or "",
            "Enum": Named(ANY_SLICE, _go_any(enum) if enum is not None else None),
            "Properties": properties,
            "Required": _strings(schema.get("required")),
        },
    )


def template_tools(tools: Iterable[ToolLike] | None) -> Named:
    """Ollama's convertToolsForTemplate: tools as ``template.templateTools``."""
    if tools is None:
        return Named(TEMPLATE_TOOLS, None)
    converted = []
    for tool in map(tool_from, tools):
        parameters = tool.parameters
        properties = parameters.get("properties")
        converted.append(
            Struct(
                TEMPLATE_TOOL,
                {
                    "Type": tool.type,
                    "Items": _go_any(tool.items),
                    "Function": Struct(
                        TEMPLATE_TOOL_FUNCTION,
                        {
                            "Name": tool.name,
                            "Description": tool.description,
                            "Parameters": Struct(
                                TEMPLATE_TOOL_FUNCTION_PARAMETERS,
                                {
                                    "Type": parameters.get("type") or "",
                                    "Defs": _go_any(parameters.get("$defs")),
                                    "Items": _go_any(parameters.get("items")),
                                    "Required": _strings(parameters.get("required")),
                                    "Properties": Named(
                                        TEMPLATE_PROPERTIES,
                                        {k: _property(v) for k, v in properties.items()}
                                        if isinstance(properties, Mapping)
                                        else None,
                                    ),
                                },
                            ),
                        },
                    ),
                },
            )
        )
    return Named(TEMPLATE_TOOLS, converted)


def template_messages(messages: Iterable[Message]) -> Named:
    """Ollama's convertMessagesForTemplate: messages as ``[]*template.templateMessage``."""
    converted = []
    for message in messages:
        calls = [
            Struct(
                TEMPLATE_TOOL_CALL,
                {
                    "ID": call.id,
                    "Function": Struct(
                        TEMPLATE_TOOL_CALL_FUNCTION,
                        {
                            "Index": call.index,
                            "Name": call.name,
                            "Arguments": Named(
                                TEMPLATE_ARGS, _go_any(call.arguments) if call.arguments is not None else None
                            ),
                        },
                    ),
                },
            )
            for call in message.tool_calls
        ]
        struct = Struct(
            TEMPLATE_MESSAGE,
            {
                "Role": message.role,
                "Content": message.content,
                "Thinking": message.thinking,
                "Images": Named(IMAGE_SLICE, [bytes(i) for i in message.images] if message.images else None),
                "ToolCalls": Named(TOOL_CALL_SLICE, calls or None),
                "ToolName": message.tool_name,
                "ToolCallID": message.tool_call_id,
            },
        )
        converted.append(Pointer(struct))
    return Named(MESSAGE_SLICE, converted)


def collate(messages: Iterable[MessageLike], budget: Budget | None = None) -> tuple[str, list[Message]]:
    """Merge consecutive messages of one role (except tool results) and gather the system prompt,
    checking ``budget``'s time as it goes (a chat may hold hundreds of thousands of messages).

    Returns the system messages joined by blank lines, and the merged messages (each keeps the
    fields other than content of the first message of its run, as Ollama's do).
    """
    system: list[str] = []
    runs: list[tuple[Message, list[str]]] = []
    for index, message in enumerate(map(message_from, messages)):
        if budget is not None and index % 1024 == 0:
            budget.check_time()
        if message.role == "system":
            system.append(message.content)
        if runs and runs[-1][0].role == message.role and message.role != "tool":
            runs[-1][1].append(message.content)  # joined once below: merging one by one is quadratic
        else:
            runs.append((message, [message.content]))
    collated = [first if len(contents) == 1 else replace(first, content="\n\n".join(contents))
                for first, contents in runs]
    return "\n\n".join(system), collated


# -- the template ------------------------------------------------------------------------------

_RESPONSE_ACTION_POS = 0  # the {{ .Response }} Ollama appends has no place in the source


def _response_action() -> ActionNode:
    field = FieldNode(_RESPONSE_ACTION_POS, ["Response"])
    return ActionNode(_RESPONSE_ACTION_POS, 0, PipeNode(_RESPONSE_ACTION_POS, 0, cmds=[CommandNode(_RESPONSE_ACTION_POS, [field])]))


class PromptTemplate:
    """An Ollama prompt template (a TEMPLATE layer or Modelfile TEMPLATE) ready to render."""

    def __init__(self, raw: str, template: Template, variables: list[str]) -> None:
        self.raw = raw
        self.template = template
        self.vars = variables

    @classmethod
    def parse(cls, text: str, budget: Budget | None = None) -> PromptTemplate:
        """Parse as Ollama's template.Parse does; TemplateError(message, line, column) if invalid,
        TemplateLimitExceeded if ``budget`` runs out of time.

        Templates that use neither ``.Messages`` nor ``.Response`` get ``{{ .Response }}``
        appended, as Ollama does.
        """
        template = Template.parse(text, budget=budget)
        variables = template_vars(template)
        if "messages" not in variables and "response" not in variables:
            root = template.root
            template = template.with_root(type(root)(root.pos, [*root.nodes, _response_action()]))
            variables = sorted({*variables, "response"})
        return cls(text, template, variables)

    def contains(self, text: str) -> bool:
        return text in self.raw

    def thinking_tags(self) -> tuple[str, str]:
        """The opening and closing thinking tags the template writes, or empty strings."""
        return infer_thinking_tags(self.template.root)

    def capabilities(self) -> list[str]:
        """What the template makes possible: ``tools`` (uses .Tools), ``insert`` (uses .Suffix),
        ``thinking`` (writes .Thinking between tags), in Ollama's order."""
        found = []
        if "tools" in self.vars:
            found.append("tools")
        if "suffix" in self.vars:
            found.append("insert")
        opening, closing = self.thinking_tags()
        if opening and closing:
            found.append("thinking")
        return found

    def render(self, values: PromptValues, *, now: Callable[[], datetime.datetime] | None = None,
               budget: Budget | None = None) -> str:
        """The prompt for a request, byte for byte what Ollama's template.Execute writes, within
        ``budget`` (default limits if none is given)."""
        budget = budget or Budget()
        system, messages = collate(values.messages, budget)
        thinking = {"Think": values.think, "ThinkLevel": values.think_level, "IsThinkSet": values.is_think_set}
        if values.prompt and values.suffix:
            data = {"Prompt": values.prompt, "Suffix": values.suffix, "Response": "", **thinking}
            return self.template.execute(data, now=now, budget=budget)
        if "messages" in self.vars:
            data = {
                "System": system,
                "Messages": template_messages(messages),
                "Tools": template_tools(values.tools),
                "Response": "",
                **thinking,
            }
            return self.template.execute(data, now=now, budget=budget)
        return self._render_legacy(messages, thinking, now, budget)

    def _render_legacy(
        self, messages: list[Message], thinking: dict[str, Any], now: Callable[[], datetime.datetime] | None,
        budget: Budget,
    ) -> str:
        """Run a .System/.Prompt/.Response template once per turn, the last one cut after .Response."""
        parts: list[str] = []
        turn = {"System": "", "Prompt": "", "Response": ""}

        def execute() -> None:
            parts.append(self.template.execute({**turn, **thinking}, now=now, budget=budget))
            turn.update(System="", Prompt="", Response="")

        for message in messages:
            if message.role == "system":
                if turn["Prompt"] or turn["Response"]:
                    execute()
                turn["System"] = message.content
            elif message.role == "user":
                if turn["Response"]:
                    execute()
                turn["Prompt"] = message.content
            elif message.role == "assistant":
                turn["Response"] = message.content
        # Ollama runs the cut tree as a bare template: Go's builtins only, default missingkey,
        # and none of the templates it defines.
        last = self.template.with_root(
            cut_after_response(self.template.root), functions={}, alone=True
        )
        parts.append(last.execute({**turn, **thinking}, missing_key="default", now=now, budget=budget))
        return "".join(parts)

    def __str__(self) -> str:
        return self.raw


DEFAULT_TEMPLATE = PromptTemplate.parse("{{ .Prompt }}")

__all__ = [
    "DEFAULT_TEMPLATE",
    "Message",
    "PromptTemplate",
    "PromptValues",
    "Tool",
    "ToolCall",
    "collate",
    "message_from",
    "template_messages",
    "template_tools",
    "tool_from",
]
