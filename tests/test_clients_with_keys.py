"""Every client keeps working against a real ``corral serve`` with API keys: the ollama Python and
JavaScript clients, the openai client, curl and corral's own command line; refusals leave kept-alive
connections usable; keys never reach the server's log."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from servers import running_server, store_with_smollm2
from support import REPO, clean_environ, run_corral

pytestmark = pytest.mark.slow

FULL_KEY = "full-key-0123456789abcdef"
INFERENCE_KEY = "inference-key-0123456789"
WRONG_KEY = "wrong-key-0123456789abcdef"
SHORT = {"num_predict": 8, "temperature": 0}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> dict[str, str]:
    root = tmp_path_factory.mktemp("keys")
    store = store_with_smollm2(root / "models", smollm2_gguf)
    return {**clean_environ(root / "home"), "OLLAMA_MODELS": str(store), "OLLAMA_DEBUG": "1",
            "CORRAL_API_KEYS": FULL_KEY, "CORRAL_INFERENCE_KEYS": INFERENCE_KEY}


@pytest.fixture(scope="module")
def log() -> list[str]:
    return []


@pytest.fixture(scope="module")
def server(env: dict[str, str], log: list[str]) -> Iterator[str]:
    with running_server(env, log=log) as url:
        yield url


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_ollama_python_client(server: str) -> None:
    client = ollama.Client(host=server, headers=bearer(INFERENCE_KEY), timeout=120)
    assert "smol:latest" in [model.model for model in client.list().models]
    assert client.chat(model="smol", messages=[{"role": "user", "content": "Say hello."}], options=SHORT).message.content
    assert "".join(part.response for part in client.generate(model="smol", prompt="1, 2,", stream=True, options=SHORT))
    assert client.show("smol").details.family
    with pytest.raises(ollama.ResponseError) as forbidden:
        client.delete("smol")
    assert forbidden.value.status_code == 403
    assert forbidden.value.error == "forbidden: this API key may only run, list and show models"
    with pytest.raises(ollama.ResponseError) as missing:
        ollama.Client(host=server).list()
    assert missing.value.status_code == 401
    full = ollama.Client(host=server, headers=bearer(FULL_KEY))
    full.copy("smol", "smol-copy")
    full.delete("smol-copy")
    assert "smol-copy:latest" not in [model.model for model in client.list().models]


def test_the_openai_client(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=INFERENCE_KEY, timeout=120)
    assert "smol:latest" in [model.id for model in client.models.list()]
    reply = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Say hello."}],
                                           max_tokens=8, temperature=0)
    assert reply.choices[0].message.content
    stream = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=6, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=f"{server}/v1", api_key=WRONG_KEY, max_retries=0).models.list()
    assert refused.value.status_code == 401
    assert refused.value.body == {"message": "unauthorized: invalid API key", "type": "invalid_request_error",
                                  "param": None, "code": "invalid_api_key"}


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", "--max-time", "120", *args], capture_output=True, text=True, timeout=130)


def test_curl(server: str) -> None:
    listed = curl("-H", f"Authorization: Bearer {INFERENCE_KEY}", f"{server}/api/tags")
    assert "smol:latest" in [model["name"] for model in json.loads(listed.stdout)["models"]]
    refused = curl("-i", f"{server}/api/tags")
    head, _, body = refused.stdout.partition("\n\n")  # text mode: CRLF came in as LF
    assert head.startswith("HTTP/1.1 401") and "\nwww-authenticate: Bearer\n" in head + "\n"
    assert json.loads(body) == {"error": "unauthorized: this server needs an API key in the Authorization header (Bearer KEY)"}
    chat = curl("-H", f"Authorization: Bearer {INFERENCE_KEY}", f"{server}/api/chat", "-d",
                json.dumps({"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "stream": False,
                            "options": SHORT}))
    assert json.loads(chat.stdout)["message"]["content"]


def test_corrals_command_line(server: str, env: dict[str, str], tmp_path: Path) -> None:
    cli_env = {**clean_environ(tmp_path / "home"), "OLLAMA_HOST": server.removeprefix("http://")}
    result = run_corral("list", env={**cli_env, "CORRAL_API_KEY": INFERENCE_KEY})
    assert result.returncode == 0, result.stderr
    assert "smol:latest" in result.stdout
    result = run_corral("run", "smol", "Say hello.", env={**cli_env, "CORRAL_API_KEY": INFERENCE_KEY}, timeout=180)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    result = run_corral("rm", "smol", env={**cli_env, "CORRAL_API_KEY": INFERENCE_KEY})
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: forbidden: this API key may only run, list and show models"
    result = run_corral("list", env=cli_env)
    assert result.returncode == 1
    assert result.stderr.strip() == ("Error: unauthorized: this server needs an API key in the Authorization header "
                                     f"(Bearer KEY); set CORRAL_API_KEY to a key of the server at {server}")
    result = run_corral("list", env={**cli_env, "CORRAL_API_KEY": WRONG_KEY})
    assert result.stderr.strip() == ("Error: unauthorized: invalid API key; the key comes from CORRAL_API_KEY "
                                     "or client.api_key")
    assert WRONG_KEY not in result.stderr


def test_the_command_line_uses_the_servers_own_key_from_the_config_file(server: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\napi_keys = ["sha256:{"0" * 64}", "{FULL_KEY}"]\n')
    cli_env = {**clean_environ(tmp_path / "home"), "OLLAMA_HOST": server.removeprefix("http://"),
               "CORRAL_CONFIG": str(config)}
    result = run_corral("cp", "smol", "smol-config", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert run_corral("rm", "smol-config", env=cli_env).returncode == 0
    config.write_text(f'[server]\napi_keys = ["{WRONG_KEY}"]\n[client]\napi_key = "{FULL_KEY}"\n')
    assert run_corral("list", env=cli_env).returncode == 0


@pytest.fixture(scope="session")
def ollama_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ollama npm package, installed with ``npm ci`` from tests/js's lock file in a temporary folder."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        message = "the JavaScript client test needs node and npm (apt-get install nodejs npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("ollama-js")
    for name in ("package.json", "package-lock.json", "keys.mjs"):
        shutil.copy(REPO / "tests" / "js" / name, folder / name)
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return folder


def test_the_ollama_javascript_client(server: str, ollama_js: Path) -> None:
    result = subprocess.run(["node", "keys.mjs", server, INFERENCE_KEY, "smol"], cwd=ollama_js,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert "smol:latest" in seen["models"] and seen["chat"] and seen["streamed"]
    assert seen["without_key"] == {
        "status": 401, "error": "unauthorized: this server needs an API key in the Authorization header (Bearer KEY)"}
    assert seen["wrong_key"] == {"status": 401, "error": "unauthorized: invalid API key"}
    assert seen["delete_with_inference_key"] == {
        "status": 403, "error": "forbidden: this API key may only run, list and show models"}


def test_refusals_leave_the_connection_usable(server: str) -> None:
    """Hypercorn closes a kept-alive connection when an answer goes out before the body was read;
    refusals read small bodies first, so one connection carries refused and accepted requests alike."""
    body = {"model": "smol", "padding": "x" * 5000}
    ports = set()
    with httpx.Client(base_url=server, timeout=60) as client:
        for round_ in range(60):
            for key, method, path, status in ((INFERENCE_KEY, "GET", "/api/tags", 200),
                                              (WRONG_KEY, "POST", "/api/show", 401),
                                              (None, "POST", "/api/chat", 401),
                                              (INFERENCE_KEY, "DELETE", "/api/delete", 403),
                                              (INFERENCE_KEY, "POST", "/api/show", 200)):
                response = client.request(method, path, json=body, headers=bearer(key) if key else {})
                assert response.status_code == status, (round_, path, response.text)
                ports.add(response.extensions["network_stream"].get_extra_info("client_addr"))
        assert len(ports) == 1
        # A body too big to drain: the refusal says Connection: close, and the client reconnects.
        digest = "sha256:" + "0" * 64
        big = client.post(f"/api/blobs/{digest}", content=b"x" * (3 * 1024 * 1024), headers=bearer(INFERENCE_KEY))
        assert big.status_code == 403 and big.headers["connection"] == "close"
        assert client.get("/api/tags", headers=bearer(INFERENCE_KEY)).status_code == 200


def test_a_body_sent_after_the_answer_began_leaves_the_connection_usable(server: str) -> None:
    """GET /api/tags does not read its body. When the body comes after the headers (a slow client,
    a busy machine), the answer used to end first and Hypercorn closed the kept-alive connection
    under the client's next request."""
    host, port = server.removeprefix("http://").split(":")
    body = b"x" * 5000
    head = (f"GET /api/tags HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {INFERENCE_KEY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        time.sleep(0.5)  # the server has answered by now, or waits for the body
        sock.sendall(body + head + body)
        received = b""
        with contextlib.suppress(TimeoutError):
            sock.settimeout(5)
            while received.count(b"HTTP/1.1 200") < 2 and (chunk := sock.recv(65536)):
                received += chunk
    assert received.count(b"HTTP/1.1 200") == 2, received[:300]


def test_the_ollama_client_survives_many_refusals(server: str) -> None:
    client = ollama.Client(host=server, headers=bearer(INFERENCE_KEY), timeout=60)
    for _ in range(150):
        assert client.list().models
        with pytest.raises(ollama.ResponseError) as refused:
            client.delete("smol")
        assert refused.value.status_code == 403
        with pytest.raises(ollama.ResponseError) as refused:
            client.copy("smol", "other")
        assert refused.value.status_code == 403


def test_keys_never_reach_the_log(server: str, log: list[str]) -> None:
    for key in (FULL_KEY, INFERENCE_KEY, WRONG_KEY):
        httpx.get(f"{server}/api/tags", headers=bearer(key))
    text = "".join(log)
    assert "status=401" in text and "user_agent=" in text  # the debug request log is on
    for key in (FULL_KEY, INFERENCE_KEY, WRONG_KEY):
        assert key not in text
