"""The server side of a runner: a LoadedModel that talks to it through any Transport."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import anyio.abc

from corral.errors import CorralError, InvalidRequest, RuntimeFailure, ServerBusy
from corral.types import CompletionChunk, CompletionRequest

from .spec import RunnerSpec


class PeerGone(Exception):
    """The runner can be reached no more; the message says why (an exit status, a dead node)."""


def sole_error(group: BaseExceptionGroup) -> BaseException:
    """The one error inside nested task-group wrappers; the group itself when it holds several."""
    while len(group.exceptions) == 1 and isinstance(group.exceptions[0], BaseExceptionGroup):
        group = group.exceptions[0]
    return group.exceptions[0] if len(group.exceptions) == 1 else group


@asynccontextmanager
async def task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """An anyio task group whose single error comes out as itself, not wrapped in an exception
    group, so that a load failure reaches the user as the CorralError it is."""
    try:
        async with anyio.create_task_group() as group:
            yield group
    except BaseExceptionGroup as errors:
        raise sole_error(errors) from None


class Transport(Protocol):
    """Carries runner messages both ways, in order: a pipe, a socket, a remote actor."""

    async def send(self, message: dict[str, Any]) -> None:
        """Deliver one message to the runner; PeerGone when it is gone."""

    async def receive(self) -> dict[str, Any]:
        """The runner's next message; PeerGone once it is gone (its reason as the message)."""

    async def close(self) -> None:
        """End the runner: give it a moment to leave (a shutdown was sent), then stop it by force.
        Safe to call more than once."""


class Inbox:
    """The replies to one request, in order. Lighter than a memory object stream: a reply that
    is already there is taken without yielding to the event loop, which matters once per token."""

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.finished = False
        """The last reply has been taken: every reply but a completion's ``text`` is the last."""

    def put(self, message: dict[str, Any]) -> None:
        self.items.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        message = self.items.popleft()
        self.finished = "text" not in message
        return message


class RunnerClient:
    """A loaded model: one runner, many concurrent requests matched to their replies by id.

    Build it with :meth:`connect`. ``label`` names the runner in errors, as Ollama does
    ("llama runner process has terminated: ...").
    """

    def __init__(self, transport: Transport, name: str, *, label: str = "llama runner") -> None:
        self.transport = transport
        self.name = name
        self.label = label
        self.pending: dict[int, Inbox] = {}
        self.ids = itertools.count(1)
        self.dead = anyio.Event()
        self.gone_reason = ""
        self.ready: dict[str, Any] = {}
        self.context_length = 0
        self.slots = 1
        self.node: str | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, transport: Transport, spec: RunnerSpec, *, name: str, label: str = "llama runner",
                      ready_timeout: float | None = None) -> AsyncIterator[RunnerClient]:
        """Have the runner load ``spec``, wait for it to be ready (at most ``ready_timeout``
        seconds), serve requests while the block runs, then shut the runner down."""
        client = cls(transport, name, label=label)
        try:
            await client._load(spec, ready_timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client._stop()
            raise
        async with task_group() as group:
            group.start_soon(client._read)
            try:
                yield client
            finally:
                with anyio.CancelScope(shield=True):
                    await client._stop()
                group.cancel_scope.cancel()

    # -- plumbing ---------------------------------------------------------------------------

    def _terminated(self, reason: str) -> RuntimeFailure:
        return RuntimeFailure(f"{self.label} process has terminated: {reason}")

    async def _load(self, spec: RunnerSpec, ready_timeout: float | None) -> None:
        try:
            await self.transport.send({"op": "load", "engine": spec.engine, "config": dict(spec.config)})
            with anyio.fail_after(ready_timeout):
                message = await self.transport.receive()
        except PeerGone as gone:
            self._mark_dead(str(gone))
            raise self._terminated(str(gone)) from None
        except TimeoutError:
            raise RuntimeFailure(f"{self.label} did not load the model within {ready_timeout:g} seconds") from None
        if message.get("op") != "ready":
            raise RuntimeFailure(f"{self.label} failed to load the model: {message.get('error', message)}")
        self.ready = message
        self.context_length = message.get("n_ctx", 0)
        self.slots = message.get("slots", 1)
        self.node = message.get("node")

    async def _read(self) -> None:
        try:
            while True:
                message = await self.transport.receive()
                inbox = self.pending.get(message.get("id"))  # type: ignore[arg-type]
                if inbox is not None:
                    inbox.put(message)
        except PeerGone as gone:
            self._mark_dead(str(gone))
        failure = {"error": str(self._terminated(self.gone_reason)), "status": 500}
        for inbox in list(self.pending.values()):
            inbox.put(failure)

    def _mark_dead(self, reason: str) -> None:
        if not self.dead.is_set():
            self.gone_reason = reason
            self.dead.set()

    async def _stop(self) -> None:
        if not self.dead.is_set():
            try:
                await self.transport.send({"op": "shutdown"})
            except PeerGone:
                pass
        await self.transport.close()
        self._mark_dead("unloaded")

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self.transport.send(message)
        except PeerGone as gone:
            self._mark_dead(str(gone))
            raise self._terminated(str(gone)) from None

    @asynccontextmanager
    async def _exchange(self, message: dict[str, Any]) -> AsyncIterator[Inbox]:
        """Send a request and yield its replies; a caller that leaves before the last reply (its
        client went away) cancels the request, so the runner stops working for nobody."""
        if self.dead.is_set():
            raise self._terminated(self.gone_reason)
        request_id = next(self.ids)
        inbox = Inbox()
        self.pending[request_id] = inbox
        try:
            await self._send({**message, "id": request_id})
            yield inbox
        finally:
            self.pending.pop(request_id, None)
            if not inbox.finished and not self.dead.is_set():
                with anyio.CancelScope(shield=True):
                    try:
                        await self._send({"op": "cancel", "id": request_id})
                    except CorralError:
                        pass

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
        async with self._exchange(message) as replies:
            while True:
                reply = await replies.get()
                if "error" in reply:
                    self._raise(reply)
                if reply.get("done"):
                    yield CompletionChunk(
                        done=True, done_reason=reply["done_reason"], prompt_tokens=reply["prompt_tokens"],
                        completion_tokens=reply["completion_tokens"], prompt_duration_ns=reply["prompt_ns"],
                        eval_duration_ns=reply["eval_ns"], context=tuple(reply.get("context") or ()),
                    )
                    return
                yield CompletionChunk(text=reply["text"])

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        async with self._exchange(message) as replies:
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
