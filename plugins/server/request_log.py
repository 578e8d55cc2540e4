"""One log line per HTTP request, in logfmt: method, path, status, duration, client.

With OLLAMA_DEBUG the line also carries the user agent and the response size.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("corral.server.requests")


class RequestLog:
    def __init__(self, app: Any, *, debug: int = 0) -> None:
        self.app = app
        self.debug = debug

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

        try:
            await self.app(scope, receive, logged_send)
        finally:
            client = scope.get("client") or ("-", 0)
            fields = (f'method={scope["method"]} path="{scope["path"]}" status={status or "-"} '
                      f"duration_ms={(time.perf_counter() - started) * 1000:.1f} client={client[0]}")
            if self.debug:
                agent = dict(scope.get("headers") or []).get(b"user-agent", b"").decode("latin-1")
                fields += f' bytes={sent} user_agent="{agent}"'
            log.info("request %s", fields)
