"""Ollama's inference endpoints: /api/generate, /api/chat, /api/embed, /api/embeddings, /api/ps."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response

from corral import FOREVER, ChatRequest, EmbedRequest, GenerateRequest, InvalidRequest, Metrics, ModelNotFound, Reply
from corral.sdk.http import (
    INFERENCE,
    Fields,
    access,
    check_think,
    checked_model_name,
    embedding_inputs,
    go_json,
    go_json_string,
    json_response,
    kernel,
    large_json_response,
    ndjson_lines,
    now_utc,
    parse_keep_alive_value,
    read_json,
    read_request,
    rfc3339,
)

blueprint = Blueprint("ollama_inference", __name__)

GO_FOREVER = dt.timedelta(microseconds=(2**63 - 1) // 1000)


def inference() -> Any:
    return kernel().inference


def _not_found(name: str) -> ModelNotFound:
    return ModelNotFound(name, f"model '{name}' not found")


def _images(value: Any) -> tuple[bytes, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest("images must be a list of base64 strings")
    try:
        return tuple(base64.b64decode(item, validate=True) for item in value)
    except binascii.Error as error:
        raise InvalidRequest(f"illegal base64 data: {error}") from None


def _format(value: Any) -> Any:
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise InvalidRequest(f'invalid format: {value!r}; expected "json" or a valid JSON Schema object')


def _context(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise InvalidRequest("context must be a list of token ids")
    return tuple(value)


def _metrics(metrics: Metrics | None) -> dict[str, int]:
    """Ollama's metrics fields, each left out when zero (Go's omitempty)."""
    if metrics is None:
        return {}
    fields = {
        "total_duration": metrics.total_ns, "load_duration": metrics.load_ns,
        "prompt_eval_count": metrics.prompt_tokens, "prompt_eval_duration": metrics.prompt_ns,
        "eval_count": metrics.eval_tokens, "eval_duration": metrics.eval_ns,
    }
    return {name: value for name, value in fields.items() if value}


def _generate_object(model: str, reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "created_at": now_utc(), "response": reply.text}
    if reply.thinking:
        body["thinking"] = reply.thinking
    body["done"] = reply.done
    if reply.done:
        body["done_reason"] = reply.done_reason
        if reply.context:
            body["context"] = list(reply.context)
        body.update(_metrics(reply.metrics))
    if reply.tool_calls:
        body["tool_calls"] = list(reply.tool_calls)
    return body


def _chat_object(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.thinking:
        message["thinking"] = reply.thinking
    if reply.tool_calls:
        message["tool_calls"] = list(reply.tool_calls)
    body: dict[str, Any] = {"model": model, "created_at": now_utc(), "message": message, "done": reply.done}
    if reply.done:
        body["done_reason"] = reply.done_reason
        body.update(_metrics(reply.metrics))
    return body


class _Lines:
    """The NDJSON lines of one streamed answer. A piece of text alone (every line but the last,
    mostly) is written from parts encoded once per request, the time and the escaped text; any
    other reply is shaped into an object and encoded in full. Both give the same bytes."""

    def __init__(self, model: str, shape: Any) -> None:
        self.model = model
        self.shape = shape
        head = '{"model":' + go_json(model) + ',"created_at":"'
        if shape is _chat_object:
            self.head, self.tail = head, '},"done":false}\n'
            self.middle = '","message":{"role":"assistant","content":'
        else:
            self.head, self.middle, self.tail = head, '","response":', ',"done":false}\n'

    def __call__(self, reply: Reply) -> bytes:
        if reply.done or reply.thinking or reply.tool_calls:
            return (go_json(self.shape(self.model, reply)) + "\n").encode()
        return f"{self.head}{now_utc()}{self.middle}{go_json_string(reply.text)}{self.tail}".encode()


def _combined(replies: list[Reply]) -> Reply:
    last = replies[-1]
    calls = tuple(call for reply in replies for call in reply.tool_calls)
    return Reply(text="".join(r.text for r in replies), thinking="".join(r.thinking for r in replies),
                 tool_calls=calls, done=True, done_reason=last.done_reason, context=last.context, metrics=last.metrics)


async def _respond(replies: AsyncGenerator[Reply, None], shape: Any, model: str, stream: bool) -> Response:
    """Answer with one JSON object or an NDJSON stream. The reply generator is always closed
    explicitly: it holds a slot on a loaded model until it is."""
    try:
        first = await replies.__anext__()
    except BaseException as error:
        await replies.aclose()
        if isinstance(error, ModelNotFound):
            raise _not_found(model) from None
        raise
    if first.done and first.done_reason in ("load", "unload"):
        await replies.aclose()
        return json_response(shape(model, first))  # a single object even when streaming, as Ollama does
    if not stream:
        async with aclosing(replies):
            collected = [first] + [reply async for reply in replies]
        return json_response(shape(model, _combined(collected)))
    return ndjson_lines(replies, first=first, line=_Lines(model, shape))


@blueprint.route("/api/generate", methods=["POST"])
@access(INFERENCE)
async def generate() -> Response:
    request, stream = await read_request("api.GenerateRequest", _generate_request)
    return await _respond(inference().generate(request), _generate_object, request.model, stream)


def _generate_request(body: dict[str, Any]) -> tuple[GenerateRequest, bool]:
    fields = Fields(body, "GenerateRequest")
    request = GenerateRequest(
        model=checked_model_name(fields.model(), empty_status=404), prompt=fields.string("prompt"),
        suffix=fields.string("suffix"),
        system=fields.body.get("system") if isinstance(fields.body.get("system"), str) else None,
        template=fields.string("template") or None, context=_context(fields.body.get("context")),
        raw=fields.boolean("raw"), format=_format(fields.body.get("format")), images=_images(fields.body.get("images")),
        options=fields.obj("options") or {}, keep_alive=parse_keep_alive_value(fields.body.get("keep_alive")),
        think=check_think(fields.body.get("think")),
    )
    return request, fields.boolean("stream", True)


@blueprint.route("/api/chat", methods=["POST"])
@access(INFERENCE)
async def chat() -> Response:
    request, stream = await read_request("api.ChatRequest", _chat_request)
    return await _respond(inference().chat(request), _chat_object, request.model, stream)


def _chat_request(body: dict[str, Any]) -> tuple[ChatRequest, bool]:
    fields = Fields(body, "ChatRequest")
    model = checked_model_name(fields.model(), empty_status=400)
    messages = fields.body.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages must be a list of objects")
    checked = []
    for message in messages:
        if not isinstance(message.get("role", ""), str) or not isinstance(message.get("content", ""), (str, type(None))):
            raise InvalidRequest("each message needs a string role and string content")
        images = _images(message.get("images"))
        checked.append({**message, "role": str(message.get("role", "")).lower(),
                        "content": message.get("content") or "", "images": list(images)})
    tools = fields.body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise InvalidRequest("tools must be a list of objects")
    request = ChatRequest(
        model=model, messages=tuple(checked), tools=tuple(tools), format=_format(fields.body.get("format")),
        options=fields.obj("options") or {}, keep_alive=parse_keep_alive_value(fields.body.get("keep_alive")),
        think=check_think(fields.body.get("think")), truncate=fields.boolean("truncate", True),
    )
    return request, fields.boolean("stream", True)


@blueprint.route("/api/embed", methods=["POST"])
@access(INFERENCE)
async def embed() -> Response:
    request = await read_request("api.EmbedRequest", _embed_request)
    model = request.model
    try:
        result = await inference().embed(request)
    except ModelNotFound:
        raise _not_found(model) from None
    return await large_json_response(lambda: {
        "model": model, "embeddings": result.vectors, "total_duration": result.metrics.total_ns,
        "load_duration": result.metrics.load_ns, "prompt_eval_count": result.prompt_tokens})


def _embed_request(body: dict[str, Any]) -> EmbedRequest:
    fields = Fields(body, "EmbedRequest")
    model = checked_model_name(fields.model(), empty_status=404)
    raw = fields.body.get("input")
    if isinstance(raw, str):
        inputs: tuple[str, ...] = (raw,) if raw else ()
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        inputs = embedding_inputs(raw)
    elif raw is None:
        inputs = ()
    else:
        raise InvalidRequest("invalid input type")
    dimensions = fields.body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
        raise InvalidRequest("json: cannot unmarshal into Go struct field EmbedRequest.dimensions of type int")
    return EmbedRequest(model=model, inputs=inputs, truncate=fields.boolean("truncate", True),
                        dimensions=dimensions, options=fields.obj("options") or {},
                        keep_alive=parse_keep_alive_value(fields.body.get("keep_alive")))


@blueprint.route("/api/embeddings", methods=["POST"])
@access(INFERENCE)
async def embeddings() -> Response:
    fields = Fields(await read_json("api.EmbeddingRequest"), "EmbeddingRequest")
    model = checked_model_name(fields.model(), empty_status=400)
    prompt = fields.string("prompt")
    request = EmbedRequest(model=model, inputs=(prompt,) if prompt else (), normalize=False,
                           options=fields.obj("options") or {},
                           keep_alive=parse_keep_alive_value(fields.body.get("keep_alive")))
    result = await inference().embed(request)
    return json_response({"embedding": result.vectors[0] if result.vectors else []})


@blueprint.route("/api/ps", methods=["GET"])
@access(INFERENCE)
async def ps() -> Response:
    scheduler = kernel().scheduler
    models = []
    now = dt.datetime.now().astimezone()
    for entry in scheduler.loaded():
        info = entry.info
        if entry.keep_alive == FOREVER:
            expires = now + GO_FOREVER  # what Ollama shows: now plus the longest Go duration
        else:
            expires = entry.expires_at or now + dt.timedelta(seconds=entry.keep_alive)
        models.append({
            "name": info.name, "model": info.name, "size": info.size, "digest": info.digest,
            "details": info.details(), "expires_at": rfc3339(expires),
            "size_vram": 0, "context_length": entry.context_length,
            **({"node": entry.node} if entry.node else {}),  # beyond Ollama: a model on another machine
        })
    return json_response({"models": models})
