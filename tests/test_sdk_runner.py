"""corral.sdk.runner over its pipe transport, with a small engine (tests/echo_engine.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from corral import CompletionRequest, RuntimeFailure
from corral.sdk.runner import RunnerClient, RunnerSpec, SpareRunners, open_pipe, start_runner
from servers import processes_with

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}


def spec(**config: object) -> RunnerSpec:
    return RunnerSpec(engine="echo_engine:Echo", config=config)


@asynccontextmanager
async def echo_runner(ready_timeout: float | None = None, **config: object) -> AsyncIterator[RunnerClient]:
    process = await start_runner(env=ENV)
    async with open_pipe(process, name="echo") as transport, \
            RunnerClient.connect(transport, spec(**config), name="echo", ready_timeout=ready_timeout) as client:
        yield client


def child_check(parent_pid: int, seen_parent: int | None = None) -> int:
    """The exit code of a child that runs the orphan check told its parent is ``parent_pid``, seeing
    ``seen_parent`` as its parent (its real one by default)."""
    pretend = f"os.getppid = lambda: {seen_parent}; " if seen_parent is not None else ""
    code = f"import os; {pretend}from corral.sdk.runner import die_with_parent; die_with_parent()"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "CORRAL_PARENT_PID": str(parent_pid)},
                          timeout=60).returncode


def test_a_child_of_pid_1_is_no_orphan_but_one_whose_parent_changed_is() -> None:
    assert child_check(1, seen_parent=1) == 0  # the server is PID 1 in a container without an init
    assert child_check(os.getpid()) == 0
    assert child_check(4242, seen_parent=1) == 1  # the server died before the death signal was asked for
    assert child_check(4242) == 1  # and the child went to a subreaper other than PID 1


async def text_of(client: RunnerClient, prompt: str) -> tuple[str, str | None]:
    chunks = [chunk async for chunk in client.complete(CompletionRequest(prompt=prompt))]
    return "".join(chunk.text for chunk in chunks), chunks[-1].done_reason


@pytest.mark.anyio
async def test_requests_are_matched_to_their_replies_and_stray_output_stays_out() -> None:
    async with echo_runner() as client:
        assert (client.context_length, client.slots) == (64, 2)
        results = {}

        async def one(prompt: str) -> None:
            results[prompt] = await text_of(client, prompt)

        async with anyio.create_task_group() as group:
            group.start_soon(one, "a b c d")
            group.start_soon(one, "one two three")
        assert results == {"a b c d": ("a b c d ", "stop"), "one two three": ("one two three ", "stop")}
        assert await client.tokenize("hello there") == [5, 5]


@pytest.mark.anyio
async def test_closing_a_stream_early_cancels_it_in_the_runner() -> None:
    async with echo_runner() as client:
        stream = client.complete(CompletionRequest(prompt="w " * 1000))
        assert (await stream.__anext__()).text == "w "
        await stream.aclose()  # sends cancel; the slot is free for the next request
        assert await text_of(client, "next") == ("next ", "stop")


@pytest.mark.anyio
async def test_an_engine_that_cannot_load_is_a_clear_error() -> None:
    with pytest.raises(RuntimeFailure, match="llama runner failed to load the model: ValueError: no such file"):
        async with echo_runner(fail="no such file"):
            pass


@pytest.mark.anyio
async def test_a_slow_load_times_out() -> None:
    with pytest.raises(RuntimeFailure, match="did not load the model within 0.5 seconds"):
        async with echo_runner(ready_timeout=0.5, load_seconds=30):
            pass


@pytest.mark.anyio
async def test_a_runner_that_dies_fails_its_requests_with_the_reason() -> None:
    async with echo_runner() as client:
        stream = client.complete(CompletionRequest(prompt="w " * 10000))
        await stream.__anext__()
        os.kill(client.transport.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        with pytest.raises(RuntimeFailure, match="llama runner process has terminated: signal 9"):
            async for _chunk in stream:
                pass
        with anyio.fail_after(5):
            await client.wait()
        with pytest.raises(RuntimeFailure, match="has terminated: signal 9"):
            await client.tokenize("late")


@pytest.mark.anyio
async def test_refills_at_once_and_during_close_leave_no_process_behind() -> None:
    marker = f"SPARE_TEST={uuid.uuid4().hex}"
    spares = SpareRunners(["echo_engine"], env={**ENV, **dict([marker.split("=")])})
    try:
        async with anyio.create_task_group() as group:  # two loads that finish together
            group.start_soon(spares.refill)
            group.start_soon(spares.refill)
        assert len(processes_with(b"corral.sdk.runner", marker)) == 1
        await spares.aclose()
        assert processes_with(b"corral.sdk.runner", marker) == []

        spares = SpareRunners(["echo_engine"], env={**ENV, **dict([marker.split("=")])})
        async with anyio.create_task_group() as group:  # a refill still starting its process when the server stops
            group.start_soon(spares.refill)
            group.start_soon(spares.aclose)
        assert spares.spare is None and processes_with(b"corral.sdk.runner", marker) == []
    finally:
        for pid in processes_with(b"corral.sdk.runner", marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_a_spare_runner_takes_the_next_load() -> None:
    spares = SpareRunners(["echo_engine"], env=ENV)
    try:
        first, was_spare = await spares.take()
        assert not was_spare
        await spares.refill()
        second, was_spare = await spares.take()
        assert was_spare and second is not first
        async with open_pipe(second, name="echo") as transport, \
                RunnerClient.connect(transport, spec(), name="echo") as client:
            assert await text_of(client, "warm") == ("warm ", "stop")
        first.kill()
        await first.wait()
    finally:
        await spares.aclose()
