"""The server's fault suite (issue 15; the store's is test_faults_store.py): each fault is made to happen for real against a real ``corral
serve`` with the real SmolLM2 model, and what follows is checked. While each fault runs, another
client (another loopback address) asks ``GET /api/version`` every few tenths of a second, and
every answer must come within one second: one request never freezes the server for everyone.

Run it alone with ``python -m pytest -m faults``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h2.connection
import h2.events
import httpx
import ollama
import pytest

from fault_support import PROBE_ADDRESS, Server, cpu_seconds, serving, version_answers_within_a_second
from servers import runner_pids, store_with_smollm2
from tiny_llama import write_tiny_llama

pytestmark = [pytest.mark.slow, pytest.mark.faults]

GREEDY = {"temperature": 0, "seed": 42, "num_predict": 24}
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
HTTP = httpx.Client(timeout=120)
def config(tmp_path: Path, **server: object) -> str:
    path = tmp_path / "config.toml"
    path.write_text("[server]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in server.items()))
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    root = store_with_smollm2(tmp_path_factory.mktemp("faults") / "models", smollm2_gguf)
    bomb = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ messages }}"
    tiny = write_tiny_llama(root.parent / "bomb.gguf", smollm2_gguf, chat_template=bomb)
    from ollama_store import ollama_model

    ollama_model(root, ("registry.ollama.ai", "library", "jinja-bomb", "latest"), tiny.read_bytes(),
                 file_type="F16", model_type="20M")
    return root


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the faults that need no settings of their own."""
    home = tmp_path_factory.mktemp("home")
    settings = config(home, body_timeout=3, max_client_connections=100, max_embed_values=1_000_000)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
    env.update(HOME=str(home), OLLAMA_MODELS=str(store), OLLAMA_NUM_PARALLEL="1", CORRAL_CONFIG=settings)
    with serving(env) as running:
        yield running


# -- the runner ------------------------------------------------------------------------------------


def test_runner_killed_mid_stream(server: Server, store: Path) -> None:
    """The stream ends with an error line, and the next request loads the model again."""
    url = server.url
    with version_answers_within_a_second(url):
        with HTTP.stream("POST", f"{url}/api/generate", json={
                "model": "smol", "prompt": COUNTING, "raw": True, "options": {**GREEDY, "num_predict": 2000}}) as response:
            stream = response.iter_lines()
            assert json.loads(next(stream))["done"] is False
            for pid in runner_pids(store):
                os.kill(pid, signal.SIGKILL)
            rest = [json.loads(line) for line in stream if line]
        assert "llama runner process has terminated" in rest[-1]["error"]
        answer = ollama.Client(host=url).generate("smol", "What is the capital of France?", options=GREEDY)
    assert "Paris" in answer.response and answer.load_duration > 0


def test_client_disconnect_mid_stream_frees_the_slot(server: Server) -> None:
    """With one slot, an abandoned generation of 100,000 tokens must not hold the next request."""
    url = server.url
    with version_answers_within_a_second(url):
        with HTTP.stream("POST", f"{url}/api/generate", json={
                "model": "smol", "prompt": COUNTING, "raw": True,
                "options": {**GREEDY, "num_predict": 100000}}) as response:
            next(response.iter_lines())
        answer = ollama.Client(host=url, timeout=300).generate("smol", "What is the capital of France?", options=GREEDY)
    assert "Paris" in answer.response
    # load_duration includes the wait for the slot; had the abandoned generation gone on, it
    # would be the thousands of tokens left before its context was full.
    assert answer.load_duration < 15e9


# -- connections and bodies --------------------------------------------------------------------------


def test_200_slowloris_connections(server: Server) -> None:
    """Connections that dribble their headers: one client gets 100 (server.max_client_connections
    in this server), the rest are refused with a 503, and everyone else is served."""
    url = server.url
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    with version_answers_within_a_second(url):
        try:
            for _ in range(200):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                sockets.append(sock)
            for _ in range(3):  # keep dribbling, as slowloris does
                time.sleep(0.5)
                for sock in sockets:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-a: b\r\n")
            refused = []
            for sock in sockets:
                sock.settimeout(0.05)
                with contextlib.suppress(OSError):
                    if (data := sock.recv(4096)).startswith(b"HTTP/1.1 503"):
                        refused.append(data)
            assert 100 <= len(refused) < 200  # the module's other clients may hold a connection or two
            assert b"too many connections from 127.0.0.1: 100 are open (server.max_client_connections)" in refused[0]
            with httpx.Client(transport=httpx.HTTPTransport(local_address=PROBE_ADDRESS)) as other:
                assert other.post(f"{url}/api/show", json={"model": "smol"}).status_code == 200
        finally:
            for sock in sockets:
                sock.close()
    assert httpx.get(f"{url}/api/version").status_code == 200  # the client may connect again


def test_one_http2_connection_carries_at_most_8_requests_at_once(server: Server) -> None:
    """HTTP/2 in clear text with prior knowledge: the server's SETTINGS cap the streams one
    connection may open (Hypercorn's default, 100, made 256 connections 25,600 requests)."""
    port = int(server.url.rsplit(":", 1)[1])
    connection = h2.connection.H2Connection()
    connection.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(connection.data_to_send())
        settings = [event for event in connection.receive_data(sock.recv(65536))
                    if isinstance(event, h2.events.RemoteSettingsChanged)]
    assert settings and connection.remote_settings.max_concurrent_streams == 8


def test_a_100_mb_json_body(server: Server) -> None:
    """413 with Ollama's error shape (OpenAI's under /v1), read without buffering the body."""
    url = server.url
    body = b'{"model": "smol", "prompt": "' + b"a" * 100_000_000 + b'"}'
    before = server.peak_rss()
    with version_answers_within_a_second(url):
        response = HTTP.post(f"{url}/api/generate", content=body)
        assert (response.status_code, response.json()) == (
            413, {"error": "request body too large: more than 33554432 bytes (server.max_body_size)"})

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused when the limit is crossed
            for start in range(0, len(body), 1 << 20):
                yield body[start:start + (1 << 20)]

        response = HTTP.post(f"{url}/v1/chat/completions", content=chunks())
        assert response.status_code == 413
        assert response.json()["error"]["message"].startswith("request body too large")  # OpenAI's shape
        with pytest.raises(ollama.ResponseError, match="request body too large") as raised:
            ollama.Client(host=url).generate("smol", "a" * 100_000_000)
        assert raised.value.status_code == 413
    assert server.peak_rss() - before < 64 * 2**20  # the 100 MB never sits in memory


def test_a_body_of_millions_of_tiny_values(server: Server) -> None:
    """32 MiB of ``{},`` under the body limit: parsing it held the event loop for seconds and took
    gigabytes; it is refused before parsing, and 900,000 values (450,000 messages) still parse.
    Their render stops when the answer is given: merging the messages one by one kept a CPU busy
    for minutes after it."""
    url = server.url
    before = server.peak_rss()
    with version_answers_within_a_second(url):
        for path in ("/api/chat", "/v1/chat/completions"):
            body = b'{"model": "smol", "messages": [' + b"{}," * 11_000_000 + b"{}]}"
            response = HTTP.post(f"{url}{path}", content=body)
            assert response.status_code == 413, response.text
            assert "too many JSON values: more than 1000000 (server.max_json_values)" in response.text
        response = HTTP.post(f"{url}/api/chat", json={"model": "smol", "messages": [{"role": "user"}] * 450_000})
        assert response.status_code != 413
        time.sleep(1)
        used = server.cpu_seconds()
        time.sleep(2)
        assert server.cpu_seconds() - used < 0.5, "the server is still busy with the answered request"
    assert server.peak_rss() - before < 1024 * 2**20


def test_large_embedding_answers_leave_the_server_responsive(server: Server) -> None:
    """1,000 inputs give 576,000 numbers: decoding them from the runner, normalizing them and
    encoding the answer held the event loop for seconds (a LangChain batch of documents did)."""
    url = server.url
    inputs = ["a"] * 1000  # one token each: the model's work stays small, the answer is not
    with version_answers_within_a_second(url):
        response = HTTP.post(f"{url}/api/embed", json={"model": "smol", "input": inputs})
        assert response.status_code == 200, response.text
        vectors = response.json()["embeddings"]
        assert len(vectors) == 1000 and len(vectors[0]) == 576
        assert abs(sum(value * value for value in vectors[0]) - 1) < 1e-6
        response = HTTP.post(f"{url}/v1/embeddings", json={"model": "smol", "input": inputs})
        assert response.status_code == 200, response.text
        assert [item["index"] for item in response.json()["data"]] == list(range(1000))


def test_an_embedding_answer_beyond_max_embed_values_is_refused_before_any_work(server: Server) -> None:
    """2,000 one-word inputs are 8 KB of JSON and 1,152,000 numbers: more than the server's
    ``max_embed_values`` (1,000,000 here). A million such inputs would be gigabytes of vectors."""
    url = server.url
    inputs = ["a"] * 2000
    with version_answers_within_a_second(url):
        response = HTTP.post(f"{url}/api/embed", json={"model": "smol", "input": inputs})
        assert response.status_code == 400
        assert response.json() == {"error": "too many inputs: 2000 inputs of 576 numbers each exceed "
                                            "server.max_embed_values (1000000); send at most 1736 per request"}
        response = HTTP.post(f"{url}/v1/embeddings", json={"model": "smol", "input": inputs})
        assert response.status_code == 400
        assert "server.max_embed_values" in response.json()["error"]["message"]
        assert HTTP.post(f"{url}/api/embed", json={"model": "smol", "input": inputs[:1736]}).status_code == 200


def runner_cpu_seconds(store: Path) -> float:
    total = 0.0
    for pid in runner_pids(store):
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def test_an_abandoned_embedding_request_stops_in_the_runner(server: Server, store: Path) -> None:
    """1,500 inputs of 60 words are minutes of work; the client gives up after two seconds. The
    runner used to embed every input for nobody; it goes idle after the step under way (a batch of
    256 tokens, under a second here)."""
    url = server.url
    inputs = [f"document {number}: " + "the quick brown fox jumps over the lazy dog " * 6 for number in range(1500)]
    HTTP.post(f"{url}/api/embed", json={"model": "smol", "input": "warm"}).raise_for_status()
    with version_answers_within_a_second(url):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/api/embed", json={"model": "smol", "input": inputs}, timeout=2)
        time.sleep(3)
        before = runner_cpu_seconds(store)
        time.sleep(2)
        busy = runner_cpu_seconds(store) - before
    assert busy < 0.5, f"the runners used {busy:.1f} s of CPU in 2 s after the client left"
    answer = ollama.Client(host=url, timeout=300).generate("smol", "What is the capital of France?", options=GREEDY)
    assert "Paris" in answer.response


def read_to_close(sock: socket.socket) -> bytes:
    """All a server sends before it closes the connection (headers and body may come apart)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_stalled_bodies_time_out_and_leave_no_temporary_file(server: Server, store: Path) -> None:
    """50 blob uploads that stop sending get a 408 after server.body_timeout (3 s here), and 10
    whose client goes away are dropped at once; no temporary file is left behind."""
    url = server.url
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    with version_answers_within_a_second(url):
        for index in range(10):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(f"POST /api/blobs/sha256:{index + 100:064x} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Length: 100000\r\n\r\n".encode() + b"x" * 100)
                time.sleep(0.1)
        for index in range(50):
            sock = socket.create_connection(("127.0.0.1", port))
            digest = f"sha256:{index:064x}"
            sock.sendall(f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
                         .encode() + b"x" * 100)
            sockets.append(sock)
        time.sleep(1)
        assert list((store / "blobs").glob(".tmp-*"))  # the uploads have started
        answers = []
        for sock in sockets:
            sock.settimeout(30)
            answers.append(read_to_close(sock))
            sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers)
    assert b'{"error":"request body timed out: no data for 3s (server.body_timeout)"}' in answers[0]
    assert not list((store / "blobs").glob(".tmp-*"))


# -- parsing and templates ---------------------------------------------------------------------------


def test_quadratic_inputs_are_refused_at_once(server: Server) -> None:
    """20,000 digits and an x froze the server for 11.5 s as a keep_alive and 26.5 s in a Modelfile."""
    url = server.url
    digits = "1" * 20000 + "x"
    with version_answers_within_a_second(url):
        response = HTTP.post(f"{url}/api/generate", json={"model": "smol", "prompt": "hi", "keep_alive": digits})
        assert response.status_code == 400 and response.json()["error"].startswith('time: invalid duration "111')
        response = HTTP.post(f"{url}/api/create", json={
            "model": "quadratic", "modelfile": f"FROM smol\nPARAMETER temperature {digits}"})
        assert response.status_code == 400
        assert response.json()["error"].startswith("(line 2): PARAMETER temperature must be a number")


@pytest.mark.parametrize("body", [
    {"model": "smol", "prompt": "hi", "template": "{{range 1000000000}}{{end}}"},
    {"model": "smol", "prompt": "hi", "template": '{{range 30000}}{{printf "%1000000d" 1}}{{end}}'},
    {"model": "jinja-bomb", "prompt": "hi"},
])
def test_template_bombs_are_a_400_naming_the_limit(server: Server, body: dict) -> None:
    """A request's Go template, and a GGUF's Jinja chat template, with loops that would run for
    hours (the first two froze the server and made it deaf to SIGTERM). Which limit they meet
    first depends on the machine's speed."""
    url = server.url
    with version_answers_within_a_second(url):
        response = HTTP.post(f"{url}/api/generate", json={**body, "stream": False})
    assert response.status_code == 400
    assert re.fullmatch(r"template: rendering .* \(server\.template_(max_iterations|max_output|timeout)\)",
                        response.json()["error"])


def test_printing_a_big_string_many_times_is_refused_before_it_is_built(server: Server) -> None:
    """print joined its arguments before checking the size: 32 copies of a 1 MB string (within
    the 32 MiB limit), printed a hundred times over, made one call allocate 3.2 GB in C, where the
    deadline cannot stop it, and the thread kept going after the 400."""
    url = server.url
    template = ('{{$a := printf "%1000000s" ""}}{{$b := print' + " $a" * 32 + "}}"
                "{{$c := print" + " $b" * 100 + "}}")
    before = server.peak_rss()
    with version_answers_within_a_second(url):
        response = HTTP.post(f"{url}/api/generate", json={
            "model": "smol", "prompt": "hi", "template": template, "stream": False})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "template: rendering produced or built more than 33554432 characters (server.template_max_output)")
    assert server.peak_rss() - before < 256 * 2**20


def test_sigterm_while_a_render_is_stuck(store: Path, tmp_path: Path) -> None:
    """A render with no practical limit (the settings allow it an hour) holds a worker thread;
    the server still answers, and SIGTERM still stops it promptly and cleanly."""
    settings = config(tmp_path, template_timeout=3600, template_max_iterations=10**12)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
    env.update(HOME=str(tmp_path), OLLAMA_MODELS=str(store), CORRAL_CONFIG=settings)
    with serving(env) as stuck_server:
        url = stuck_server.url
        HTTP.post(f"{url}/api/generate", json={"model": "smol"})  # load, so the render starts at once
        failures: list[BaseException] = []

        def stuck() -> None:
            try:
                HTTP.post(f"{url}/api/generate", json={
                    "model": "smol", "prompt": "hi", "template": "{{range 1000000000000}}{{end}}"})
            except httpx.HTTPError as error:  # the server went away: expected
                failures.append(error)

        thread = threading.Thread(target=stuck, daemon=True)
        with version_answers_within_a_second(url):
            thread.start()
            time.sleep(3)
            assert thread.is_alive()  # the render is under way
        started = time.monotonic()
        assert stuck_server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 15
        thread.join(timeout=10)


def test_probe_fails_when_the_server_freezes(tmp_path: Path) -> None:
    """The probe itself can fail: a server whose event loop sleeps 2 s (SIGSTOP) is caught."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "CORRAL_"))}
    env.update(HOME=str(tmp_path), OLLAMA_MODELS=str(tmp_path / "models"))
    with serving(env) as frozen:
        with pytest.raises(AssertionError, match="/api/version took"):
            with version_answers_within_a_second(frozen.url):
                time.sleep(0.5)
                frozen.process.send_signal(signal.SIGSTOP)
                time.sleep(2)
                frozen.process.send_signal(signal.SIGCONT)
                time.sleep(0.5)


def test_the_probe_uses_another_address() -> None:
    with socket.socket() as sock:
        sock.bind((PROBE_ADDRESS, 0))  # loopback covers 127.0.0.0/8 on Linux
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 400  # the slowloris test opens 200 sockets
