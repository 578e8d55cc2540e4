"""The pipe transport: a runner in a child process, JSON lines on its stdin and stdout.

The child is ``python -m corral.sdk.runner`` (see ``__main__.py``); its stderr is kept (the last
lines) to explain an exit.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .client import PeerGone, task_group
from .codec import decode, encode
from .process import child_env

log = logging.getLogger(__name__)

RUNNER_MODULE = "corral.sdk.runner"
MAX_LINE = 512 * 1024 * 1024
DECODED_INLINE_BYTES = 1024 * 1024
"""A longer message (embeddings, mostly) is decoded in a worker thread, not on the event loop."""
SHUTDOWN_SECONDS = 5.0


def runner_command(preload: Sequence[str] = (), delay: float = 0.0) -> list[str]:
    """The command line of a runner process that imports ``preload`` before its first message,
    ``delay`` seconds after it starts unless that message comes first."""
    return [sys.executable, "-m", RUNNER_MODULE, *(f"--preload={module}" for module in preload),
            *([f"--preload-delay={delay:g}"] if delay > 0 else [])]


async def start_runner(preload: Sequence[str] = (), env: Mapping[str, str] | None = None,
                       delay: float = 0.0) -> anyio.abc.Process:
    return await anyio.open_process(runner_command(preload, delay), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=child_env(env))


@asynccontextmanager
async def open_pipe(process: anyio.abc.Process, *, name: str) -> AsyncIterator[PipeTransport]:
    """A transport over ``process``'s pipes (e.g. from :func:`start_runner`); the process is
    ended on exit."""
    transport = PipeTransport(process, name)
    async with task_group() as group:
        group.start_soon(transport._read_stderr)
        try:
            yield transport
        finally:
            with anyio.CancelScope(shield=True):
                await transport.close()
            group.cancel_scope.cancel()


class PipeTransport:
    def __init__(self, process: anyio.abc.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.stdout = BufferedByteReceiveStream(process.stdout)  # type: ignore[arg-type]
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.write_lock = anyio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.write_lock:
            try:
                await self.process.stdin.send(encode(message))  # type: ignore[union-attr]
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise PeerGone(await self._exit_reason()) from None

    async def receive(self) -> dict[str, Any]:
        try:
            line = await self.stdout.receive_until(b"\n", MAX_LINE)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            raise PeerGone(await self._exit_reason()) from None
        return decode(line) if len(line) <= DECODED_INLINE_BYTES else await anyio.to_thread.run_sync(decode, line)

    async def close(self) -> None:
        if self.process.returncode is None:
            with anyio.move_on_after(SHUTDOWN_SECONDS):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self._reap()

    async def _read_stderr(self) -> None:
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

    async def _reap(self) -> None:
        with anyio.move_on_after(2):
            await self.process.wait()

    async def _exit_reason(self) -> str:
        await self._reap()
        code = self.process.returncode
        if code is None:
            reason = "no answer"
        elif code < 0:
            reason = f"signal {-code}"
        else:
            reason = f"exit status {code}"
        detail = next((line for line in reversed(self.stderr_tail) if "error" in line.lower()), None)
        return f"{reason}: {detail}" if detail else reason
