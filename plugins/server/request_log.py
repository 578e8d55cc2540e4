"""The outermost ASGI layer: after each HTTP request's last byte, one log line and one
``RequestFinished`` event, with the figures of the model work done for it.

The line carries method, path, route (``endpoint``), status, duration, client and, when a model
ran, its name, tokens, queue wait, load time and time to first token; with OLLAMA_DEBUG also the
user agent and the response size. Inference fills those figures in through
``corral.recording_usage()``, which this layer opens around the request.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from corral import RequestFinished, Usage, recording_usage

log = logging.getLogger("corral.server.requests")

UNMATCHED = "unmatched"
"""The endpoint of a request no route matches (unknown path or method)."""
CLIENT_CLOSED = 499
"""The status logged for a request whose client left before any answer (nginx's convention)."""

_REJECTED = {503: "busy", 413: "too_large", 401: "unauthorized", 403: "forbidden"}
_PLACEHOLDER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def rejection(status: int) -> str | None:
    """Why a request was refused, from its status: RequestFinished's ``rejected``."""
    if status in _REJECTED:
        return _REJECTED[status]
    return "invalid" if 400 <= status < 500 and status != CLIENT_CLOSED else None


class Routes:
    """The route pattern (``/api/blobs/{digest}``) a method and path would reach in the app."""

    def __init__(self, url_map: Map) -> None:
        self.url_map = url_map
        self._adapter: Any = None

    def endpoint(self, method: str, path: str) -> str:
        if self._adapter is None:
            self._adapter = self.url_map.bind("localhost")
        try:
            rule, _ = self._adapter.match(path, method, return_rule=True)
        except HTTPException:  # not found, method not allowed, a redirect
            return UNMATCHED
        return _PLACEHOLDER.sub(r"{\1}", rule.rule)


def request_finished(method: str, endpoint: str, status: int, seconds: float, usage: Usage,
                     started: float) -> RequestFinished:
    ttft = usage.first_token_at - started if usage.first_token_at is not None else None
    return RequestFinished(
        endpoint=endpoint, method=method, status=status, model=usage.model, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, queue_seconds=usage.queue_seconds,
        load_seconds=usage.load_seconds, ttft_seconds=ttft, total_seconds=seconds, rejected=rejection(status),
    )


def log_fields(event: RequestFinished, *, path: str, client: str) -> dict[str, Any]:
    """The request line: the event's fields (model work only when a model ran) and the raw path."""
    fields: dict[str, Any] = {"method": event.method, "path": path, "endpoint": event.endpoint,
                              "status": event.status, "rejected": event.rejected}
    if event.model is not None:
        fields.update(model=event.model, prompt_tokens=event.prompt_tokens,
                      completion_tokens=event.completion_tokens, queue_seconds=event.queue_seconds,
                      load_seconds=event.load_seconds, ttft_seconds=event.ttft_seconds)
    fields.update(total_seconds=event.total_seconds, client=client)
    return fields


class RequestLog:
    def __init__(self, app: Any, *, kernel: Any, routes: Routes) -> None:
        self.app = app
        self.kernel = kernel
        self.routes = routes
        self.debug = kernel.settings.debug

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0

        async def logged_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        failed = False
        with recording_usage() as usage:
            try:
                await self.app(scope, receive, logged_send)
            except Exception:
                failed = True  # the server answers 500
                raise
            finally:
                seconds = time.perf_counter() - started
                method, path = scope["method"], scope["path"]
                status = status or (500 if failed else CLIENT_CLOSED)
                event = request_finished(method, self.routes.endpoint(method, path), status, seconds, usage, started)
                fields = log_fields(event, path=path, client=(scope.get("client") or ("-", 0))[0])
                if self.debug:
                    headers = dict(scope.get("headers") or [])
                    fields.update(bytes=sent, user_agent=headers.get(b"user-agent", b"").decode("latin-1"))
                log.info("request", extra={"fields": fields})
                self.kernel.emit(event)
