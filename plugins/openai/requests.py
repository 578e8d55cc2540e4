"""OpenAI request bodies turned into corral.inference requests, as Ollama's openai package does
(FromChatRequest, FromCompleteRequest, the embeddings middleware), with Go's binding errors."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import attrs

from corral import ChatRequest, EmbedRequest, GenerateRequest, InvalidRequest

from corral.sdk.http import embedding_inputs

_JSON_KIND = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}
IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp"))


@attrs.frozen(kw_only=True)
class Streaming:
    stream: bool = False
    include_usage: bool = False


class Body:
    """Typed access to a request object; a wrong type is Go's unmarshal error for ``struct``."""

    def __init__(self, body: Mapping[str, Any], struct: str) -> None:
        self.body = body
        self.struct = struct

    def _fail(self, name: str, value: Any, go_type: str) -> InvalidRequest:
        kind = _JSON_KIND.get(type(value), "value")
        if kind == "number":
            kind = f"number {value}" if go_type.startswith("int") and isinstance(value, float) else kind
        return InvalidRequest(f"json: cannot unmarshal {kind} into Go struct field {self.struct}.{name} of type {go_type}")

    def get(self, name: str, kind: str, go_type: str = "") -> Any:
        """The value of ``name`` checked against ``kind`` (string, bool, int, float64, float32,
        object or array), or None when absent or null. ``go_type`` names the Go type in errors."""
        value = self.body.get(name)
        if value is None:
            return None
        ok = {
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool)
            or isinstance(value, float) and value.is_integer(),
            "float64": isinstance(value, (int, float)) and not isinstance(value, bool),
            "float32": isinstance(value, (int, float)) and not isinstance(value, bool),
            "object": isinstance(value, dict),
            "array": isinstance(value, list),
        }[kind]
        if not ok:
            raise self._fail(name, value, go_type or kind)
        return int(value) if kind == "int" else value


def _streaming(body: Body) -> Streaming:
    options = body.get("stream_options", "object", "openai.StreamOptions") or {}
    include = Body(options, "StreamOptions").get("include_usage", "bool")
    return Streaming(stream=bool(body.get("stream", "bool")), include_usage=bool(include))


def _stops(value: Any, *, strict: bool) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if strict:
            for item in value:
                if not isinstance(item, str):
                    raise InvalidRequest(f"invalid type for 'stop' field: {_go_type(item)}")
        return [item for item in value if isinstance(item, str)]
    return None


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _think(effort: Any) -> bool | str | None:
    """OpenAI's reasoning effort as Ollama's think value, clamped to Ollama's levels."""
    if effort in (None, ""):
        return None
    if effort == "none":
        return False
    if effort == "minimal":
        return "low"
    if effort in ("low", "medium", "high", "max"):
        return effort
    if effort in ("xhigh", "ultra"):
        return "max"
    raise InvalidRequest(f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", '
                         '"xhigh", "ultra", "max", or "none")')


def _decode_image_url(url: str) -> bytes:
    if url.startswith(("http://", "https://")):
        raise InvalidRequest("image URLs are not currently supported, please use base64 encoded data instead")
    if url.startswith("data:;base64,"):
        data = url.removeprefix("data:;base64,")
    else:
        prefix = next((p for p in IMAGE_PREFIXES if url.startswith(p)), None)
        if prefix is None:
            raise InvalidRequest("invalid image input")
        data = url.removeprefix(prefix)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid image input") from None


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as a JSON string) as Ollama's (arguments as an object)."""
    if not isinstance(calls, list) or not all(isinstance(call, dict) for call in calls):
        raise InvalidRequest("json: cannot unmarshal tool_calls into Go struct field Message.tool_calls of type []openai.ToolCall")
    result = []
    for call in calls:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        try:
            arguments = json.loads(function.get("arguments") or "")
        except (TypeError, ValueError, RecursionError):
            raise InvalidRequest("invalid tool call arguments") from None
        result.append({"id": call.get("id") or "", "function": {"name": function.get("name") or "", "arguments": arguments}})
    return result


def _tool_name(messages: list[Any], call_id: str) -> str:
    for message in reversed(messages):
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and call.get("id") == call_id:
                return (call.get("function") or {}).get("name") or ""
    return ""


def _messages(raw: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in raw:
        message = Body(item, "Message")
        role = (message.get("role", "string") or "").lower()
        content = item.get("content")
        reasoning = message.get("reasoning", "string") or ""
        call_id = message.get("tool_call_id", "string") or ""
        tool_name = ""
        if role == "tool":
            tool_name = message.get("name", "string") or (_tool_name(raw, call_id) if call_id else "")
        calls = _tool_calls(item["tool_calls"]) if item.get("tool_calls") is not None else None
        extra = {"tool_calls": calls or [], "tool_name": tool_name, "tool_call_id": call_id, "thinking": reasoning}
        if isinstance(content, str):
            messages.append({"role": role, "content": content, "images": [], **extra})
        elif isinstance(content, list):
            added = len(messages)
            for part in content:
                messages.append({"role": role, **_part(part)})
            if len(messages) > added and calls:
                messages[-1].update(extra)
        elif calls is None:
            raise InvalidRequest(f"invalid message content type: {_go_type(content)}")
        else:
            messages.append({"role": role, "content": "", "images": [], **extra})
    return messages


def _part(part: Any) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest("invalid message format")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequest("invalid message format")
        return {"content": part["text"], "images": []}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise InvalidRequest("invalid message format")
        return {"content": "", "images": [_decode_image_url(url)]}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise InvalidRequest("invalid input_audio format")
        if not isinstance(audio.get("data"), str):
            raise InvalidRequest("invalid input_audio format: missing data")
        try:
            return {"content": "", "images": [base64.b64decode(audio["data"], validate=True)]}
        except (binascii.Error, ValueError) as error:
            raise InvalidRequest(f"invalid input_audio base64 data: {error}") from None
    raise InvalidRequest("invalid message format")


def _format(value: Any) -> Any:
    if value is None:
        return None
    response_format = Body(value, "ResponseFormat")
    kind = (response_format.get("type", "string") or "").strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = response_format.get("json_schema", "object", "openai.JsonSchema")
        if schema is not None:
            return schema.get("schema")
    return None


def _sampling(body: Body, *, strict_stop: bool, float_type: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    stops = _stops(body.body.get("stop"), strict=strict_stop)
    if stops is not None:
        options["stop"] = stops
    max_tokens = body.get("max_completion_tokens", "int")
    if max_tokens is None:
        max_tokens = body.get("max_tokens", "int")
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    temperature = body.get("temperature", float_type)
    options["temperature"] = 1.0 if temperature is None else temperature
    seed = body.get("seed", "int")
    if seed is not None:
        options["seed"] = seed
    return options


def chat_request(raw: Mapping[str, Any]) -> tuple[ChatRequest, Streaming]:
    body = Body(raw, "ChatCompletionRequest")
    model = body.get("model", "string") or ""
    messages = body.get("messages", "array", "[]openai.Message")
    if not messages:
        raise InvalidRequest("[] is too short - 'messages'")
    if not all(isinstance(message, dict) for message in messages):
        raise InvalidRequest("json: cannot unmarshal array into Go struct field ChatCompletionRequest.messages of type openai.Message")
    tools = body.get("tools", "array", "api.Tools") or []
    if not all(isinstance(tool, dict) for tool in tools):
        raise InvalidRequest("json: cannot unmarshal tools into Go struct field ChatCompletionRequest.tools of type api.Tool")
    options = _sampling(body, strict_stop=False, float_type="float64")
    for name in ("frequency_penalty", "presence_penalty"):
        value = body.get(name, "float64")
        if value is not None:
            options[name] = value
    top_p = body.get("top_p", "float64")
    options["top_p"] = 1.0 if top_p is None else top_p
    reasoning = body.get("reasoning", "object", "openai.Reasoning")
    effort = Body(reasoning, "Reasoning").get("effort", "string") if reasoning is not None else \
        body.get("reasoning_effort", "string")
    request = ChatRequest(model=model, messages=tuple(_messages(messages)), tools=tuple(tools),
                          format=_format(body.get("response_format", "object", "openai.ResponseFormat")), options=options, think=_think(effort))
    return request, _streaming(body)


def completion_request(raw: Mapping[str, Any]) -> tuple[GenerateRequest, Streaming]:
    body = Body(raw, "CompletionRequest")
    options = _sampling(body, strict_stop=True, float_type="float32")
    options["frequency_penalty"] = body.get("frequency_penalty", "float32") or 0.0
    options["presence_penalty"] = body.get("presence_penalty", "float32") or 0.0
    options["top_p"] = body.get("top_p", "float32") or 1.0
    request = GenerateRequest(model=body.get("model", "string") or "", prompt=body.get("prompt", "string") or "",
                              suffix=body.get("suffix", "string") or "", options=options)
    return request, _streaming(body)


def embed_request(raw: Mapping[str, Any]) -> tuple[EmbedRequest, str]:
    body = Body(raw, "EmbedRequest")
    model = body.get("model", "string") or ""
    encoding = body.get("encoding_format", "string") or ""
    if encoding and encoding.lower() not in ("float", "base64"):
        raise InvalidRequest(f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', 'base64'].")
    value = raw.get("input")
    if value == "":
        value = [""]
    if value is None or value == []:
        raise InvalidRequest("invalid input")
    if isinstance(value, str):
        inputs: tuple[str, ...] = (value,)
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        inputs = embedding_inputs(value)
    else:
        raise InvalidRequest("invalid input type")
    dimensions = body.get("dimensions", "int")
    return EmbedRequest(model=model, inputs=inputs, dimensions=dimensions or None), encoding.lower()
