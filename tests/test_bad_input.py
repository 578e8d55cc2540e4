"""No bad input gets a 5xx (issue 15, finding 13): every route of the real server, every field of
its JSON, a value of each JSON type and a few edge values, malformed bodies, and malformed
messages, tools and options. A field given a value that happens to be valid runs the real model
for one token (the test model's parameters say so)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from corral.errors import InvalidRequest
from corral.options import LOAD_OPTIONS, convert_option
from servers import running_server

pytestmark = pytest.mark.slow

VALUES = [None, True, 0, -1, 1.5, 1e308, 2**70, "", "x", "\x00", [], [1], ["x"], [""], {}, {"a": 1}, [[[]]]]
MODEL = "tiny-answers"
FIELDS = {
    "/api/generate": ({"model": MODEL, "prompt": "hi", "stream": False},
                      ["model", "prompt", "suffix", "system", "template", "context", "raw", "format", "images",
                       "options", "keep_alive", "think", "stream"]),
    "/api/chat": ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False},
                  ["model", "messages", "tools", "format", "options", "keep_alive", "think", "truncate", "stream"]),
    "/api/embed": ({"model": MODEL, "input": "hi"}, ["model", "input", "truncate", "dimensions", "options", "keep_alive"]),
    "/api/embeddings": ({"model": MODEL, "prompt": "hi"}, ["model", "prompt", "options", "keep_alive"]),
    "/api/show": ({"model": MODEL}, ["model", "name", "verbose", "system", "options"]),
    "/api/copy": ({"source": MODEL, "destination": "copied"}, ["source", "destination"]),
    "/api/create": ({"model": "created", "from": MODEL, "stream": False},
                    ["model", "from", "files", "adapters", "template", "system", "license", "parameters", "messages",
                     "quantize", "modelfile", "stream"]),
    "/v1/chat/completions": ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                             ["model", "messages", "stream", "stream_options", "tools", "response_format",
                              "temperature", "top_p", "max_tokens", "stop", "seed", "frequency_penalty",
                              "presence_penalty", "reasoning_effort", "tool_choice"]),
    "/v1/completions": ({"model": MODEL, "prompt": "hi"},
                        ["model", "prompt", "suffix", "stream", "max_tokens", "temperature", "top_p", "stop", "seed"]),
    "/v1/embeddings": ({"model": MODEL, "input": "hi"}, ["model", "input", "encoding_format", "dimensions"]),
}
BODIES = [b"", b"null", b"[]", b"1", b'"x"', b"{", b"\xff\xfe", b'{"model": NaN}', b"[" * 100000,
          b'{"model": "tiny-answers", "prompt": "\\ud800"}', b'{"model": 1e999}',
          # numbers beyond what Python converts (4300 digits) or what a float holds
          b'{"model": "tiny-answers", "prompt": "hi", "a": 1' + b"0" * 5000 + b"}",
          b'{"model": "tiny-answers", "prompt": "hi", "keep_alive": 1' + b"0" * 400 + b"}",
          b'{"model": "tiny-answers", "prompt": "hi", "options": {"temperature": 1' + b"0" * 400 + b"}}"]
OPTIONS = ["num_ctx", "num_batch", "num_thread", "num_predict", "seed", "top_k", "top_p", "temperature", "stop",
           "mirostat", "num_keep", "repeat_last_n", "use_mmap"]
MESSAGES = [[None], ["x"], [{}], [{"role": 1}], [{"role": "user", "content": 1}], [{"role": "user", "images": 1}],
            [{"role": "user", "images": ["!!"]}], [{"role": "user", "tool_calls": 1}],
            [{"role": "user", "tool_calls": [1]}], [{"role": "user", "tool_calls": [{"function": 1}]}],
            [{"role": "assistant", "content": "x", "tool_calls": [{"function": {"name": "f", "arguments": "x"}}]}],
            [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}], [{"role": "user", "thinking": 5}],
            [{"role": "assistant", "content": "x", "tool_calls": [{"function": {"name": "f", "arguments": "[" * 100000}}]}]]
TOOLS = [[None], ["x"], [{"type": "function", "function": 1}],
         [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": 1}}}}],
         [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": 1}}}]]
UNLOADING = [("keep_alive", 0), ("keep_alive", -1), ("keep_alive", 1.5)]  # valid, and each reload is slow


def reloads(option: str, value: object) -> bool:
    """A valid load-time option only reloads the model (slowly): not what this test is about."""
    if option not in LOAD_OPTIONS or value is None:
        return False
    try:
        convert_option(option, value)
    except InvalidRequest:
        return False
    return True


def requests(path: str) -> Iterator[dict]:
    if path not in FIELDS:  # the routes that change models: every malformed body, no registry reached
        yield from ({"content": body} for body in BODIES)
        for field, value in itertools.product(["model", "insecure", "stream"], [None, 1, [], {}, "bad name!"]):
            yield {"json": {"model": "bad name!", field: value}}
        return
    base, fields = FIELDS[path]
    yield from ({"content": body} for body in BODIES)
    for field, value in itertools.product(fields, VALUES):
        if not any(field == name and value is not True and value == unloading for name, unloading in UNLOADING):
            yield {"json": {**base, field: value}}
    if path in ("/api/generate", "/api/chat", "/api/embed"):
        for option, value in itertools.product(OPTIONS, VALUES):
            if not reloads(option, value):
                yield {"json": {**base, "options": {option: value}}}
    if path in ("/api/chat", "/v1/chat/completions"):
        yield from ({"json": {**base, "messages": messages}} for messages in MESSAGES)
        yield from ({"json": {**base, "tools": tools}} for tools in TOOLS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf) -> Iterator[str]:
    import os

    from servers import store_with_smollm2

    root = tmp_path_factory.mktemp("bad-input")
    store = store_with_smollm2(root / "models", smollm2_gguf, ("registry.ollama.ai", "library", MODEL, "latest"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
    env.update(HOME=str(root / "home"), OLLAMA_MODELS=str(store))
    with running_server(env) as url:
        with httpx.Client(timeout=120) as client:  # every answer one token long, and a small context
            created = client.post(f"{url}/api/create", json={"model": MODEL, "from": MODEL, "stream": False,
                                                             "parameters": {"num_predict": 1, "num_ctx": 256}})
            assert created.status_code == 200, created.text
        yield url


@pytest.mark.parametrize("path", [*FIELDS, "/api/pull", "/api/push", "/api/delete"])
def test_no_bad_input_gets_a_5xx(server: str, path: str) -> None:
    failures = []
    method = "DELETE" if path == "/api/delete" else "POST"
    with httpx.Client(timeout=120) as client:
        for request in requests(path):
            response = client.request(method, server + path, **request)
            if response.status_code >= 500:
                failures.append(f"{method} {path} {str(request)[:150]} -> {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", ["/api/blobs/sha256:zz", "/api/blobs/x", "/api/blobs/" + "a" * 5000,
                                  "/v1/models/%00", "/v1/models/" + "a" * 5000, "/api/tags?x=%ff", "/%ff"])
def test_odd_paths_get_no_5xx(server: str, path: str) -> None:
    with httpx.Client(timeout=60) as client:
        for method in ("GET", "POST", "HEAD", "DELETE"):
            assert client.request(method, server + path, content=b"abc").status_code < 500
