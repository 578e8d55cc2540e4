"""The server side of the llama.cpp runtime: starts runner processes and talks protocol.py to them."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from corral.errors import CorralError, InvalidRequest, RuntimeFailure, ServerBusy
from corral.types import CompletionChunk, CompletionRequest, LoadSpec

from .cpu_share import runner_settings
from .protocol import decode, encode
from .reaper import RUNNER_MODULE

log = logging.getLogger(__name__)

MAX_LINE = 512 * 1024 * 1024
SHUTDOWN_SECONDS = 5.0


class LlamaCppRuntime:
    def __init__(self, *, debug: int = 0, stream_interval_ms: float = 0.0) -> None:
        self.debug = debug
        self.stream_interval_ms = stream_interval_ms

    @asynccontextmanager
    async def load(self, spec: LoadSpec) -> AsyncIterator[RunnerModel]:
        """Start a runner for ``spec`` and yield it once the model is loaded; stop it on exit."""
        config = {"model_path": spec.model_path, "adapters": list(spec.adapters), "verbose": self.debug > 1,
                  "stream_interval_ms": self.stream_interval_ms,
                  "num_parallel": spec.num_parallel, "embedding": spec.embedding, **spec.options,
                  **runner_settings(spec.options.get("num_thread", 0))}
        process = await anyio.open_process(
            [sys.executable, "-m", RUNNER_MODULE, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        model = RunnerModel(process, spec.name)
        async with anyio.create_task_group() as group:
            group.start_soon(model.read_stderr)
            try:
                await model.wait_ready()
                group.start_soon(model.read_stdout)
                yield model
            finally:
                with anyio.CancelScope(shield=True):
                    await model.stop()
                group.cancel_scope.cancel()


class Inbox:
    """The replies to one request, in order. Lighter than a memory object stream: a reply that
    is already there is taken without yielding to the event loop, which matters once per token."""

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, message: dict[str, Any]) -> None:
        self.items.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.items.popleft()


class RunnerModel:
    """A loaded model: one runner process, many concurrent requests multiplexed by id."""

    def __init__(self, process: anyio.abc.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.stdout = BufferedByteReceiveStream(process.stdout)  # type: ignore[arg-type]
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.pending: dict[int, Any] = {}
        self.ids = itertools.count(1)
        self.write_lock = anyio.Lock()
        self.dead = anyio.Event()
        self.context_length = 0
        self.slots = 1

    # -- process plumbing -------------------------------------------------------------------

    async def read_stderr(self) -> None:
        stream = BufferedByteReceiveStream(self.process.stderr)  # type: ignore[arg-type]
        while True:
            try:
                line = await stream.receive_until(b"\n", MAX_LINE)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text)
                log.debug("runner %s: %s", self.name, text)

    async def wait_ready(self) -> None:
        try:
            message = decode(await self.stdout.receive_until(b"\n", MAX_LINE))
        except (anyio.EndOfStream, anyio.IncompleteRead):
            await self._reap()
            raise RuntimeFailure(f"llama runner process has terminated: {self._exit_reason()}") from None
        if message.get("op") != "ready":
            await self._reap()
            raise RuntimeFailure(f"llama runner failed to load the model: {message.get('error', message)}")
        self.context_length = message["n_ctx"]
        self.slots = message["slots"]

    async def read_stdout(self) -> None:
        try:
            while True:
                message = decode(await self.stdout.receive_until(b"\n", MAX_LINE))
                inbox = self.pending.get(message.get("id"))
                if inbox is not None:
                    inbox.put(message)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            pass
        await self._reap()
        failure = {"error": f"llama runner process has terminated: {self._exit_reason()}", "status": 500}
        for inbox in list(self.pending.values()):
            inbox.put(failure)
        self.dead.set()

    async def _reap(self) -> None:
        with anyio.move_on_after(2):
            await self.process.wait()

    def _exit_reason(self) -> str:
        code = self.process.returncode
        if code is None:
            reason = "no answer"
        elif code < 0:
            reason = f"signal {-code}"
        else:
            reason = f"exit status {code}"
        detail = next((line for line in reversed(self.stderr_tail) if "error" in line.lower()), None)
        return f"{reason}: {detail}" if detail else reason

    async def stop(self) -> None:
        if self.process.returncode is None:
            try:
                await self._send({"op": "shutdown"})
            except RuntimeFailure:
                pass
            with anyio.move_on_after(SHUTDOWN_SECONDS):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self._reap()
        self.dead.set()

    async def _send(self, message: dict[str, Any]) -> None:
        async with self.write_lock:
            try:
                await self.process.stdin.send(encode(message))  # type: ignore[union-attr]
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise RuntimeFailure(f"llama runner process has terminated: {self._exit_reason()}") from None

    @asynccontextmanager
    async def _exchange(self, message: dict[str, Any]) -> AsyncIterator[Any]:
        if self.dead.is_set():
            raise RuntimeFailure(f"llama runner process has terminated: {self._exit_reason()}")
        request_id = next(self.ids)
        inbox = Inbox()
        self.pending[request_id] = inbox
        try:
            await self._send({**message, "id": request_id})
            yield request_id, inbox
        finally:
            self.pending.pop(request_id, None)

    @staticmethod
    def _raise(message: dict[str, Any]) -> None:
        status = message.get("status", 500)
        if status == 400:
            raise InvalidRequest(message["error"])
        if status == 503:
            raise ServerBusy(message["error"])
        raise RuntimeFailure(message["error"])

    # -- LoadedModel ------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        message = {"op": "complete", "prompt": request.prompt, "context": list(request.context),
                   "options": dict(request.options), "format": request.format}
        async with self._exchange(message) as (request_id, replies):
            finished = False
            try:
                while True:
                    reply = await replies.get()
                    if "error" in reply:
                        finished = True
                        self._raise(reply)
                    if reply.get("done"):
                        finished = True
                        yield CompletionChunk(
                            done=True, done_reason=reply["done_reason"], prompt_tokens=reply["prompt_tokens"],
                            completion_tokens=reply["completion_tokens"], prompt_duration_ns=reply["prompt_ns"],
                            eval_duration_ns=reply["eval_ns"], context=tuple(reply.get("context") or ()),
                        )
                        return
                    yield CompletionChunk(text=reply["text"])
            finally:
                if not finished and not self.dead.is_set():
                    with anyio.CancelScope(shield=True):
                        try:
                            await self._send({"op": "cancel", "id": request_id})
                        except CorralError:
                            pass

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        async with self._exchange(message) as (_request_id, replies):
            reply = await replies.get()
        if "error" in reply:
            self._raise(reply)
        return reply

    async def embed(self, inputs: list[str], *, truncate: bool = True) -> tuple[list[list[float]], int]:
        reply = await self._call({"op": "embed", "inputs": inputs, "truncate": truncate})
        return reply["embeddings"], reply["tokens"]

    async def tokenize(self, text: str) -> list[int]:
        return (await self._call({"op": "tokenize", "text": text}))["tokens"]

    async def wait(self) -> None:
        await self.dead.wait()
