"""The /v1 blueprint: chat completions, completions, embeddings and models in OpenAI's shapes.

Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with Ollama's status; a
failure after a stream has started is one more ``data: {"error": ...}`` event, which OpenAI's
clients raise as an error.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from corral import CorralError, InvalidName, ModelNotFound, Reply, parse_reference
from corral.sdk.http import (INFERENCE, access, checked_model_name, kernel, large_json_response, openai_error,
                             read_request, sse_stream)
from corral.sdk.http import openai_json_response as json_response

from . import responses
from .requests import Streaming, chat_request, completion_request, embed_request

log = logging.getLogger("corral.openai")

blueprint = Blueprint("openai", __name__, url_prefix="/v1")

@blueprint.errorhandler(CorralError)
async def corral_error(error: CorralError) -> Response:
    return json_response(openai_error(error.message, error.status), error.status)


@blueprint.errorhandler(Exception)
async def unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        status = error.code or 500
        return json_response(openai_error(error.description or error.name, status), status)
    log.exception("%s %s failed", request.method, request.path)
    return json_response(openai_error(f"internal error: {type(error).__name__}: {error}", 500), 500)


async def first_reply(replies: AsyncGenerator[Reply, None], model: str) -> Reply:
    """The first reply, so that errors before any output get their own status."""
    try:
        return await replies.__anext__()
    except BaseException as error:
        await replies.aclose()
        if isinstance(error, ModelNotFound):
            raise ModelNotFound(model, f"model '{model}' not found") from None
        raise


def combined(first: Reply, rest: list[Reply]) -> Reply:
    replies = [first, *rest]
    last = replies[-1]
    return Reply(text="".join(r.text for r in replies), thinking="".join(r.thinking for r in replies),
                 tool_calls=tuple(call for r in replies for call in r.tool_calls), done=True,
                 done_reason=last.done_reason, metrics=last.metrics)


@blueprint.route("/chat/completions", methods=["POST"])
@access(INFERENCE)
async def chat_completions() -> Response:
    chat, streaming = await read_request("openai.ChatCompletionRequest", chat_request, empty="EOF")
    model = checked_model_name(chat.model, empty_status=400)
    id_ = f"chatcmpl-{random.randrange(999)}"
    replies = kernel().inference.chat(chat)
    first = await first_reply(replies, model)
    created = int(time.time())
    if not streaming.stream:
        async with aclosing(replies):
            rest = [reply async for reply in replies]
        return json_response(responses.chat_completion(id_, model, created, combined(first, rest)))
    return sse_stream(_chat_events(id_, model, created, first, replies, streaming))


async def _chat_events(id_: str, model: str, created: int, first: Reply, replies: AsyncGenerator[Reply, None],
                       streaming: Streaming) -> AsyncGenerator[dict[str, Any], None]:
    sent = tool_call_sent = False
    async with aclosing(replies):
        reply: Reply | None = first
        while reply is not None:
            # the last reply only carries the metrics: no empty content chunk for it, unless it is the only one
            trailer = reply.done and sent and not (reply.text or reply.thinking or reply.tool_calls)
            if not trailer:
                for chunk in responses.stream_chunks(id_, model, created, reply, include_role=not sent):
                    tool_call_sent = tool_call_sent or "tool_calls" in chunk["choices"][0]["delta"]
                    yield chunk
                sent = True
            if reply.done:
                finish = responses.finish_chunk(id_, model, created, reply, tool_call_sent=tool_call_sent)
                yield finish
                if streaming.include_usage:
                    yield responses.usage_chunk(finish, reply)
                return
            reply = await anext(replies, None)


@blueprint.route("/completions", methods=["POST"])
@access(INFERENCE)
async def completions() -> Response:
    generate, streaming = await read_request("openai.CompletionRequest", completion_request, empty="EOF")
    model = checked_model_name(generate.model, empty_status=404)
    id_ = f"cmpl-{random.randrange(999)}"
    replies = kernel().inference.generate(generate)
    first = await first_reply(replies, model)
    if not streaming.stream:
        async with aclosing(replies):
            rest = [reply async for reply in replies]
        return json_response(responses.completion(id_, model, int(time.time()), combined(first, rest)))
    return sse_stream(_completion_events(id_, model, first, replies, streaming))


async def _completion_events(id_: str, model: str, first: Reply, replies: AsyncGenerator[Reply, None],
                             streaming: Streaming) -> AsyncGenerator[dict[str, Any], None]:
    async with aclosing(replies):
        reply: Reply | None = first
        while reply is not None:
            chunk = responses.completion_chunk(id_, model, int(time.time()), reply)
            if streaming.include_usage:
                chunk["usage"] = responses.usage(None)  # Ollama puts zeros on every chunk, the counts on the last
            yield chunk
            if reply.done:
                if streaming.include_usage:
                    yield {**chunk, "choices": [], "usage": responses.usage(reply.metrics)}
                return
            reply = await anext(replies, None)


@blueprint.route("/embeddings", methods=["POST"])
@access(INFERENCE)
async def embeddings() -> Response:
    embed, encoding = await read_request("openai.EmbedRequest", embed_request, empty="EOF")
    model = checked_model_name(embed.model, empty_status=404)
    try:
        result = await kernel().inference.embed(embed)
    except ModelNotFound:
        raise ModelNotFound(model, f"model '{model}' not found") from None
    return await large_json_response(
        lambda: responses.embedding_list(model, result.vectors, result.prompt_tokens, encoding), json_response)


def _owner(name: str) -> str:
    try:
        return parse_reference(name).namespace
    except InvalidName:
        return ""


@blueprint.route("/models", methods=["GET"])
@access(INFERENCE)
async def list_models() -> Response:
    models = await kernel().store.list()
    data = [responses.model_object(info.name, int(info.modified_at.timestamp()), _owner(info.name)) for info in models]
    return json_response({"object": "list", "data": data})


@blueprint.route("/models/<path:name>", methods=["GET"])
@access(INFERENCE)
async def retrieve_model(name: str) -> Response:
    checked_model_name(name, empty_status=404)
    try:
        info = await kernel().store.get(name)
    except ModelNotFound:
        raise ModelNotFound(name, f"model '{name}' not found") from None
    return json_response(responses.model_object(name, int(info.modified_at.timestamp()), _owner(name)))

