"""contrib/metrics: /metrics scraped after real requests through a real server, parsed with
prometheus-client's own parser, must count exactly what was sent."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral import (
    ModelLoaded,
    ModelUnloaded,
    PluginError,
    RequestFinished,
    RunnerStarted,
    RunnerStopped,
    TransferFinished,
    TransferProgress,
)
from corral.kernel import Kernel
from servers import free_port, running_server

SMOL = "smol:latest"
COUNTING = {"model": "smol", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "raw": True,
            "options": {"temperature": 0, "seed": 1, "stop": []}}
"""A raw prompt SmolLM2 goes on counting from, so an answer lasts as long as num_predict says."""


class Scrape:
    """The samples of one /metrics answer, by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _labels in self.samples}


def scrape(url: str, **headers: str) -> Scrape:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def metrics_config(tmp_path: Path, extra: str = "") -> str:
    config = tmp_path / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[plugins]\nenable = ["metrics"]\n' + extra)
    return str(config)


def generate(url: str, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/api/generate", json={**COUNTING, "stream": False, **fields}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def metrics_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    env = {**server_env, "CORRAL_CONFIG": metrics_config(tmp_path), "OLLAMA_MAX_QUEUE": "1",
           "OLLAMA_NUM_PARALLEL": "1"}
    with running_server(env) as url:
        yield url


@pytest.mark.slow
def test_metrics_count_what_was_sent(metrics_server: str) -> None:
    url = metrics_server
    generated = [generate(url, options={**COUNTING["options"], "num_predict": 8}) for _ in range(2)]
    chat = httpx.post(f"{url}/api/chat", timeout=120, json={
        "model": "smol", "messages": [{"role": "user", "content": "Hello"}], "stream": True,
        "options": {"num_predict": 6, "temperature": 0}})
    chatted = json.loads(chat.text.splitlines()[-1])
    openai = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "smol", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}).json()
    assert httpx.post(f"{url}/api/generate", json={"model": "nothere", "prompt": "x"}).status_code == 404
    assert httpx.post(f"{url}/api/generate", content=b"{not json").status_code == 400

    # A holds the only slot while it counts, B waits for it (the whole queue), C finds it full: 503
    with httpx.stream("POST", f"{url}/api/generate", timeout=120,
                      json={**COUNTING, "options": {**COUNTING["options"], "num_predict": 100}}) as first:
        lines = first.iter_lines()
        next(lines)
        waiting: list[dict[str, Any]] = []
        second = threading.Thread(target=lambda: waiting.append(generate(url, options={"num_predict": 4})))
        second.start()
        deadline = time.monotonic() + 60
        while scrape(url)("corral_queue_depth") != 1:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.02)
        busy = httpx.post(f"{url}/api/generate", json={**COUNTING, "stream": False}, timeout=60)
        assert busy.status_code == 503, busy.text
        generated.append(json.loads(list(lines)[-1]))
    second.join(timeout=300)
    generated += waiting
    answers = [*generated, chatted]
    metrics = scrape(url)

    def requests(endpoint: str, model: str, status: str) -> float:
        return metrics("corral_requests_total", endpoint=endpoint, method="POST", model=model, status=status)

    assert requests("/api/generate", SMOL, "200") == 4
    assert requests("/api/generate", SMOL, "503") == 1  # found, then refused
    assert requests("/api/generate", "", "404") == 1  # names that are not in the store stay unlabelled
    assert requests("/api/generate", "", "400") == 1
    assert requests("/api/chat", SMOL, "200") == 1 and requests("/v1/chat/completions", SMOL, "200") == 1
    assert metrics("corral_requests_rejected_total", reason="busy") == 1
    assert metrics("corral_requests_rejected_total", reason="invalid") == 2
    assert not [name for name, labels in metrics.samples if ("model", "nothere") in labels]

    prompt_tokens = sum(a["prompt_eval_count"] for a in answers) + openai["usage"]["prompt_tokens"]
    completion_tokens = sum(a["eval_count"] for a in answers) + openai["usage"]["completion_tokens"]
    assert metrics("corral_prompt_tokens_total", model=SMOL) == prompt_tokens
    assert metrics("corral_generated_tokens_total", model=SMOL) == completion_tokens
    assert generated[2]["eval_count"] == 100  # A counted to the end

    served = len(answers) + 1  # every answer that ran the model, /v1 included
    assert metrics("corral_time_to_first_token_seconds_count", model=SMOL) == served
    assert metrics("corral_generation_tokens_per_second_count", model=SMOL) == served
    assert metrics("corral_queue_wait_seconds_count", model=SMOL) == served
    assert metrics("corral_queue_wait_seconds_sum", model=SMOL) > 0.1  # B waited for A
    assert metrics("corral_request_duration_seconds_count", endpoint="/api/generate", model=SMOL) == 5
    assert metrics("corral_request_duration_seconds_count", endpoint="/api/generate", model="") == 2
    seconds = metrics("corral_request_duration_seconds_sum", endpoint="/api/generate", model=SMOL)
    assert seconds >= sum(a["total_duration"] for a in generated) / 1e9
    first_token = metrics("corral_time_to_first_token_seconds_sum", model=SMOL)
    assert 0 < first_token < seconds
    buckets = [value for (name, labels), value in metrics.samples.items()
               if name == "corral_generation_tokens_per_second_bucket" and ("model", SMOL) in labels]
    assert max(buckets) == served and min(buckets) < served  # every answer in some bucket, +Inf holds all

    assert metrics("corral_models_loaded") == 1
    assert metrics("corral_model_loads_total", model=SMOL, runtime="llamacpp") == 1
    assert metrics("corral_model_load_duration_seconds_count", runtime="llamacpp") == 1
    assert metrics("corral_queue_depth") == 0 and metrics("corral_queue_capacity") == 1
    assert {"corral_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes",
            "python_info", "python_gc_collections_total"} <= metrics.names()


@pytest.mark.slow
def test_metrics_on_their_own_port_need_no_key_and_serve_nothing_else(clean_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    port = free_port()
    env = {**clean_env, "OLLAMA_MODELS": str(tmp_path / "models"), "CORRAL_API_KEYS": "metrics-test-key-0123456",
           "CORRAL_CONFIG": metrics_config(tmp_path, f"[metrics]\nport = {port}\n")}
    with running_server(env) as url:
        own = f"http://127.0.0.1:{port}"
        key = {"Authorization": "Bearer metrics-test-key-0123456"}
        assert httpx.get(f"{url}/api/version", headers=key).status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 401  # the main address needs the key...
        assert httpx.get(f"{url}/metrics", headers=key).status_code == 404  # ...and has no /metrics
        # not even for a request target in absolute form, which the middleware used to see whole
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as raw:
            raw.sendall(b"GET http://127.0.0.1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                        b"Authorization: Bearer metrics-test-key-0123456\r\n\r\n")
            assert raw.recv(4096).startswith(b"HTTP/1.1 404")
        for path in ("/api/tags", "/api/version", "/", "/ui/"):
            response = httpx.get(f"{own}{path}")
            assert (response.status_code, response.text) == (404, "404 page not found"), path
        assert httpx.post(f"{own}/api/pull", json={"model": "x"}).status_code == 404
        metrics = scrape(own)
        assert metrics("corral_requests_total", endpoint="/api/version", method="GET", model="", status="200") == 1
        assert metrics("corral_requests_total", endpoint="/metrics", method="GET", model="", status="404") == 2
        assert metrics("corral_requests_total", endpoint="/metrics", method="GET", model="", status="401") == 1
        assert metrics("corral_requests_rejected_total", reason="unauthorized") == 1
        assert metrics("corral_requests_total", endpoint="/api/tags", method="GET", model="", status="404") == 1

        openmetrics = httpx.get(f"{own}/metrics", headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert openmetrics.headers["content-encoding"] == "gzip"  # httpx has already decoded it
        assert openmetrics.text.endswith("# EOF\n") and "corral_requests_total{" in openmetrics.text
        plain = httpx.get(f"{own}/metrics", headers={"Accept-Encoding": "identity"})
        assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "content-encoding" not in plain.headers and "corral_queue_depth 0.0" in plain.text


def kernel_with_metrics(tmp_path: Path, **environ: str) -> tuple[Kernel, Any]:
    from corral.plugins.server.app import create_app

    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    kernel = Kernel.create({"HOME": str(home), "OLLAMA_MODELS": str(tmp_path / "models"),
                            "CORRAL_CONFIG": metrics_config(tmp_path), **environ}, load_entry_points=False)
    return kernel, create_app(kernel)


async def scrape_app(app: Any) -> Scrape:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:11434") as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        return Scrape(response.text)


def test_each_kernel_has_its_own_registry(tmp_path: Path) -> None:
    one, one_app = kernel_with_metrics(tmp_path / "one")
    two, two_app = kernel_with_metrics(tmp_path / "two")
    one.emit(RequestFinished(endpoint="/api/tags", method="GET", status=200))

    async def scrapes() -> tuple[Scrape, Scrape]:
        return await scrape_app(one_app), await scrape_app(two_app)

    first, second = anyio.run(scrapes)
    labels = {"endpoint": "/api/tags", "method": "GET", "model": "", "status": "200"}
    assert first("corral_requests_total", **labels) == 1
    assert second("corral_requests_total", **labels) == 0


def test_metrics_on_the_main_address_need_a_full_key_when_keys_are_on(tmp_path: Path) -> None:
    full, run = "full-key-0123456789abcdef", "run-key-0123456789abcdef"
    _kernel, app = kernel_with_metrics(tmp_path, CORRAL_API_KEYS=full, CORRAL_INFERENCE_KEYS=run)

    async def statuses() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:11434") as client:
            return [(await client.get("/metrics", headers=headers)).status_code for headers in (
                {}, {"Authorization": f"Bearer {run}"}, {"Authorization": f"Bearer {full}"})]

    assert anyio.run(statuses) == [401, 403, 200]


def test_runner_model_and_transfer_events_move_their_metrics(tmp_path: Path) -> None:
    kernel, app = kernel_with_metrics(tmp_path)
    for event in (
        ModelLoaded(name=SMOL, runtime="llamacpp", seconds=0.7), RunnerStarted(name=SMOL, runtime="llamacpp"),
        RunnerStopped(name=SMOL, runtime="llamacpp", crashed=True, reason="killed"),
        ModelUnloaded(name=SMOL, reason="runner exited"),
        RunnerStarted(name=SMOL, runtime="llamacpp"), ModelLoaded(name=SMOL, runtime="llamacpp", seconds=0.5),
        RunnerStopped(name=SMOL, runtime="llamacpp", crashed=False, reason="unloaded"),
        RunnerStarted(name=SMOL, runtime="llamacpp"),
        TransferProgress(direction="pull", model=SMOL, bytes=1000), TransferProgress(direction="pull", model=SMOL, bytes=24),
        TransferFinished(direction="pull", model=SMOL, bytes=1024, seconds=1.0),
        TransferProgress(direction="push", model=SMOL, bytes=10),
        TransferFinished(direction="push", model=SMOL, bytes=10, seconds=1.0, error="connection refused"),
        RequestFinished(endpoint="/api/chat", method="POST", status=401, rejected="unauthorized"),
        RequestFinished(endpoint="/api/chat", method="POST", status=413, rejected="too_large"),
    ):
        kernel.emit(event)
    metrics = anyio.run(scrape_app, app)
    assert metrics("corral_models_loaded") == 1
    assert metrics("corral_model_loads_total", model=SMOL, runtime="llamacpp") == 2
    assert metrics("corral_model_load_duration_seconds_sum", runtime="llamacpp") == pytest.approx(1.2)
    assert metrics("corral_model_unloads_total", reason="runner exited") == 1
    assert metrics("corral_runner_starts_total", runtime="llamacpp") == 3
    assert metrics("corral_runner_crashes_total", runtime="llamacpp") == 1
    assert metrics("corral_runner_restarts_total", runtime="llamacpp") == 1  # the start after the crash only
    assert metrics("corral_transfer_bytes_total", direction="pull") == 1024
    assert metrics("corral_transfer_bytes_total", direction="push") == 10
    assert metrics("corral_transfers_total", direction="pull") == 1
    assert metrics("corral_transfer_failures_total", direction="pull") == 0
    assert metrics("corral_transfer_failures_total", direction="push") == 1
    assert metrics("corral_requests_rejected_total", reason="unauthorized") == 1
    assert metrics("corral_requests_rejected_total", reason="too_large") == 1


def test_enabling_metrics_without_prometheus_client_says_what_to_install(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "corral.contrib.metrics", raising=False)
    with pytest.raises(PluginError, match=r"pip install 'corral\[metrics\]'"):
        kernel_with_metrics(tmp_path)


def test_a_fake_runtime_crash_and_the_reload_after_it_are_counted(clean_env: dict[str, str], tmp_path: Path) -> None:
    """The same scrape with corral.testing's FakeRuntime behind a real server: each answer's runner
    dies after two tokens (a crash), so the next request starts a new one (a restart)."""
    env = {**clean_env, "CORRAL_CONFIG": metrics_config(tmp_path)}
    config = json.dumps({"models": ["m"], "runtime": {"crash_after": 2}})
    command = [sys.executable, str(Path(__file__).parent / "fake_server.py"), config]
    with running_server(env, command=command) as url:
        for _ in range(2):
            lines = httpx.post(f"{url}/api/generate", json={"model": "m", "prompt": "hi"}, timeout=30).text
            assert json.loads(lines.splitlines()[-1])["error"].startswith("fake runner process has terminated")
        assert httpx.post(f"{url}/api/generate", json={"model": "m", "prompt": "hi", "stream": False,
                                                       "options": {"num_ctx": -1}}, timeout=30).status_code == 400
        time.sleep(0.5)  # the second crash is noticed after its error line went out
        metrics = scrape(url)
    assert metrics("corral_runner_starts_total", runtime="fake") == 2
    assert metrics("corral_runner_crashes_total", runtime="fake") == 2
    assert metrics("corral_runner_restarts_total", runtime="fake") == 1
    assert metrics("corral_model_loads_total", model="m:latest", runtime="fake") == 2
    assert metrics("corral_model_unloads_total", reason="runner exited") == 2
    assert metrics("corral_models_loaded") == 0
    assert metrics("corral_requests_total", endpoint="/api/generate", method="POST", model="m:latest",
                   status="200") == 2
    assert metrics("corral_requests_total", endpoint="/api/generate", method="POST", model="m:latest",
                   status="400") == 1
