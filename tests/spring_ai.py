"""What Spring AI sends and how it reads the answers, transcribed from its source
(spring-projects/spring-ai: models/spring-ai-ollama OllamaApi.java, OllamaChatOptions.java,
OllamaChatModel.java, OllamaEmbeddingModel.java, management/OllamaModelManager.java; and v1.1.8's
models/spring-ai-openai OpenAiApi.java).

Requests are serialized as Jackson serializes those records (``@JsonInclude(NON_NULL)``: nulls
left out, empty lists kept; record components in declaration order; ``Map`` entries in
``java.util.HashMap`` iteration order). Responses are read as Jackson binds them into the records:
every declared field must have the declared Java type, enums only their declared values, and a
record without ``@JsonIgnoreProperties(ignoreUnknown = true)`` must not get any other field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# -- requests -------------------------------------------------------------------------------


def java_string_hash(text: str) -> int:
    """``String.hashCode()``: over UTF-16 code units, in 32-bit arithmetic."""
    value = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return value


def hashmap_order(keys: Iterable[str]) -> list[str]:
    """The iteration order of a ``new HashMap<>()`` after ``put``-ting ``keys`` in this order:
    by bucket (``hash ^ hash >>> 16`` masked by the table size, which doubles past 3/4 full),
    then by insertion within a bucket (a resize keeps that relative order)."""
    keys = list(dict.fromkeys(keys))
    capacity = 16
    while len(keys) > capacity * 3 // 4:
        capacity *= 2
    spread = {key: (h ^ (h >> 16)) & (capacity - 1) for key in keys for h in [java_string_hash(key)]}
    return sorted(keys, key=lambda key: (spread[key], keys.index(key)))


# OllamaChatOptions.toMap(): every option put into a HashMap in this order, then the nulls dropped
# (Collectors.toMap, another HashMap); OllamaApi.ChatRequest.Builder.options drops model, format,
# keep_alive and truncate (filterNonSupportedFields, a third HashMap).
CHAT_OPTION_PUT_ORDER = (
    "numa", "num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "logits_all", "vocab_only",
    "use_mmap", "use_mlock", "num_thread", "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "tfs_z",
    "typical_p", "repeat_last_n", "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty",
    "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline", "stop", "model", "format", "keep_alive", "truncate",
)
NON_SUPPORTED_CHAT_FIELDS = ("model", "format", "keep_alive", "truncate")


def chat_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` map of a ChatRequest built from OllamaChatOptions with ``values`` set."""
    unknown = set(values) - set(CHAT_OPTION_PUT_ORDER)
    assert not unknown, f"not an OllamaChatOptions field: {unknown}"
    first = hashmap_order(CHAT_OPTION_PUT_ORDER)  # every key, nulls included
    second = hashmap_order(key for key in first if values.get(key) is not None)
    third = hashmap_order(key for key in second if key not in NON_SUPPORTED_CHAT_FIELDS)
    return {key: values[key] for key in third}


def jackson(value: Any) -> bytes:
    """Jackson's compact output: non-ASCII as UTF-8, only quotes, backslashes and control
    characters escaped (the ``dict`` order is the caller's: records in declaration order)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def non_null(**fields: Any) -> dict[str, Any]:
    """A record with ``@JsonInclude(NON_NULL)``: components in declaration order, nulls left out."""
    return {name: value for name, value in fields.items() if value is not None}


def ollama_message(role: str, content: str | None = None, *, images: list[str] | None = None,
                   tool_calls: list[Any] | None = None, tool_name: str | None = None,
                   thinking: str | None = None) -> dict[str, Any]:
    return non_null(role=role, content=content, images=images, tool_calls=tool_calls, tool_name=tool_name,
                    thinking=thinking)


def ollama_chat_request(model: str, messages: list[Any], *, stream: bool = False, format: Any = None,
                        keep_alive: str | None = None, tools: list[Any] | None = None,
                        options: Mapping[str, Any] | None = None, think: bool | str | None = None) -> bytes:
    """OllamaApi.ChatRequest as OllamaChatModel.ollamaChatRequest builds it (tools and options
    default to empty, never null)."""
    return jackson(non_null(model=model, messages=messages, stream=stream, format=format, keep_alive=keep_alive,
                            tools=tools or [], options=chat_options(options or {}), think=think))


def ollama_embed_request(model: str, inputs: list[str], *, keep_alive: str | None = None,
                         truncate: bool | None = None, dimensions: int | None = None) -> bytes:
    """OllamaApi.EmbeddingsRequest as OllamaEmbeddingModel builds it: options is the filtered
    toMap() of OllamaEmbeddingOptions, an empty map when only model and request fields are set."""
    return jackson(non_null(model=model, input=inputs, keep_alive=keep_alive, options={}, truncate=truncate,
                            dimensions=dimensions))


def ollama_show_request(model: str) -> bytes:
    return jackson(non_null(model=model))


def ollama_pull_request(model: str) -> bytes:
    # PullModelRequest: boolean insecure and stream are primitives, always written
    return jackson(non_null(model=model, insecure=False, stream=True))


REST_CLIENT_HEADERS = {"Content-Type": "application/json", "Accept": "application/json",
                       "User-Agent": "Java-http-client/17.0.15"}
WEB_CLIENT_HEADERS = {"Content-Type": "application/json", "Accept": "application/json",
                      "User-Agent": "ReactorNetty/1.2.0"}


def openai_chat_request(model: str, messages: list[Any], *, stream: bool = False, temperature: float | None = 0.7,
                        max_tokens: int | None = None, stream_usage: bool = False,
                        response_format: Any = None, tools: list[Any] | None = None) -> bytes:
    """OpenAiApi.ChatCompletionRequest (Spring AI 1.1) as OpenAiChatModel builds it with the
    default options (temperature 0.7) and those given; messages are ChatCompletionMessage
    records (content, role, ...)."""
    return jackson(non_null(
        messages=messages, model=model, max_tokens=max_tokens, response_format=response_format, stream=stream,
        stream_options={"include_usage": True} if stream and stream_usage else None,
        temperature=temperature, tools=tools))


def openai_embedding_request(model: str, inputs: list[str]) -> bytes:
    return jackson(non_null(input=inputs, model=model, encoding_format="float"))


# -- responses ------------------------------------------------------------------------------

INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


class Record:
    def __init__(self, name: str, fields: Mapping[str, Any], *, ignore_unknown: bool) -> None:
        self.name = name
        self.fields = dict(fields)
        self.ignore_unknown = ignore_unknown


class Enum:
    def __init__(self, *values: str) -> None:
        self.values = values


def List(item: Any) -> tuple[str, Any]:  # noqa: N802 - reads like the Java type
    return ("List", item)


def Map(value: Any) -> tuple[str, Any]:  # noqa: N802
    return ("Map", value)


ROLE = Enum("system", "user", "assistant", "tool")
TOOL_CALL_FUNCTION = Record("ToolCallFunction", {"name": "String", "arguments": Map("Object"), "index": "Integer"},
                            ignore_unknown=False)
TOOL_CALL = Record("ToolCall", {"id": "String", "function": TOOL_CALL_FUNCTION}, ignore_unknown=False)
MESSAGE = Record("Message", {"role": ROLE, "content": "String", "images": List("String"),
                             "tool_calls": List(TOOL_CALL), "tool_name": "String", "thinking": "String"},
                 ignore_unknown=True)
CHAT_RESPONSE = Record("ChatResponse", {
    "model": "String", "created_at": "Instant", "message": MESSAGE, "done_reason": "String", "done": "Boolean",
    "total_duration": "Long", "load_duration": "Long", "prompt_eval_count": "Integer",
    "prompt_eval_duration": "Long", "eval_count": "Integer", "eval_duration": "Long"}, ignore_unknown=True)
EMBEDDINGS_RESPONSE = Record("EmbeddingsResponse", {
    "model": "String", "embeddings": List("float[]"), "total_duration": "Long", "load_duration": "Long",
    "prompt_eval_count": "Integer"}, ignore_unknown=True)
DETAILS = Record("Details", {"parent_model": "String", "format": "String", "family": "String",
                             "families": List("String"), "parameter_size": "String",
                             "quantization_level": "String"}, ignore_unknown=True)
MODEL = Record("Model", {"name": "String", "model": "String", "modified_at": "Instant", "size": "Long",
                         "digest": "String", "details": DETAILS}, ignore_unknown=True)
LIST_MODEL_RESPONSE = Record("ListModelResponse", {"models": List(MODEL)}, ignore_unknown=True)
SHOW_MODEL_RESPONSE = Record("ShowModelResponse", {
    "license": "String", "modelfile": "String", "parameters": "String", "template": "String", "system": "String",
    "details": DETAILS, "messages": List(MESSAGE), "model_info": Map("Object"), "projector_info": Map("Object"),
    "capabilities": List("String"), "modified_at": "Instant"}, ignore_unknown=True)
PROGRESS_RESPONSE = Record("ProgressResponse", {"status": "String", "digest": "String", "total": "Long",
                                                "completed": "Long"}, ignore_unknown=True)

# Spring AI 1.1's own OpenAI client (OpenAiApi); 2.0 uses the official openai-java SDK instead
FINISH_REASON = Enum("", "stop", "length", "content_filter", "tool_calls", "tool_call")
OPENAI_FUNCTION = Record("ChatCompletionFunction", {"name": "String", "arguments": "String"}, ignore_unknown=True)
OPENAI_TOOL_CALL = Record("ToolCall", {"index": "Integer", "id": "String", "type": "String",
                                       "function": OPENAI_FUNCTION}, ignore_unknown=True)
OPENAI_MESSAGE = Record("ChatCompletionMessage", {
    "content": "Object", "role": ROLE, "name": "String", "tool_call_id": "String", "tool_calls": List(OPENAI_TOOL_CALL),
    "refusal": "String", "audio": "Object", "annotations": List("Object"), "reasoning_content": "String"},
    ignore_unknown=True)
USAGE = Record("Usage", {"completion_tokens": "Integer", "prompt_tokens": "Integer", "total_tokens": "Integer",
                         "prompt_tokens_details": "Object", "completion_tokens_details": "Object"}, ignore_unknown=True)
CHOICE = Record("Choice", {"finish_reason": FINISH_REASON, "index": "Integer", "message": OPENAI_MESSAGE,
                           "logprobs": "Object"}, ignore_unknown=True)
CHAT_COMPLETION = Record("ChatCompletion", {
    "id": "String", "choices": List(CHOICE), "created": "Long", "model": "String", "service_tier": "String",
    "system_fingerprint": "String", "object": "String", "usage": USAGE}, ignore_unknown=True)
CHUNK_CHOICE = Record("ChunkChoice", {"finish_reason": FINISH_REASON, "index": "Integer", "delta": OPENAI_MESSAGE,
                                      "logprobs": "Object"}, ignore_unknown=True)
CHAT_COMPLETION_CHUNK = Record("ChatCompletionChunk", {
    "id": "String", "choices": List(CHUNK_CHOICE), "created": "Long", "model": "String", "service_tier": "String",
    "system_fingerprint": "String", "object": "String", "usage": USAGE}, ignore_unknown=True)
EMBEDDING = Record("Embedding", {"index": "Integer", "embedding": "float[]", "object": "String"}, ignore_unknown=True)
EMBEDDING_LIST = Record("EmbeddingList", {"object": "String", "data": List(EMBEDDING), "model": "String",
                                          "usage": USAGE}, ignore_unknown=True)


def bind(value: Any, java_type: Any, path: str = "$") -> Any:
    """Check that Jackson would bind ``value`` to ``java_type``; return the value."""
    if value is None:
        return None  # every component here is a reference type
    if isinstance(java_type, Record):
        assert isinstance(value, dict), f"{path}: {java_type.name} needs an object, got {value!r}"
        if not java_type.ignore_unknown:
            unknown = set(value) - set(java_type.fields)
            assert not unknown, f"{path}: unrecognized field(s) {sorted(unknown)} for {java_type.name}"
        for name, field_type in java_type.fields.items():
            bind(value.get(name), field_type, f"{path}.{name}")
        return value
    if isinstance(java_type, Enum):
        assert value in java_type.values, f"{path}: {value!r} is not one of {java_type.values}"
        return value
    if isinstance(java_type, tuple):
        kind, item = java_type
        if kind == "List":
            assert isinstance(value, list), f"{path}: List needs an array, got {value!r}"
            for index, element in enumerate(value):
                bind(element, item, f"{path}[{index}]")
        else:
            assert isinstance(value, dict), f"{path}: Map needs an object, got {value!r}"
            for key, element in value.items():
                bind(element, item, f"{path}.{key}")
        return value
    checks = {
        "String": lambda v: isinstance(v, str),
        "Boolean": lambda v: isinstance(v, bool),
        "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31,
        "Long": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63,
        "Instant": lambda v: isinstance(v, str) and INSTANT.match(v) is not None,
        "float[]": lambda v: isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                         for x in v),
        "Object": lambda v: True,
    }
    assert checks[java_type](value), f"{path}: {value!r} does not bind to {java_type}"
    return value
