"""What one client may hold of the server: body sizes, stalled bodies, connections.

- ``RequestLimits`` (ASGI middleware): a JSON body over ``server.max_body_size`` is answered 413
  (at once when Content-Length says so, else as soon as it goes over); only ``POST /api/blobs``
  streams, bounded by the free disk space (checked in its route). A body that stalls, no byte for
  ``server.body_timeout`` seconds, is answered 408; the handler is cancelled, so an upload's
  temporary file goes with it. Such refusals read and discard what the client is still sending
  (up to ``DRAIN_FACTOR`` times the limit) and close the connection, so the client reads the
  answer rather than a reset. Errors have Ollama's shape, OpenAI's under ``/v1``.
- ``LimitedConfig`` (Hypercorn's config): listening sockets that refuse a connection over
  ``server.max_connections`` in total or ``server.max_client_connections`` from one address with
  a 503 and close it at once, before it costs more than a file descriptor for a moment.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections import Counter
from typing import Any

import anyio
from hypercorn.config import Config, Sockets

from corral.sdk.http import go_json, openai_error

log = logging.getLogger("corral.server")

DRAIN_FACTOR = 4
REPORT_SECONDS = 60.0  # refusals are logged at most this often
STREAMED_PREFIXES = ("/api/blobs/",)


def error_body(path: str, status: int, message: str) -> bytes:
    return go_json(openai_error(message, status) if path.startswith("/v1/") else {"error": message}).encode()


async def send_refusal(scope: dict[str, Any], send: Any, status: int, message: str) -> None:
    body = error_body(scope.get("path", ""), status, message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Body:
    def __init__(self) -> None:
        self.received = 0
        self.complete = False
        self.refusal: tuple[int, str] | None = None
        self.started = False
        self.reading = False
        """Whether the app has asked for the body (a middleware that answers alone never does)."""
        self.ended = anyio.Event()
        """Set once the body is read to its end (or refused)."""


class RequestLimits:
    def __init__(self, app: Any, *, max_body_size: int, body_timeout: float) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout

    @classmethod
    def from_settings(cls, app: Any, settings: Any) -> RequestLimits:
        return cls(app, max_body_size=settings.max_body_size, body_timeout=settings.body_timeout)

    def _too_large(self) -> tuple[int, str]:
        return 413, f"request body too large: more than {self.max_body_size} bytes (server.max_body_size)"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = None if scope["path"].startswith(STREAMED_PREFIXES) else self.max_body_size
        declared = _content_length(scope)
        if limit is not None and declared is not None and declared > limit:
            await self._drain(receive, declared if declared <= DRAIN_FACTOR * limit else 0)
            await send_refusal(scope, send, *self._too_large())
            return
        body = _Body()

        async def limited_receive() -> dict[str, Any]:
            body.reading = True
            if body.complete or body.refusal:  # nothing more to time: only a disconnect comes now
                return await receive()
            with anyio.move_on_after(self.body_timeout) as waited:
                message = await receive()
            if waited.cancelled_caught:
                body.refusal = (408, f"request body timed out: no data for {self.body_timeout:g}s (server.body_timeout)")
                body.ended.set()
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                body.received += len(message.get("body", b""))
                body.complete = not message.get("more_body", False)
                if limit is not None and body.received > limit:
                    body.refusal = self._too_large()
                    body.ended.set()
                    return {"type": "http.disconnect"}  # the app stops; the refusal is sent below
            if body.complete or message["type"] != "http.request":
                body.ended.set()
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                body.started = True
            elif (limit is not None and body.reading and message["type"] == "http.response.body"
                  and not message.get("more_body", False) and not body.ended.is_set()):
                # Hypercorn closes a kept-alive connection whose request body has not all arrived
                # when the answer ends, under the client's next request: the answer ends once the
                # body has, when the app reads it (Quart always does; a middleware that answers
                # alone never asks, and nothing else would read it) and the route is limited (an
                # upload the store refused may be gigabytes still to come).
                with anyio.move_on_after(self.body_timeout):
                    await body.ended.wait()
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if body.refusal is not None and not body.started:
            status, message = body.refusal
            if status == 413 and limit is not None:
                await self._drain(receive, DRAIN_FACTOR * limit - body.received)
            await send_refusal(scope, send, status, message)

    async def _drain(self, receive: Any, budget: int) -> None:
        """Read and drop up to ``budget`` more bytes of the body, while they keep coming."""
        drained = 0
        while drained < budget:
            with anyio.move_on_after(self.body_timeout) as waited:
                message = await receive()
            if waited.cancelled_caught or message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


# -- connections -----------------------------------------------------------------------------------

_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


class ConnectionCaps:
    """Open connections, in total and by client address."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self.by_client: Counter[str] = Counter()
        self.lock = threading.Lock()  # a connection collected by the garbage collector may release anywhere
        self.refused = 0
        self.reported = 0.0

    def admit(self, client: str) -> str | None:
        """Count a new connection in, or say why it is refused."""
        with self.lock:
            if self.open >= self.total:
                refusal = f"too many connections: {self.total} are open (server.max_connections)"
            elif self.by_client[client] >= self.per_client:
                refusal = (f"too many connections from {client}: {self.per_client} are open "
                           "(server.max_client_connections)")
            else:
                self.open += 1
                self.by_client[client] += 1
                return None
            self.refused += 1
            if time.monotonic() - self.reported > REPORT_SECONDS:
                self.reported = time.monotonic()
                log.warning("refused connections (%d so far): %s", self.refused, refusal)
            return refusal

    def release(self, client: str) -> None:
        with self.lock:
            self.open -= 1
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]


class _CountedConnection(socket.socket):
    """An accepted connection that leaves the count when it is closed (or collected)."""

    def __init__(self, *args: Any, caps: ConnectionCaps, client: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = weakref.finalize(self, caps.release, client)

    def close(self) -> None:
        super().close()
        self._release()


class _CappedListener(socket.socket):
    """A listening socket whose ``accept`` (which asyncio calls) admits connections by the caps."""

    caps: ConnectionCaps

    @classmethod
    def adopt(cls, sock: socket.socket, caps: ConnectionCaps) -> _CappedListener:
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.caps = caps
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            conn, address = super().accept()  # BlockingIOError when no connection waits
            client = address[0] if isinstance(address, tuple) else ""
            refusal = self.caps.admit(client)
            if refusal is None:
                counted = _CountedConnection(conn.family, conn.type, conn.proto, fileno=conn.detach(),
                                             caps=self.caps, client=client)
                return counted, address
            body = go_json({"error": refusal}).encode()
            try:
                conn.setblocking(False)
                conn.send(_REFUSAL % (len(body), body))
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()


class LimitedConfig(Config):
    """Hypercorn's config with capped listening sockets."""

    caps: ConnectionCaps | None = None

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        if self.caps is None:
            return sockets

        def capped(found: list[socket.socket]) -> list[socket.socket]:
            return [_CappedListener.adopt(sock, self.caps) if sock.type == socket.SOCK_STREAM else sock  # type: ignore[arg-type]
                    for sock in found]

        return Sockets(capped(sockets.secure_sockets), capped(sockets.insecure_sockets), sockets.quic_sockets)
