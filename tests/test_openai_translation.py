"""How /v1 requests become corral.inference requests: the cases of Ollama's TestChatMiddleware and
TestCompletionsMiddleware, and the replies' OpenAI shapes (ToChatCompletion, ToStreamChunks)."""

from __future__ import annotations

import base64

import pytest

from corral.errors import InvalidRequest
from corral.inference import Metrics, Reply
from corral.plugins.openai import requests, responses
from corral.sdk.http import openai_error

IMAGE = base64.b64encode(b"\x89PNG fake image bytes").decode()
CALL = {"id": "id_abc", "type": "function",
        "function": {"name": "get_current_weather", "arguments": '{"location": "Paris, France", "format": "celsius"}'}}


def test_defaults_and_options() -> None:
    chat, streaming = requests.chat_request({"model": "m", "messages": [{"role": "user", "content": "Hello"}]})
    assert chat.options == {"temperature": 1.0, "top_p": 1.0}
    assert (streaming.stream, streaming.include_usage, chat.format, chat.think, chat.tools) == (False, False, None, None, ())
    chat, streaming = requests.chat_request({
        "model": "m", "messages": [{"role": "user", "content": "Hello"}], "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 999, "seed": 123, "stop": ["\n", "stop"],
        "temperature": 3.0, "frequency_penalty": 4.0, "presence_penalty": 5.0, "top_p": 6.0,
        "response_format": {"type": "json_object"}, "reasoning_effort": "minimal"})
    assert chat.options == {"stop": ["\n", "stop"], "num_predict": 999, "temperature": 3.0, "seed": 123,
                            "frequency_penalty": 4.0, "presence_penalty": 5.0, "top_p": 6.0}
    assert (streaming.stream, streaming.include_usage, chat.format, chat.think) == (True, True, "json", "low")
    newer, _ = requests.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "end",
                                      "max_tokens": 5, "max_completion_tokens": 7, "reasoning": {"effort": "xhigh"}})
    assert (newer.options["num_predict"], newer.options["stop"], newer.think) == (7, ["end"], "max")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    shaped, _ = requests.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                       "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}})
    assert shaped.format == schema


def test_image_parts_become_messages_of_their_own() -> None:
    chat, _ = requests.chat_request({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hello"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}},
        {"type": "image_url", "image_url": f"data:;base64,{IMAGE}"}]}]})
    assert [(m["role"], m["content"], m["images"]) for m in chat.messages] == [
        ("user", "Hello", []), ("user", "", [base64.b64decode(IMAGE)]), ("user", "", [base64.b64decode(IMAGE)])]


def test_tool_calls_and_results() -> None:
    chat, _ = requests.chat_request({"model": "m", "messages": [
        {"role": "user", "content": "What's the weather like in Paris Today?"},
        {"role": "assistant", "reasoning": "Let me look", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "id_abc", "content": "20 degrees"},
        {"role": "tool", "name": "other", "content": "x"}]})
    assistant, result, named = chat.messages[1:]
    assert assistant["tool_calls"] == [{"id": "id_abc", "function": {
        "name": "get_current_weather", "arguments": {"location": "Paris, France", "format": "celsius"}}}]
    assert (assistant["content"], assistant["thinking"]) == ("", "Let me look")
    assert (result["tool_name"], result["tool_call_id"]) == ("get_current_weather", "id_abc")
    assert named["tool_name"] == "other"


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": [{"role": "user", "content": 2}]}, "invalid message content type: float64"),
    ({"messages": [{"role": "user"}]}, "invalid message content type: <nil>"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "invalid message format"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "invalid input_audio format: missing data"),
    ({"messages": [{"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "nope"}}]}]},
     "invalid tool call arguments"),
    ({"messages": []}, "[] is too short - 'messages'"),
    ({"messages": "hi"}, "json: cannot unmarshal string into Go struct field ChatCompletionRequest.messages of type []openai.Message"),
    ({"messages": [{"role": "user", "content": "x"}], "seed": 1.5},
     "json: cannot unmarshal number 1.5 into Go struct field ChatCompletionRequest.seed of type int"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"},
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.stream of type bool"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": "json"},
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.response_format of type openai.ResponseFormat"),
])
def test_chat_request_errors(body: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        requests.chat_request({"model": "m", **body})
    assert error.value.message == message


def test_completion_request() -> None:
    generate, streaming = requests.completion_request({"model": "m", "prompt": "Hello", "temperature": 0.8,
                                                       "stop": ["\n", "stop"], "suffix": "suffix", "stream": True})
    assert (generate.prompt, generate.suffix, streaming.stream) == ("Hello", "suffix", True)
    assert generate.options == {"stop": ["\n", "stop"], "temperature": 0.8, "frequency_penalty": 0.0,
                                "presence_penalty": 0.0, "top_p": 1.0}
    with pytest.raises(InvalidRequest, match="invalid type for 'stop' field: float64"):
        requests.completion_request({"model": "m", "prompt": "x", "stop": [1, 2]})


def test_embed_request() -> None:
    embed, encoding = requests.embed_request({"model": "m", "input": "", "dimensions": 8, "encoding_format": "BASE64"})
    assert (embed.inputs, embed.dimensions, encoding) == (("",), 8, "base64")
    for bad in (None, []):
        with pytest.raises(InvalidRequest, match="^invalid input$"):
            requests.embed_request({"model": "m", "input": bad})


def test_reply_shapes() -> None:
    calls = ({"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"city": "Tokyo"}}},)
    done = Reply(tool_calls=calls, done=True, done_reason="stop", metrics=Metrics(prompt_tokens=3, eval_tokens=2))
    body = responses.chat_completion("chatcmpl-1", "m", 5, done)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "index": 0, "type": "function", "function": {"name": "f", "arguments": '{"city":"Tokyo"}'}}]},
        "finish_reason": "tool_calls"}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    mixed = list(responses.stream_chunks("c", "m", 5, Reply(text="Hi", thinking="hmm"), include_role=True))
    assert [chunk["choices"][0]["delta"] for chunk in mixed] == [{"role": "assistant", "reasoning": "hmm"}, {"content": "Hi"}]
    finish = responses.finish_chunk("c", "m", 5, Reply(done=True, done_reason="length"), tool_call_sent=True)
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert openai_error("boom", 503)["error"] == {"message": "boom", "type": "api_error", "param": None, "code": None}
