"""/v1 through the real `openai` client and raw HTTP, against a real server with SmolLM2."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from servers import TOOLS_TEMPLATE, running_server, runner_pids, store_with_smollm2
from support import clean_environ

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0, "seed": 42}
HTTP = httpx.Client(timeout=600)
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CALL_SHAPE = {"type": "object", "properties": {
    "name": {"enum": ["get_weather"]},
    "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    "required": ["name", "arguments"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    root = tmp_path_factory.mktemp("openai") / "models"
    store_with_smollm2(root, smollm2_gguf)
    store_with_smollm2(root, smollm2_gguf, ("registry.ollama.ai", "library", "smol-tools", "latest"),
                       template=TOOLS_TEMPLATE)
    return root


@pytest.fixture(scope="module")
def url(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**clean_environ(tmp_path_factory.mktemp("home")), "OLLAMA_MODELS": str(store)}
    with running_server(env) as server:
        yield server


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="any key is accepted", timeout=600, max_retries=0)


def sse(response: httpx.Response) -> list[str]:
    """The data of each server-sent event, checking the framing."""
    text = response.text
    assert text.endswith("data: [DONE]\n\n")
    frames = text.split("\n\n")[:-1]
    assert all(frame.startswith("data: ") and "\n" not in frame for frame in frames)
    return [frame.removeprefix("data: ") for frame in frames]


def test_chat_completion(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=24, **GREEDY)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "smol" and answer.system_fingerprint == "fp_ollama"
    choice = answer.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length") and choice.message.tool_calls is None
    assert answer.usage.prompt_tokens > 10 and answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    again = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": QUESTION}],
                                           max_tokens=24, **GREEDY)
    assert again.choices[0].message.content == choice.message.content  # seed and temperature reach the sampler

    short = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Tell me a long story."}],
                                           max_completion_tokens=3, **GREEDY)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    stopped = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": QUESTION}],
                                             stop="Paris", max_tokens=24, **GREEDY)
    assert "Paris" not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"


def test_chat_stream_matches_the_whole_answer(client: openai.OpenAI, url: str) -> None:
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model="smol", messages=messages, max_tokens=24, **GREEDY)
    chunks = list(client.chat.completions.create(model="smol", messages=messages, max_tokens=24, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    assert len({chunk.id for chunk in chunks}) == 1 and len({chunk.created for chunk in chunks}) == 1
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.choices[0].delta.role is None for chunk in chunks[1:-2])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert text == whole.choices[0].message.content
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == whole.choices[0].finish_reason
    assert finish.choices[0].delta.content is None and finish.usage is None
    assert usage.choices == [] and usage.usage.completion_tokens == whole.usage.completion_tokens
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks[:-2])

    response = HTTP.post(f"{url}/v1/chat/completions", json={
        "model": "smol", "messages": messages, "max_tokens": 4, "stream": True, **GREEDY})
    assert response.headers["content-type"] == "text/event-stream"
    frames = sse(response)
    assert frames[-1] == "[DONE]"
    objects = [json.loads(frame) for frame in frames[:-1]]
    assert objects[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert all("usage" not in chunk for chunk in objects)


def test_tool_calls_have_json_string_arguments(client: openai.OpenAI, url: str) -> None:
    request = {"model": "smol-tools", "messages": [{"role": "user", "content": "What is the weather in Tokyo?"}],
               "tools": TOOLS, "tool_choice": "auto", "max_tokens": 40,
               "response_format": {"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SHAPE}},
               **GREEDY}
    answer = client.chat.completions.create(**request)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(call.function.arguments, str) and isinstance(json.loads(call.function.arguments)["city"], str)

    chunks = list(client.chat.completions.create(**request, stream=True))
    deltas = [chunk.choices[0].delta.tool_calls for chunk in chunks if chunk.choices and chunk.choices[0].delta.tool_calls]
    assert len(deltas) == 1 and deltas[0][0].index == 0
    assert deltas[0][0].function.arguments == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    follow = client.chat.completions.create(model="smol-tools", tools=TOOLS, max_tokens=10, **GREEDY, messages=[
        {"role": "user", "content": "What is the weather in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 22 degrees"}])
    assert follow.choices[0].message.role == "assistant"
    bad = HTTP.post(f"{url}/v1/chat/completions", json={"model": "smol-tools", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]})
    assert (bad.status_code, bad.json()["error"]["message"]) == (400, "invalid tool call arguments")


def test_json_output(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"]}
    shaped = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Tell me about Paris as JSON."}], max_tokens=300,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        **GREEDY)
    value = json.loads(shaped.choices[0].message.content)
    assert isinstance(value["city"], str) and isinstance(value["population"], int)
    # json_object mode: the answer is JSON from its first character (this small model may not finish it)
    ask = {"model": "smol", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 12, **GREEDY}
    loose = client.chat.completions.create(**ask, response_format={"type": "json_object"})
    plain = client.chat.completions.create(**ask)
    assert loose.choices[0].message.content.lstrip().startswith("{")
    assert not plain.choices[0].message.content.lstrip().startswith("{")


def test_completions(client: openai.OpenAI, url: str) -> None:
    answer = client.completions.create(model="smol", prompt=QUESTION, max_tokens=24, **GREEDY)
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-")
    assert "Paris" in answer.choices[0].text and answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    chunks = list(client.completions.create(model="smol", prompt=QUESTION, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY))
    assert "".join(chunk.choices[0].text for chunk in chunks[:-1]) == answer.choices[0].text
    assert chunks[-2].choices[0].finish_reason == answer.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    bad = HTTP.post(f"{url}/v1/completions", json={"model": "smol", "prompt": "x", "stop": [1, 2]})
    assert (bad.status_code, bad.json()["error"]["message"]) == (400, "invalid type for 'stop' field: float64")


def test_embeddings(client: openai.OpenAI, url: str) -> None:
    # the client asks for base64 and decodes it
    result = client.embeddings.create(model="smol", input=["why is the sky blue?", "hello"])
    assert result.object == "list" and result.model == "smol" and [d.index for d in result.data] == [0, 1]
    vector = result.data[0].embedding
    assert len(vector) == 576 and math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-4)
    assert result.usage.prompt_tokens > 2 and result.usage.total_tokens == result.usage.prompt_tokens
    floats = client.embeddings.create(model="smol", input="why is the sky blue?", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vector, abs=1e-6)
    short = client.embeddings.create(model="smol", input="why is the sky blue?", dimensions=64, encoding_format="float")
    assert len(short.data[0].embedding) == 64
    raw = HTTP.post(f"{url}/v1/embeddings", json={"model": "smol", "input": "hi", "encoding_format": "base64"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert len(struct.unpack(f"<{len(packed) // 4}f", packed)) == 576


def test_models_list_and_retrieve(client: openai.OpenAI, url: str) -> None:
    models = client.models.list().data
    assert sorted(model.id for model in models) == ["smol-tools:latest", "smol:latest"]
    assert all(model.object == "model" and model.owned_by == "library" and model.created > 1_600_000_000
               for model in models)
    model = client.models.retrieve("smol")
    assert (model.id, model.object, model.owned_by) == ("smol", "model", "library")
    assert client.models.retrieve("smol:latest").created == next(m.created for m in models if m.id == "smol:latest")
    with pytest.raises(openai.NotFoundError) as error:
        client.models.retrieve("nothere")
    assert error.value.status_code == 404
    assert error.value.body == {"message": "model 'nothere' not found", "type": "not_found_error",
                                "param": None, "code": None}


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/v1/chat/completions", '{"model": "nothere", "messages": [{"role": "user", "content": "hi"}]}', 404,
     "model 'nothere' not found"),
    ("/v1/completions", '{"model": "nothere", "prompt": "hi"}', 404, "model 'nothere' not found"),
    ("/v1/embeddings", '{"model": "nothere", "input": "hi"}', 404, "model 'nothere' not found"),
    ("/v1/chat/completions", "{", 400, "invalid JSON"),
    ("/v1/chat/completions", "", 400, "EOF"),
    ("/v1/chat/completions", "[1]", 400, "json: cannot unmarshal array into Go value of type openai.ChatCompletionRequest"),
    ("/v1/chat/completions", '{"model": "smol", "messages": []}', 400, "[] is too short - 'messages'"),
    ("/v1/chat/completions", '{"model": "smol", "messages": [{"role": "user", "content": 2}]}', 400,
     "invalid message content type: float64"),
    ("/v1/chat/completions", '{"model": "smol", "max_tokens": "ten", "messages": [{"role": "user", "content": "x"}]}',
     400, "json: cannot unmarshal string into Go struct field ChatCompletionRequest.max_tokens of type int"),
    ("/v1/chat/completions", '{"model": "", "messages": [{"role": "user", "content": "x"}]}', 400, "model is required"),
    ("/v1/chat/completions", '{"model": "bad name!", "messages": [{"role": "user", "content": "x"}]}', 400,
     "invalid model name"),
    ("/v1/chat/completions", '{"model": "smol", "reasoning_effort": "huge", "messages": [{"role": "user", "content": "x"}]}',
     400, 'invalid reasoning value: "huge"'),
    ("/v1/chat/completions", '{"model": "smol", "reasoning_effort": "high", "messages": [{"role": "user", "content": "x"}]}',
     400, '"smol" does not support thinking'),
    ("/v1/chat/completions", '{"model": "smol", "tools": [{"type": "function", "function": {"name": "f"}}], '
     '"messages": [{"role": "user", "content": "x"}]}', 400, "registry.ollama.ai/library/smol:latest does not support tools"),
    ("/v1/chat/completions", '{"model": "smol", "messages": [{"role": "user", "content": [{"type": "image_url", '
     '"image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}', 400,
     "registry.ollama.ai/library/smol:latest does not support vision"),
    ("/v1/chat/completions", '{"model": "smol", "messages": [{"role": "user", "content": [{"type": "image_url", '
     '"image_url": "https://example.com/cat.png"}]}]}', 400, "image URLs are not currently supported"),
    ("/v1/chat/completions", '{"model": "smol", "messages": [{"role": "user", "content": [{"type": "image_url", '
     '"image_url": {"url": "data:text/plain;base64,aGVsbG8="}}]}]}', 400, "invalid image input"),
    ("/v1/chat/completions", '{"model": "smol", "messages": [{"role": "user", "content": [{"type": "video"}]}]}', 400,
     "invalid message format"),
    ("/v1/embeddings", '{"model": "smol", "input": []}', 400, "invalid input"),
    ("/v1/embeddings", '{"model": "smol", "input": [1, 2]}', 400, "invalid input type"),
    ("/v1/embeddings", '{"model": "smol", "input": ["", "", ""]}', 400, "invalid input: input[0] is an empty string"),
    ("/v1/chat/completions", '{"model": "smol", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}',
     400, "invalid JSON: NaN is not a JSON value"),
    ("/v1/embeddings", '{"model": "smol", "input": "x", "encoding_format": "int8"}', 400,
     "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
])
def test_errors_have_openais_shape(url: str, path: str, body: str, status: int, message: str) -> None:
    response = HTTP.post(f"{url}{path}", content=body, headers={"Authorization": "Bearer sk-anything"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["message"].startswith(message)
    assert error["type"] == {400: "invalid_request_error", 404: "not_found_error"}[status]
    assert (error["param"], error["code"]) == (None, None)


def test_client_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nothere", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="smol", messages=[])
    assert error.value.body["message"] == "[] is too short - 'messages'"


def test_a_failure_mid_stream_is_an_error_event(client: openai.OpenAI, store: Path) -> None:
    stream = client.chat.completions.create(
        model="smol", stream=True, max_tokens=2000, **GREEDY,
        messages=[{"role": "user", "content": "Count from 1 to 1000, one number per line."}])
    with pytest.raises(openai.APIError) as error:
        for index, _chunk in enumerate(stream):
            if index == 1:
                for pid in runner_pids(store):
                    os.kill(pid, signal.SIGKILL)
    assert "llama runner process has terminated" in error.value.message
    answer = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=24, **GREEDY)
    assert "Paris" in answer.choices[0].message.content
