"""A complete third-party corral plugin: a runtime for models of format "echo".

It shows the three things a runtime plugin does: declare a setting, register a runtime with a lazy
factory, and implement the Runtime and LoadedModel protocols with async methods.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from corral import CompletionChunk, CompletionRequest, LoadSpec, RuntimeSpec, SettingSpec, hookimpl


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(key="echo.prefix", default="", help="text put before every echoed prompt")]


@hookimpl
def register_runtimes(settings: Any) -> list[RuntimeSpec]:
    return [
        RuntimeSpec(
            name="echo",
            formats=("echo",),
            priority=0,
            factory=lambda kernel: EchoRuntime(prefix=kernel.settings.plugin["echo.prefix"]),
            description="answers with the prompt it was given",
        )
    ]


class EchoRuntime:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @asynccontextmanager
    async def load(self, spec: LoadSpec) -> AsyncIterator[EchoModel]:
        yield EchoModel(self.prefix)


class EchoModel:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def complete(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        started = time.perf_counter_ns()
        words = (self.prefix + request.prompt).split(" ")
        limit = request.options.get("num_predict", -1)
        if limit >= 0:
            words = words[:limit]
        for index, word in enumerate(words):
            yield CompletionChunk(text=word if index == 0 else " " + word)
        done_reason = "length" if limit >= 0 and len(words) == limit else "stop"
        yield CompletionChunk(
            done=True,
            done_reason=done_reason,
            prompt_tokens=len(request.prompt.split()),
            completion_tokens=len(words),
            eval_duration_ns=time.perf_counter_ns() - started,
        )

    async def embed(self, inputs: list[str], *, truncate: bool = True) -> tuple[list[list[float]], int]:
        return [[float(len(text))] for text in inputs], sum(len(text.split()) for text in inputs)

    async def wait(self) -> None:
        await anyio.sleep_forever()
