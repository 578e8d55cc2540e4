"""The management API through the real server, the real `ollama` client and raw HTTP."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import anyio
import httpx
import ollama
import pytest

pytestmark = pytest.mark.slow


def test_root_and_version(server: str) -> None:
    response = httpx.get(server)
    assert (response.status_code, response.text) == (200, "Ollama is running")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert httpx.head(server).status_code == 200
    version = httpx.get(f"{server}/api/version")
    assert version.headers["content-type"] == "application/json; charset=utf-8"
    assert [int(part) for part in version.json()["version"].split(".")] >= [0, 6, 4]


def test_list_with_the_ollama_client(server: str) -> None:
    models = ollama.Client(host=server).list().models
    assert [model.model for model in models] == ["smol:latest"]
    model = models[0]
    assert model.size > 90_000_000 and len(model.digest) == 64
    assert model.details.family == "llama" and model.details.quantization_level == "Q4_1"
    assert model.modified_at.tzinfo is not None
    raw = httpx.get(f"{server}/api/tags").json()["models"][0]
    assert raw["name"] == raw["model"] == "smol:latest"
    assert "expires_at" not in raw


def test_show_reads_real_gguf_metadata(server: str) -> None:
    shown = ollama.Client(host=server).show("smol")
    info = shown.modelinfo
    assert info["general.architecture"] == "llama"
    assert info["llama.context_length"] == 8192
    assert info["general.parameter_count"] == 134515008
    assert info["tokenizer.ggml.tokens"] is None  # arrays only with verbose
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert shown.capabilities == ["completion"]
    assert shown.details.parameter_size == "134.52M"
    assert shown.template.startswith("{{- if .System }}")
    assert shown.system == "You are a helpful assistant." if hasattr(shown, "system") else True
    assert 'stop                           "<|im_start|>"' in shown.parameters
    assert "temperature                    0.2" in shown.parameters
    assert "FROM " in shown.modelfile and "PARAMETER stop <|im_end|>" in shown.modelfile
    verbose = httpx.post(f"{server}/api/show", json={"model": "smol", "verbose": True}).json()
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) == 49152
    assert {"name": "token_embd.weight", "type": "Q8_0", "shape": [576, 49152]} in verbose["tensors"] or \
        any(t["name"] == "token_embd.weight" for t in verbose["tensors"])


def test_show_accepts_the_old_name_field_and_any_content_type(server: str) -> None:
    response = httpx.post(f"{server}/api/show", content=json.dumps({"name": "smol"}),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()["details"]["family"] == "llama"
    response = httpx.post(f"{server}/api/show", content='{"model":"smol","unknown":1}',
                          headers={"Content-Type": "text/event-stream"})
    assert response.status_code == 200


@pytest.mark.parametrize(("body", "status", "message"), [
    ("", 400, "missing request body"),
    ("{", 400, "invalid JSON"),
    ("[" * 100000, 400, "invalid JSON: nested too deeply"),
    ('{"model": Infinity}', 400, "invalid JSON: Infinity is not a JSON value"),
    ("[1]", 400, "json: cannot unmarshal array into Go value of type api.ShowRequest"),
    ('{"model": 5}', 400, "json: cannot unmarshal number into Go struct field ShowRequest.model of type string"),
    ('{"model": "smol", "verbose": "yes"}', 400, "json: cannot unmarshal string into Go struct field ShowRequest.verbose of type bool"),
    ("{}", 400, "model is required"),
    ("null", 400, "model is required"),
    ('{"model": "../../etc/passwd"}', 400, "invalid model name"),
    ('{"model": "nothere"}', 404, "model 'nothere:latest' not found"),
])
def test_show_errors(server: str, body: str, status: int, message: str) -> None:
    response = httpx.post(f"{server}/api/show", content=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json()["error"].startswith(message)


def test_client_errors_carry_status(server: str) -> None:
    with pytest.raises(ollama.ResponseError) as error:
        ollama.Client(host=server).show("nothere")
    assert error.value.status_code == 404
    assert error.value.error == "model 'nothere:latest' not found"


def test_copy_and_delete(server: str, smol_store: Path) -> None:
    client = ollama.Client(host=server)
    assert client.copy("smol", "backup/smol:v1").status == "success"
    response = httpx.post(f"{server}/api/copy", json={"source": "smol", "destination": "again"})
    assert (response.status_code, response.content) == (200, b"")
    assert sorted(m.model for m in client.list().models) == ["again:latest", "backup/smol:v1", "smol:latest"]
    blobs = sorted(os.listdir(smol_store / "blobs"))
    assert client.delete("smol").status == "success"
    assert client.delete("again").status == "success"
    assert sorted(os.listdir(smol_store / "blobs")) == blobs  # still used by backup/smol:v1
    assert client.show("backup/smol:v1").modelinfo["general.architecture"] == "llama"
    assert client.delete("backup/smol:v1").status == "success"
    assert os.listdir(smol_store / "blobs") == []


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/api/copy", {"source": "nothere", "destination": "x"}, 404, 'model "nothere" not found'),
    ("POST", "/api/copy", {"source": "smol", "destination": "bad name"}, 400, 'destination "bad name" is invalid'),
    ("POST", "/api/copy", {"source": "a/b/c/d", "destination": "x"}, 400, 'source "a/b/c/d" is invalid'),
    ("DELETE", "/api/delete", {"model": "nothere"}, 404, "model 'nothere' not found"),
    ("DELETE", "/api/delete", {}, 400, 'name "" is invalid'),
    ("DELETE", "/api/delete", {"model": "../x"}, 400, 'name "../x" is invalid'),
])
def test_copy_and_delete_errors(server: str, method: str, path: str, body: dict, status: int, message: str) -> None:
    response = httpx.request(method, f"{server}{path}", json=body)
    assert response.status_code == status
    assert response.json() == {"error": message}


def test_blobs(server: str, smol_store: Path, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 404
    created = httpx.post(f"{server}/api/blobs/{digest}", content=data)
    assert (created.status_code, created.content) == (201, b"")
    assert httpx.head(f"{server}/api/blobs/{digest}").status_code == 200
    assert httpx.post(f"{server}/api/blobs/{digest}", content=data).status_code == 200
    assert (smol_store / "blobs" / digest.replace(":", "-")).read_bytes() == data
    path = tmp_path / "file.bin"
    path.write_bytes(b"from the ollama client")
    assert ollama.Client(host=server).create_blob(path) == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_blob_errors(server: str, smol_store: Path) -> None:
    wrong = "sha256:" + "0" * 64
    response = httpx.post(f"{server}/api/blobs/{wrong}", content=b"some bytes")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f'digest mismatch, expected "{wrong}", got "sha256:')
    for bad in ("sha256:123", "md5:" + "0" * 32, "sha256:" + "g" * 64, "..%2F..%2Fetc%2Fpasswd"):
        response = httpx.post(f"{server}/api/blobs/{bad}", content=b"x")
        assert response.status_code in (400, 404), bad
        if response.status_code == 400:
            assert response.json() == {"error": "invalid digest format"}
    assert not any(name.startswith(".tmp") for name in os.listdir(smol_store / "blobs"))


def test_interrupted_upload_keeps_store_clean(server: str, smol_store: Path) -> None:
    import socket

    digest = "sha256:" + "1" * 64
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode())
        sock.sendall(b"x" * 1000)
    response = httpx.get(f"{server}/api/tags")  # the server is still fine
    assert response.status_code == 200
    names = os.listdir(smol_store / "blobs")
    assert digest.replace(":", "-") not in names


def test_wrong_method_and_unknown_path(server: str) -> None:
    response = httpx.get(f"{server}/api/show")
    assert (response.status_code, response.text) == (405, "405 method not allowed")
    response = httpx.get(f"{server}/api/nothing")
    assert (response.status_code, response.text) == (404, "404 page not found")


def test_async_client(server: str) -> None:
    async def scenario() -> tuple[list[str], dict]:
        client = ollama.AsyncClient(host=server)
        listed = await client.list()
        shown = await client.show("smol")
        return [m.model for m in listed.models], shown.modelinfo

    names, info = anyio.run(scenario)
    assert names == ["smol:latest"] and info["general.architecture"] == "llama"


def test_cors_and_host_checks_on_the_real_server(server: str) -> None:
    preflight = httpx.options(f"{server}/api/tags", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = httpx.get(f"{server}/api/tags", headers={"Origin": "http://127.0.0.1:8080"})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:8080"
    refused = httpx.get(f"{server}/api/tags", headers={"Origin": "https://evil.example"})
    assert (refused.status_code, refused.content) == (403, b"")
    rebinding = httpx.get(f"{server}/api/tags", headers={"Host": "evil.example"})
    assert (rebinding.status_code, rebinding.content) == (403, b"")


def test_ollama_origins_extends_the_list(server_env: dict[str, str]) -> None:
    from servers import running_server

    with running_server({**server_env, "OLLAMA_ORIGINS": "http://ui.example:*"}) as url:
        response = httpx.get(f"{url}/api/version", headers={"Origin": "http://ui.example:3000"})
        assert response.headers["access-control-allow-origin"] == "http://ui.example:3000"


def test_bad_ollama_origins_stops_the_server_with_a_clear_error(server_env: dict[str, str]) -> None:
    from support import run_corral

    result = run_corral("serve", env={**server_env, "OLLAMA_ORIGINS": "ws://nope", "OLLAMA_HOST": "127.0.0.1:0"})
    assert result.returncode != 0
    assert "Error: OLLAMA_ORIGINS" in result.stderr and "Traceback" not in result.stderr
