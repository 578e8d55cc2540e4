"""Pulls and pushes of any source become TransferProgress and TransferFinished events, emitted in one
kernel-level place (``kernel.source_for``), with corral.testing's FakeSource standing in for a hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from corral import Event, PullError, TransferFinished, TransferProgress, hookimpl, parse_reference
from corral.testing import FakeSource, make_kernel, source_plugin


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    @hookimpl
    def on_event(self, event: Event, kernel: Any) -> None:
        assert kernel is not None
        self.seen.append(event)


def transfer(tmp_path: Path, source: FakeSource, direction: str, name: str, *, before: tuple[str, ...] = ()):
    events = Events()
    kernel = make_kernel(tmp_path, source_plugin(source), events, environ={"CORRAL_STORE": "memory"})

    async def main() -> list[Any]:
        async with kernel.running():
            for earlier in before:
                async for _ in kernel.source_for(earlier).pull(parse_reference(earlier)):
                    pass
            events.seen.clear()
            found = kernel.source_for(name)
            stream = found.pull if direction == "pull" else found.push
            return [progress async for progress in stream(parse_reference(name))]

    return anyio.run(main), events


def test_a_pull_reports_its_bytes_and_its_end(tmp_path: Path) -> None:
    source = FakeSource(weights=b"w" * 4096, chunk=512)
    lines, events = transfer(tmp_path, source, "pull", "fake.example/ns/model")
    assert lines[-1].status == "success"
    progress = [e for e in events.seen if isinstance(e, TransferProgress)]
    finished = [e for e in events.seen if isinstance(e, TransferFinished)]
    assert progress and {(e.direction, e.model) for e in progress} == {("pull", "fake.example/ns/model:latest")}
    assert sum(e.bytes for e in progress) == 4096 - 512  # what moved after the first line
    assert len(finished) == 1 and finished[0].error is None and finished[0].bytes == 4096 - 512
    assert finished[0].seconds >= 0


def test_a_failed_pull_finishes_with_its_error(tmp_path: Path) -> None:
    source = FakeSource(weights=b"w" * 4096, chunk=512, fail=PullError("the hub went away"))
    with pytest.raises(Exception) as caught:
        transfer(tmp_path, source, "pull", "fake.example/ns/model")
    assert "the hub went away" in str(caught.value) or caught.group_contains(PullError)
    # the events of a failed run are checked through a kernel we keep
    events = Events()
    kernel = make_kernel(tmp_path / "again", source_plugin(source), events, environ={"CORRAL_STORE": "memory"})

    async def main() -> None:
        async with kernel.running():
            with pytest.raises(PullError):
                async for _ in kernel.source_for("fake.example/ns/model").pull(parse_reference("fake.example/ns/model")):
                    pass

    anyio.run(main)
    finished = [e for e in events.seen if isinstance(e, TransferFinished)]
    assert [(e.direction, e.error) for e in finished] == [("pull", "the hub went away")]


def test_a_push_of_layers_the_remote_has_moves_nothing(tmp_path: Path) -> None:
    source = FakeSource()
    lines, events = transfer(tmp_path, source, "push", "fake.example/ns/model", before=("fake.example/ns/model",))
    assert lines[-1].status == "success"
    finished = [e for e in events.seen if isinstance(e, TransferFinished)]
    assert [(e.direction, e.bytes, e.error) for e in finished] == [("push", 0, None)]
    assert not [e for e in events.seen if isinstance(e, TransferProgress)]


def test_a_pull_stopped_by_its_client_finishes_as_cancelled(tmp_path: Path) -> None:
    events = Events()
    source = FakeSource(weights=b"w" * 4096, chunk=256)
    kernel = make_kernel(tmp_path, source_plugin(source), events, environ={"CORRAL_STORE": "memory"})

    async def main() -> None:
        async with kernel.running():
            lines = kernel.source_for("fake.example/ns/m").pull(parse_reference("fake.example/ns/m"))
            async for progress in lines:
                if progress.completed:
                    break
            await lines.aclose()

    anyio.run(main)
    finished = [e for e in events.seen if isinstance(e, TransferFinished)]
    assert [e.error for e in finished] == ["cancelled"]

