"""The scheduler with corral.testing's fakes: keep_alive, eviction, parallel slots, the queue, reloads,
dead runners and load timeouts, in seconds and without llama.cpp. Every test drives the kernel the
way the HTTP frontends do (``kernel.inference``) and checks what a client would see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import (
    Event,
    GenerateRequest,
    ModelFacts,
    ModelLoaded,
    ModelUnloaded,
    RunnerStarted,
    RunnerStopped,
    RuntimeFailure,
    ServerBusy,
    hookimpl,
)
from corral.testing import FakeRuntime, add_model, make_kernel, runtime_plugin


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    @hookimpl
    def on_event(self, event: Event) -> None:
        self.seen.append(event)

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.seen if isinstance(event, kind)]


def run(tmp_path: Path, runtime: FakeRuntime, scenario: Callable[[Any, Events], Awaitable[Any]],
        *, models: tuple[str, ...] = ("a", "b"), **environ: str) -> Any:
    events = Events()
    kernel = make_kernel(tmp_path, runtime_plugin(runtime), events,
                         environ={"CORRAL_STORE": "memory", **environ})

    async def main() -> Any:
        async with kernel.running():
            for name in models:
                await add_model(kernel, name, weights=name.encode())
            return await scenario(kernel, events)

    return anyio.run(main)


async def generate(kernel: Any, model: str, **fields: Any) -> str:
    text = ""
    async for reply in kernel.inference.generate(GenerateRequest(model=model, prompt="hi", **fields)):
        text += reply.text
    return text


def loaded_names(kernel: Any) -> list[str]:
    return sorted(entry.name for entry in kernel.scheduler.loaded())


def test_a_model_loads_once_and_answers(tmp_path: Path) -> None:
    runtime = FakeRuntime(tokens=("Hi", " there"))

    async def scenario(kernel: Any, events: Events) -> None:
        assert await generate(kernel, "a") == "Hi there"
        assert await generate(kernel, "a") == "Hi there"
        assert len(runtime.loads) == 1 and loaded_names(kernel) == ["a:latest"]
        assert len(runtime.described) == 1  # facts are asked for once per model

    run(tmp_path, runtime, scenario)
    assert runtime.closed


def test_keep_alive_expires_and_a_request_can_change_it(tmp_path: Path) -> None:
    runtime = FakeRuntime()

    async def scenario(kernel: Any, events: Events) -> None:
        await generate(kernel, "a", keep_alive=0.2)
        assert loaded_names(kernel) == ["a:latest"]
        await anyio.sleep(0.5)
        assert loaded_names(kernel) == []
        assert [event.reason for event in events.of(ModelUnloaded)] == ["expired"]
        await generate(kernel, "a", keep_alive=0)
        await anyio.sleep(0.05)
        assert loaded_names(kernel) == []
        await generate(kernel, "a", keep_alive=float("inf"))
        await anyio.sleep(0.3)
        assert loaded_names(kernel) == ["a:latest"]
        assert kernel.scheduler.loaded()[0].expires_at is None

    run(tmp_path, runtime, scenario, OLLAMA_KEEP_ALIVE="10m")


def test_the_idle_model_is_evicted_for_another(tmp_path: Path) -> None:
    runtime = FakeRuntime()

    async def scenario(kernel: Any, events: Events) -> None:
        await generate(kernel, "a")
        await generate(kernel, "b")
        assert loaded_names(kernel) == ["b:latest"]
        assert [(e.name, e.reason) for e in events.of(ModelUnloaded)] == [("a:latest", "unloaded")]

    run(tmp_path, runtime, scenario)


def test_max_loaded_models_keeps_several_and_a_busy_one_is_waited_for(tmp_path: Path) -> None:
    runtime = FakeRuntime(token_delay=0.05)

    async def scenario(kernel: Any, events: Events) -> list[str]:
        order: list[str] = []

        async def one(model: str) -> None:
            await generate(kernel, model)
            order.append(model)

        async with anyio.create_task_group() as group:
            group.start_soon(one, "a")
            await anyio.sleep(0.05)
            group.start_soon(one, "b")  # a is busy: b waits for it, then takes its place
        assert loaded_names(kernel) == ["b:latest"]
        return order

    assert run(tmp_path, runtime, scenario) == ["a", "b"]

    runtime = FakeRuntime()

    async def both(kernel: Any, events: Events) -> None:
        await generate(kernel, "a")
        await generate(kernel, "b")
        assert loaded_names(kernel) == ["a:latest", "b:latest"]

    run(tmp_path / "two", runtime, both, OLLAMA_MAX_LOADED_MODELS="2")


def test_parallel_slots_bound_concurrent_requests_on_a_model(tmp_path: Path) -> None:
    runtime = FakeRuntime(token_delay=0.02)

    async def scenario(kernel: Any, events: Events) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(generate, kernel, "a")
        assert runtime.models[0].most_active == 2

    run(tmp_path, runtime, scenario, OLLAMA_NUM_PARALLEL="2")


def test_a_full_queue_answers_busy(tmp_path: Path) -> None:
    runtime = FakeRuntime(token_delay=0.05)

    async def scenario(kernel: Any, events: Events) -> list[str]:
        await generate(kernel, "a")
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await generate(kernel, "a")
                outcomes.append("ok")
            except ServerBusy as error:
                outcomes.append(f"{error.status} {error.message}")

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one)
                await anyio.sleep(0.01)
        return outcomes

    outcomes = run(tmp_path, runtime, scenario, OLLAMA_NUM_PARALLEL="1", OLLAMA_MAX_QUEUE="2")
    # one runs, two wait, the fourth is refused with Ollama's message
    assert sorted(outcomes) == sorted(["ok", "ok", "ok",
                                       "503 server busy, please try again.  maximum pending requests exceeded"])


def test_a_request_whose_model_loads_for_it_counts_as_running(tmp_path: Path) -> None:
    """Issue 21: with OLLAMA_NUM_PARALLEL=1 and OLLAMA_MAX_QUEUE=1, five requests 50 ms apart while
    their model loads: two are served, as Ollama does (the one loading the model runs; one waits),
    and three are refused. (The issue's requests followed an /api/embed, which then made the model
    reload; a model that generates now answers embeddings from the same runner.)"""
    runtime = FakeRuntime(load_delay=0.4, token_delay=0.01)

    async def scenario(kernel: Any, events: Events) -> list[str]:
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await generate(kernel, "a")
                outcomes.append("200")
            except ServerBusy:
                outcomes.append("503")

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
                await anyio.sleep(0.05)
        return outcomes

    outcomes = run(tmp_path, runtime, scenario, OLLAMA_NUM_PARALLEL="1", OLLAMA_MAX_QUEUE="1")
    assert sorted(outcomes) == ["200", "200", "503", "503", "503"]


def test_a_change_of_load_options_reloads_the_model(tmp_path: Path) -> None:
    runtime = FakeRuntime()

    async def scenario(kernel: Any, events: Events) -> None:
        await generate(kernel, "a", options={"num_ctx": 512})
        await generate(kernel, "a", options={"num_ctx": 512, "temperature": 0.1})  # sampling only
        await generate(kernel, "a", options={"num_ctx": 1024})
        assert runtime.models[0].unloaded and not runtime.models[1].unloaded

    run(tmp_path, runtime, scenario)
    assert [spec.options["num_ctx"] for spec in runtime.loads] == [512, 1024]


def test_num_ctx_is_capped_to_the_trained_context(tmp_path: Path) -> None:
    runtime = FakeRuntime(facts=ModelFacts(context_length=256))

    async def scenario(kernel: Any, events: Events) -> None:
        await generate(kernel, "a", options={"num_ctx": 8192})
        assert kernel.scheduler.loaded()[0].context_length == 256

    run(tmp_path, runtime, scenario)
    assert runtime.loads[0].options["num_ctx"] == 256


def test_a_dead_runner_fails_its_request_and_the_next_reloads(tmp_path: Path) -> None:
    runtime = FakeRuntime(crash_after=1)

    async def scenario(kernel: Any, events: Events) -> None:
        with pytest.raises(RuntimeFailure, match="terminated"):
            await generate(kernel, "a")
        await anyio.sleep(0.05)
        assert loaded_names(kernel) == []
        runtime.crash_after = None
        assert await generate(kernel, "a") == "Hello, world!"
        assert len(runtime.loads) == 2
        stopped = events.of(RunnerStopped)
        assert stopped[0].crashed and stopped[0].reason == "runner exited"
        assert [e.reason for e in events.of(ModelUnloaded)] == ["runner exited"]

    run(tmp_path, runtime, scenario)


def test_a_failed_load_is_the_requests_error_and_the_next_request_tries_again(tmp_path: Path) -> None:
    runtime = FakeRuntime(fail_loads=1)

    async def scenario(kernel: Any, events: Events) -> None:
        with pytest.raises(RuntimeFailure, match="fake runtime failed to load a:latest"):
            await generate(kernel, "a")
        assert await generate(kernel, "a") == "Hello, world!"
        assert [(e.crashed, e.reason) for e in events.of(RunnerStopped)][:1] == [
            (True, "fake runtime failed to load a:latest")]
        assert len(events.of(ModelLoaded)) == 1

    run(tmp_path, runtime, scenario)


def test_a_hung_load_times_out_and_never_delays_another_model(tmp_path: Path) -> None:
    """Issue 15: OLLAMA_LOAD_TIMEOUT bounds a load; meanwhile another model loads and serves."""
    runtime = FakeRuntime(hang=("a:latest",))

    async def scenario(kernel: Any, events: Events) -> None:
        failure: list[BaseException] = []

        async def hung() -> None:
            try:
                await generate(kernel, "a")
            except RuntimeFailure as error:
                failure.append(error)

        async with anyio.create_task_group() as group:
            group.start_soon(hung)
            await anyio.sleep(0.1)
            with anyio.fail_after(0.5):
                assert await generate(kernel, "b") == "Hello, world!"  # while a still hangs
            assert not failure
        assert "timed out waiting for a:latest to load after 1s (OLLAMA_LOAD_TIMEOUT)" in str(failure[0])
        stopped = [e for e in events.of(RunnerStopped) if e.name == "a:latest"]
        assert stopped and stopped[0].reason == "load timed out" and not stopped[0].crashed
        assert "a:latest" not in loaded_names(kernel)

    run(tmp_path, runtime, scenario, OLLAMA_LOAD_TIMEOUT="1s", OLLAMA_MAX_LOADED_MODELS="2")


def test_events_of_a_models_life(tmp_path: Path) -> None:
    runtime = FakeRuntime(node="10.0.0.7")

    async def scenario(kernel: Any, events: Events) -> None:
        await generate(kernel, "a", keep_alive=0)
        await anyio.sleep(0.05)

    events = Events()
    kernel = make_kernel(tmp_path, runtime_plugin(runtime), events, environ={"CORRAL_STORE": "memory"})

    async def main() -> None:
        async with kernel.running():
            await add_model(kernel, "a")
            await scenario(kernel, events)

    anyio.run(main)
    kinds = [(type(e).__name__, getattr(e, "reason", None)) for e in events.seen
             if isinstance(e, (RunnerStarted, ModelLoaded, ModelUnloaded, RunnerStopped))]
    assert kinds == [("RunnerStarted", None), ("ModelLoaded", None), ("RunnerStopped", "unloaded"),
                     ("ModelUnloaded", "unloaded")]
    loaded = events.of(ModelLoaded)[0]
    assert (loaded.name, loaded.runtime, loaded.node) == ("a:latest", "fake", "10.0.0.7")
    assert events.of(RunnerStopped)[0].crashed is False


def test_shutdown_unloads_everything_and_closes_runtimes(tmp_path: Path) -> None:
    runtime = FakeRuntime()

    async def scenario(kernel: Any, events: Events) -> None:
        await generate(kernel, "a", keep_alive=-1)

    run(tmp_path, runtime, scenario)
    assert runtime.loaded == [] and runtime.closed


def test_a_lease_tells_loading_for_itself_from_queueing(tmp_path: Path) -> None:
    runtime = FakeRuntime(load_delay=0.3)

    async def scenario(kernel: Any, events: Events) -> dict[str, tuple[int, int]]:
        info = await kernel.store.get("a")
        durations: dict[str, tuple[int, int]] = {}

        async def lease(label: str) -> None:
            async with kernel.scheduler.lease(info, {}, keep_alive=None) as held:
                durations[label] = (held.load_duration_ns, held.queue_duration_ns)

        async with anyio.create_task_group() as group:
            group.start_soon(lease, "loader")
            await anyio.sleep(0.1)
            group.start_soon(lease, "follower")
        return durations

    durations = run(tmp_path, runtime, scenario)
    load, queue = durations["loader"]
    assert load >= 0.3e9 and queue < 0.1e9  # it loaded the model: loading, not queueing
    load, queue = durations["follower"]
    assert load >= 0.15e9 and queue == load  # it waited for another request's load
