"""corral.inference replies as OpenAI's objects, field for field as Ollama's openai package builds
them (ToChatCompletion, ToStreamChunks, FinishChunk, ToCompletion, ToEmbeddingList, ToModel)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from corral import Metrics, Reply
from corral.sdk.gofmt import go_json

FINGERPRINT = "fp_ollama"


def usage(metrics: Metrics | None) -> dict[str, int]:
    prompt = metrics.prompt_tokens if metrics else 0
    completion = metrics.eval_tokens if metrics else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def tool_calls(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ollama's tool calls with the arguments as a JSON string, as OpenAI sends them."""
    result = []
    for call in calls:
        function = call.get("function") or {}
        result.append({
            "id": call.get("id") or "", "index": function.get("index", 0), "type": "function",
            "function": {"name": function.get("name") or "", "arguments": go_json(function.get("arguments") or {})},
        })
    return result


def chat_completion(id_: str, model: str, created: int, reply: Reply) -> dict[str, Any]:
    calls = tool_calls(reply.tool_calls)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.thinking:
        message["reasoning"] = reply.thinking
    if calls:
        message["tool_calls"] = calls
    reason = reply.done_reason or None
    if reason == "stop" and calls:
        reason = "tool_calls"
    return {
        "id": id_, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": usage(reply.metrics),
    }


def _chunk(id_: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def stream_chunks(id_: str, model: str, created: int, reply: Reply, *, include_role: bool) -> Iterator[dict[str, Any]]:
    """One chunk, or two when thinking comes with content or tool calls: the reasoning first."""
    role = {"role": "assistant"} if include_role else {}
    calls = {"tool_calls": tool_calls(reply.tool_calls)} if reply.tool_calls else {}
    if reply.thinking and (reply.text or reply.tool_calls):
        yield _chunk(id_, model, created, {**role, "reasoning": reply.thinking})
        yield _chunk(id_, model, created, {"content": reply.text, **calls})
        return
    reasoning = {"reasoning": reply.thinking} if reply.thinking else {}
    yield _chunk(id_, model, created, {**role, "content": reply.text, **reasoning, **calls})


def finish_chunk(id_: str, model: str, created: int, reply: Reply, *, tool_call_sent: bool) -> dict[str, Any]:
    reason = reply.done_reason or "stop"
    if reason == "stop" and tool_call_sent:
        reason = "tool_calls"
    return _chunk(id_, model, created, {}, reason)


def usage_chunk(finish: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {**finish, "choices": [], "usage": usage(reply.metrics)}


def completion(id_: str, model: str, created: int, reply: Reply) -> dict[str, Any]:
    return {
        "id": id_, "object": "text_completion", "created": created, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": reply.text, "index": 0, "finish_reason": reply.done_reason or None}],
        "usage": usage(reply.metrics),
    }


def completion_chunk(id_: str, model: str, created: int, reply: Reply) -> dict[str, Any]:
    return {
        "id": id_, "object": "text_completion", "created": created,
        "choices": [{"text": reply.text, "index": 0, "finish_reason": reply.done_reason if reply.done else None}],
        "model": model, "system_fingerprint": FINGERPRINT,
    }


def embedding_list(model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int, encoding: str) -> dict[str, Any]:
    data = []
    for index, vector in enumerate(vectors):
        value: Any = list(vector)
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "embedding": value, "index": index})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def model_object(id_: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": id_, "object": "model", "created": created, "owned_by": owned_by}
