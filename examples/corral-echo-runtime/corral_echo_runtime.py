"""A complete third-party corral plugin: models of its own format, "echo", and a runtime for them.

It shows what a plugin that brings a model format does, importing only corral's public surface:

- a setting (``[echo] prefix = "..."`` in corral's config file);
- a model source: ``corral pull echo/<name>`` makes a model whose weights layer is a small JSON
  file in the echo format (the source owns every ``echo/...`` reference);
- a runtime: ``describe`` reads that file through the blob accessor (a stream: it never assumes a
  local file) and tells the kernel what the model is; ``load`` yields a model that answers
  generate and chat by repeating the prompt, word by word, and embeds text as letter counts.

Everything else, the HTTP API, templates, the scheduler, ``corral run``, is corral's.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from corral import (
    MEDIA_MODEL,
    MEDIA_TEMPLATE,
    MEDIA_TYPE_CONFIG,
    CompletionChunk,
    CompletionRequest,
    InvalidRequest,
    Kernel,
    LoadSpec,
    Manifest,
    ModelFacts,
    ModelFiles,
    ModelRef,
    Progress,
    RuntimeSpec,
    SettingSpec,
    SourceSpec,
    hookimpl,
)

FORMAT = "echo"
NAMESPACE = "echo"
TEMPLATE = "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}"
"""The prompt an echo model sees: the system message, then the last user message."""


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(key="echo.prefix", default="", help="text put before every echoed prompt")]


@hookimpl
def register_runtimes(settings: Any) -> list[RuntimeSpec]:
    return [RuntimeSpec(name="echo", formats=(FORMAT,), priority=0,
                        factory=lambda kernel: EchoRuntime(prefix=kernel.settings.plugin["echo.prefix"]),
                        description="answers with the prompt it was given")]


@hookimpl
def register_sources(settings: Any) -> list[SourceSpec]:
    return [SourceSpec(name="echo", factory=EchoSource, description="echo/<name>: makes an echo model")]


@hookimpl
def resolve_reference(reference: str, settings: Any) -> str | None:
    return "echo" if reference.lower().startswith(NAMESPACE + "/") else None


# -- the source: models in the echo format ----------------------------------------------------------


class EchoSource:
    name = "echo"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        store = self.kernel.store
        yield Progress(status="pulling manifest")
        weights = json.dumps({"echo": 1, "name": ref.model, "context_length": 4096}).encode()
        model = await store.add_bytes(weights, MEDIA_MODEL)
        yield Progress(status=f"pulling {model.digest[7:19]}", digest=model.digest, total=model.size,
                       completed=model.size)
        template = await store.add_bytes(TEMPLATE.encode(), MEDIA_TEMPLATE)
        config = await store.add_json({"model_format": FORMAT, "model_family": "echo", "model_families": ["echo"],
                                       "model_type": "0", "file_type": "echo"}, MEDIA_TYPE_CONFIG)
        yield Progress(status="writing manifest")
        await store.put(ref, Manifest(config=config, layers=[model, template]))
        yield Progress(status="success")

    async def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        raise InvalidRequest("echo models live only where they are made")
        yield  # an async generator, like every source's push


# -- the runtime ------------------------------------------------------------------------------------


class EchoRuntime:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def describe(self, files: ModelFiles) -> ModelFacts:
        header = await _read_weights(files)
        return ModelFacts(architecture="echo", parameter_count=0, context_length=int(header.get("context_length", 4096)))

    @asynccontextmanager
    async def load(self, spec: LoadSpec) -> AsyncIterator[EchoModel]:
        await _read_weights(spec.files)
        yield EchoModel(self.prefix, context_length=int(spec.options.get("num_ctx", 4096)))

    async def close(self) -> None:
        pass


async def _read_weights(files: ModelFiles) -> dict[str, Any]:
    """The echo model file, read as a stream: corral may keep blobs where no local path exists."""
    data = b"".join([chunk async for chunk in files.read(files.model)])
    try:
        header = json.loads(data)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("echo") != 1:
        raise InvalidRequest(f"{files.name} is not an echo model")
    return header


class EchoModel:
    node = None

    def __init__(self, prefix: str, *, context_length: int) -> None:
        self.prefix = prefix
        self.context_length = context_length
        self.closed = anyio.Event()

    async def complete(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        started = time.perf_counter_ns()
        words = (self.prefix + request.prompt).split(" ")
        limit = request.options.get("num_predict", -1)
        if limit >= 0:
            words = words[:limit]
        for index, word in enumerate(words):
            yield CompletionChunk(text=word if index == 0 else " " + word)
        done_reason = "length" if limit >= 0 and len(words) == limit else "stop"
        yield CompletionChunk(done=True, done_reason=done_reason, prompt_tokens=len(request.prompt.split()),
                              completion_tokens=len(words), eval_duration_ns=time.perf_counter_ns() - started)

    async def embed(self, inputs: list[str], *, truncate: bool = True) -> tuple[list[list[float]], int]:
        letters = "abcdefghijklmnopqrstuvwxyz"
        vectors = [[float(text.lower().count(letter)) for letter in letters] for text in inputs]
        return vectors, sum(len(text.split()) for text in inputs)

    async def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    async def wait(self) -> None:
        await self.closed.wait()
