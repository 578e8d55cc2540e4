"""Spring AI's requests, replayed byte for byte as its source builds them, against a real server
with SmolLM2; every answer must bind into Spring AI's records (see spring_ai.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import spring_ai as spring
from servers import TOOLS_TEMPLATE, WEATHER_CALL_SHAPE, WEATHER_TOOLS, running_server, store_with_smollm2
from support import clean_environ

QUESTION = "What is the capital of France?"
HTTP = httpx.Client(timeout=600)


def test_option_maps_come_out_in_java_hashmap_order() -> None:
    # the order a JDK 17 printed for OllamaChatOptions.toMap() through filterNonSupportedFields
    options = spring.chat_options({"temperature": 0.7, "top_k": 40, "seed": 42, "num_predict": 24, "stop": ["x"],
                                   "model": "smol", "keep_alive": "5m"})
    assert list(options) == ["seed", "stop", "top_k", "temperature", "num_predict"]
    assert spring.java_string_hash("hello") == 99162322  # "hello".hashCode()
    body = spring.ollama_chat_request("smol", [spring.ollama_message("user", "Hi")], keep_alive="5m",
                                      options={"temperature": 0.7, "model": "smol"})
    assert body == (b'{"model":"smol","messages":[{"role":"user","content":"Hi"}],"stream":false,'
                    b'"keep_alive":"5m","tools":[],"options":{"temperature":0.7}}')


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("spring") / "models"
    store_with_smollm2(root, smollm2_gguf)
    store_with_smollm2(root, smollm2_gguf, ("registry.ollama.ai", "library", "smol-tools", "latest"),
                       template=TOOLS_TEMPLATE)
    env = {**clean_environ(tmp_path_factory.mktemp("home")), "OLLAMA_MODELS": str(root)}
    with running_server(env) as server:
        yield server


def rest(url: str, method: str, path: str, body: bytes | None = None) -> httpx.Response:
    """A call of OllamaApi's RestClient (chat, embed, tags, show)."""
    return HTTP.request(method, f"{url}{path}", content=body, headers=spring.REST_CLIENT_HEADERS)


def ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line]


@pytest.mark.slow
def test_pull_strategy_when_missing_finds_the_local_model(url: str) -> None:
    # OllamaModelManager.isModelAvailable: GET /api/tags, then compare name with "smol:latest"
    response = rest(url, "GET", "/api/tags")
    assert response.status_code == 200
    models = spring.bind(response.json(), spring.LIST_MODEL_RESPONSE)["models"]
    assert "smol:latest" in [model["name"] for model in models]
    shown = rest(url, "POST", "/api/show", spring.ollama_show_request("smol"))
    assert shown.status_code == 200
    info = spring.bind(shown.json(), spring.SHOW_MODEL_RESPONSE)
    assert info["capabilities"] == ["completion"] and info["details"]["family"] == "llama"


@pytest.mark.slow
def test_chat_call_with_options_and_keep_alive(url: str) -> None:
    options = {"temperature": 0.0, "seed": 42, "num_predict": 24, "top_k": 40, "top_p": 0.9, "repeat_penalty": 1.1,
               "num_ctx": 2048, "model": "smol", "keep_alive": "5m"}
    messages = [spring.ollama_message("system", "You are a helpful assistant."),
                spring.ollama_message("user", QUESTION)]
    body = spring.ollama_chat_request("smol", messages, keep_alive="5m", options=options, think=False)
    response = rest(url, "POST", "/api/chat", body)
    assert response.status_code == 200, response.text
    answer = spring.bind(response.json(), spring.CHAT_RESPONSE)
    assert answer["message"]["role"] == "assistant" and "Paris" in answer["message"]["content"]
    assert answer["done"] is True and answer["done_reason"] == "stop"
    # OllamaChatModel reads finish reason and usage only when both counts are present
    assert answer["prompt_eval_count"] > 0 and answer["eval_count"] > 0
    running = HTTP.get(f"{url}/api/ps").json()["models"]
    smol = next(model for model in running if model["name"] == "smol:latest")
    expires = dt.datetime.fromisoformat(smol["expires_at"].replace("Z", "+00:00"))
    left = expires - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(minutes=4) < left <= dt.timedelta(minutes=5)
    assert smol["context_length"] == 2048

    stream = HTTP.post(f"{url}/api/chat", headers=spring.WEB_CLIENT_HEADERS,
                       content=spring.ollama_chat_request("smol", messages, stream=True, keep_alive="5m",
                                                          options=options, think=False))
    assert stream.headers["content-type"] == "application/x-ndjson"
    chunks = [spring.bind(chunk, spring.CHAT_RESPONSE) for chunk in ndjson(stream)]
    assert all(chunk["done"] is False for chunk in chunks[:-1]) and chunks[-1]["done"] is True
    assert "".join(chunk["message"]["content"] for chunk in chunks) == answer["message"]["content"]


@pytest.mark.slow
def test_structured_output_schema(url: str) -> None:
    # BeanOutputConverter's schema (victools, draft 2020-12, no additional properties) as format
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    body = spring.ollama_chat_request("smol", [spring.ollama_message("user", "Tell me about Paris as JSON.")],
                                      format=schema, options={"temperature": 0.0, "seed": 42, "num_predict": 300})
    answer = spring.bind(rest(url, "POST", "/api/chat", body).json(), spring.CHAT_RESPONSE)
    value = json.loads(answer["message"]["content"])
    assert isinstance(value["city"], str) and isinstance(value["population"], int)


@pytest.mark.slow
def test_tool_calling_round_trip(url: str) -> None:
    tools, call_shape = WEATHER_TOOLS, WEATHER_CALL_SHAPE
    ask = spring.ollama_message("user", "What is the weather in Tokyo?")
    body = spring.ollama_chat_request("smol-tools", [ask], tools=tools, format=call_shape,
                                      options={"temperature": 0.0, "seed": 42, "num_predict": 40})
    answer = spring.bind(rest(url, "POST", "/api/chat", body).json(), spring.CHAT_RESPONSE)
    call = answer["message"]["tool_calls"][0]  # ToolCall and ToolCallFunction accept no other fields
    assert call["function"]["name"] == "get_weather" and isinstance(call["function"]["arguments"]["city"], str)

    streamed = HTTP.post(f"{url}/api/chat", headers=spring.WEB_CLIENT_HEADERS,
                         content=spring.ollama_chat_request("smol-tools", [ask], stream=True, tools=tools,
                                                            format=call_shape,
                                                            options={"temperature": 0.0, "seed": 42, "num_predict": 40}))
    chunks = [spring.bind(chunk, spring.CHAT_RESPONSE) for chunk in ndjson(streamed)]
    assert [c["function"]["name"] for chunk in chunks for c in chunk["message"].get("tool_calls") or ()] == ["get_weather"]

    # the next turn as OllamaChatModel builds it: ToolCall(id, ToolCallFunction(name, arguments)), then the result
    assistant = spring.ollama_message("assistant", "", tool_calls=[
        {"id": call["id"], "function": {"name": "get_weather", "arguments": call["function"]["arguments"]}}])
    result = spring.ollama_message("tool", '"Sunny, 22 degrees"')
    follow = rest(url, "POST", "/api/chat", spring.ollama_chat_request(
        "smol-tools", [ask, assistant, result], tools=tools, options={"temperature": 0.0, "num_predict": 20}))
    assert follow.status_code == 200, follow.text
    spring.bind(follow.json(), spring.CHAT_RESPONSE)


@pytest.mark.slow
def test_embeddings(url: str) -> None:
    body = spring.ollama_embed_request("smol", ["Hello World", "World is big"], keep_alive="5m")
    response = rest(url, "POST", "/api/embed", body)
    assert response.status_code == 200, response.text
    result = spring.bind(response.json(), spring.EMBEDDINGS_RESPONSE)
    assert result["model"] == "smol" and [len(v) for v in result["embeddings"]] == [576, 576]
    assert result["prompt_eval_count"] > 0
    shorter = spring.bind(rest(url, "POST", "/api/embed", spring.ollama_embed_request(
        "smol", ["Hello World"], truncate=True, dimensions=32)).json(), spring.EMBEDDINGS_RESPONSE)
    assert len(shorter["embeddings"][0]) == 32


@pytest.mark.slow
@pytest.mark.parametrize(("body", "status", "error"), [
    (spring.ollama_chat_request("nothere", [spring.ollama_message("user", "Hi")]), 404, "model 'nothere' not found"),
    (spring.ollama_chat_request("smol", [spring.ollama_message("user", "Hi")], think=True), 400,
     '"smol" does not support thinking'),
    (spring.ollama_chat_request("smol", [spring.ollama_message("user", "Hi")], think="high"), 400,
     '"smol" does not support thinking'),
    (spring.ollama_chat_request("smol", [spring.ollama_message("user", "Hi")], keep_alive="5 minutes"), 400,
     'time: unknown unit " minutes" in duration "5 minutes"'),
])
def test_errors_are_ollamas(url: str, body: bytes, status: int, error: str) -> None:
    response = rest(url, "POST", "/api/chat", body)
    assert (response.status_code, response.json()) == (status, {"error": error})


@pytest.mark.slow
def test_spring_ai_openai_client(url: str) -> None:
    # Spring AI 1.1's OpenAiApi with spring.ai.openai.base-url pointing at corral
    headers = {**spring.REST_CLIENT_HEADERS, "Authorization": "Bearer not-needed"}
    messages = [{"content": QUESTION, "role": "user"}]
    response = HTTP.post(f"{url}/v1/chat/completions", headers=headers,
                         content=spring.openai_chat_request("smol", messages, temperature=0.0, max_tokens=24))
    assert response.status_code == 200, response.text
    completion = spring.bind(response.json(), spring.CHAT_COMPLETION)
    assert "Paris" in completion["choices"][0]["message"]["content"]

    stream = HTTP.post(f"{url}/v1/chat/completions", headers=headers, content=spring.openai_chat_request(
        "smol", messages, stream=True, stream_usage=True, temperature=0.0, max_tokens=24))
    frames = [line.removeprefix("data: ") for line in stream.text.split("\n\n") if line]
    assert frames[-1] == "[DONE]"  # OpenAiApi stops at this sentinel
    chunks = [spring.bind(json.loads(frame), spring.CHAT_COMPLETION_CHUNK) for frame in frames[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
    assert text == completion["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == completion["usage"]["completion_tokens"]

    embedded = HTTP.post(f"{url}/v1/embeddings", headers=headers,
                         content=spring.openai_embedding_request("smol", ["Hello World"]))
    result = spring.bind(embedded.json(), spring.EMBEDDING_LIST)
    assert len(result["data"][0]["embedding"]) == 576


@pytest.mark.slow
def test_pull_strategy_pulls_a_missing_model(tmp_path: Path, smollm2_gguf: Path) -> None:
    from registry_support import corral_env, publish_smollm2

    registry, _manifest = publish_smollm2(tmp_path, smollm2_gguf)
    try:
        env = corral_env(clean_environ(tmp_path / "home"), tmp_path / "models")
        with running_server(env) as url:
            # OllamaModelManager.pullModel: /api/tags misses the model, so POST /api/pull and read
            # ProgressResponse records until "success"
            listed = spring.bind(rest(url, "GET", "/api/tags").json(), spring.LIST_MODEL_RESPONSE)["models"]
            assert listed == []
            # Spring always sends "insecure": false, so a plain-HTTP registry is refused, as Ollama refuses it
            refused = HTTP.post(f"{url}/api/pull", headers=spring.WEB_CLIENT_HEADERS,
                                content=spring.ollama_pull_request(f"http://{registry.host}/library/smol"))
            assert (refused.status_code, refused.json()) == (400, {"error": "insecure protocol http"})
            # the same request to a registry it may reach (this fake one speaks HTTP only, hence insecure)
            body = spring.ollama_pull_request(f"{registry.host}/library/smol").replace(b'"insecure":false',
                                                                                     b'"insecure":true')
            pulled = HTTP.post(f"{url}/api/pull", headers=spring.WEB_CLIENT_HEADERS, content=body)
            assert pulled.status_code == 200 and pulled.headers["content-type"] == "application/x-ndjson"
            progress = [spring.bind(line, spring.PROGRESS_RESPONSE) for line in ndjson(pulled)]
            assert progress[0]["status"] == "pulling manifest" and progress[-1] == {"status": "success"}
            assert any(line.get("total") and line.get("completed") == line["total"] for line in progress)
            listed = spring.bind(rest(url, "GET", "/api/tags").json(), spring.LIST_MODEL_RESPONSE)["models"]
            assert [entry["name"] for entry in listed] == [f"{registry.host}/library/smol:latest"]
    finally:
        registry.stop()
