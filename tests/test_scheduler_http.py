"""The scheduler as clients see it over real HTTP: a server process whose runtime is corral.testing's
FakeRuntime (scripted load times and hangs), and, for the llama.cpp runtime, a real runner stopped
in the middle of its load."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest

from corral import LoadSpec, ModelFiles
from servers import runner_pids, running_server
from support import REPO

pytestmark = pytest.mark.slow


def fake_server(env: dict[str, str], *, models: list[str], **runtime: object):
    config = json.dumps({"models": models, "runtime": runtime})
    return running_server(env, command=[sys.executable, str(REPO / "tests" / "fake_server.py"), config])


def test_a_hung_load_fails_after_OLLAMA_LOAD_TIMEOUT_and_delays_nobody_else(clean_env: dict[str, str]) -> None:
    """Issue 15: a runner that never gets ready. Meanwhile /api/version answers another client within
    a second and a second model loads and serves; the hung request ends with the timeout."""
    env = {**clean_env, "OLLAMA_LOAD_TIMEOUT": "4s", "OLLAMA_MAX_LOADED_MODELS": "2"}
    with fake_server(env, models=["stuck", "quick"], hang=["stuck:latest"]) as url:
        outcome: dict[str, object] = {}

        def stuck() -> None:
            started = time.monotonic()
            response = httpx.post(f"{url}/api/generate", json={"model": "stuck", "prompt": "hi", "stream": False},
                                  timeout=60)
            outcome.update(status=response.status_code, body=response.json(), seconds=time.monotonic() - started)

        thread = threading.Thread(target=stuck)
        thread.start()
        time.sleep(0.3)
        with httpx.Client(timeout=10) as other:
            for _ in range(5):
                started = time.monotonic()
                assert other.get(f"{url}/api/version").status_code == 200
                assert time.monotonic() - started < 1.0
                time.sleep(0.2)
            started = time.monotonic()
            answer = other.post(f"{url}/api/generate", json={"model": "quick", "prompt": "hi", "stream": False})
            assert answer.status_code == 200 and answer.json()["response"] == "Hello, world!"
            assert time.monotonic() - started < 1.0
            assert "status" not in outcome  # the stuck load is still going
        thread.join(timeout=30)
        assert outcome["status"] == 500
        assert outcome["body"] == {"error": "timed out waiting for stuck:latest to load after 4s (OLLAMA_LOAD_TIMEOUT)"}
        assert 3.5 < outcome["seconds"] < 15
        running = httpx.get(f"{url}/api/ps").json()["models"]
        assert [model["name"] for model in running] == ["quick:latest"]


def test_five_requests_while_their_model_loads_get_two_answers_as_in_ollama(clean_env: dict[str, str]) -> None:
    """Issue 21: OLLAMA_NUM_PARALLEL=1, OLLAMA_MAX_QUEUE=1, five requests 50 ms apart while their
    model loads: the request loading the model runs, one waits, three get 503. (The issue's requests
    followed an /api/embed, which then reloaded the model; it no longer does.)"""
    env = {**clean_env, "OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "1"}
    with fake_server(env, models=["m"], load_delay=0.6, token_delay=0.02) as url:
        statuses: list[int] = []
        errors: list[str] = []

        def one() -> None:
            response = httpx.post(f"{url}/api/generate", json={"model": "m", "prompt": "hi", "stream": False},
                                  timeout=60)
            statuses.append(response.status_code)
            if response.status_code != 200:
                errors.append(response.json()["error"])

        threads = [threading.Thread(target=one) for _ in range(5)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(statuses) == [200, 200, 503, 503, 503]
    assert set(errors) == {"server busy, please try again.  maximum pending requests exceeded"}


class LocalFiles:
    """A BlobReader over one local file, as a store with local paths gives it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def blob_path(self, digest: str) -> Path | None:
        return self.path

    async def read_blob(self, digest: str, offset: int = 0):
        yield self.path.read_bytes()[offset:]


def test_a_llamacpp_load_cancelled_midway_stops_its_runner(tmp_path: Path, smollm2_gguf: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What the scheduler's load timeout does to a real runner: cancelling the load while the runner
    starts ends that process (no runner is left behind)."""
    from corral.plugins.runtime_llamacpp.runtime import LlamaCppRuntime

    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))  # how runner_pids tells this test's runners apart

    model = tmp_path / "model.gguf"
    model.symlink_to(smollm2_gguf)
    files = ModelFiles(name="smol", format="gguf", model="sha256:" + "0" * 64, blobs=LocalFiles(model))
    seen: list[int] = []

    async def scenario() -> bool:
        runtime = LlamaCppRuntime()
        with anyio.CancelScope() as scope:

            async def cancel_once_started() -> None:
                with anyio.fail_after(60):
                    while not (pids := runner_pids(tmp_path)):
                        await anyio.sleep(0.005)
                seen.extend(pids)
                scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(cancel_once_started)
                async with runtime.load(LoadSpec(files=files, options={"num_ctx": 512})):
                    await anyio.sleep_forever()
        return scope.cancelled_caught

    assert anyio.run(scenario)
    assert seen
    deadline = time.monotonic() + 10
    while runner_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner_pids(tmp_path) == []
