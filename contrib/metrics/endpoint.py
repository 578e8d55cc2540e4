"""``GET /metrics`` (Prometheus text, or OpenMetrics when the scraper asks for it), and the
middleware that keeps the metrics port to /metrics alone."""

from __future__ import annotations

import gzip
from typing import Any

import anyio
from prometheus_client.exposition import choose_encoder
from quart import Blueprint, Response, request

from corral.sdk.http import kernel

from . import instruments_of

blueprint = Blueprint("metrics", __name__)

NOT_FOUND = b"404 page not found"


@blueprint.route("/metrics", methods=["GET"])
async def metrics() -> Response:
    registry = instruments_of(kernel()).registry
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")

    def render() -> bytes:
        body = encoder(registry)
        return gzip.compress(body, compresslevel=1) if gzipped else body

    headers = {"Content-Type": content_type, **({"Content-Encoding": "gzip"} if gzipped else {})}
    # the process collector reads /proc: render off the event loop
    return Response(await anyio.to_thread.run_sync(render), headers=headers)


class MetricsPortOnly:
    """With ``metrics.port`` set: that port answers /metrics and 404 for everything else, and the
    other addresses answer 404 for /metrics."""

    def __init__(self, app: Any, *, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            server = scope.get("server") or ()
            on_metrics_port = len(server) > 1 and server[1] == self.port
            if on_metrics_port != (scope.get("path") == "/metrics"):
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(NOT_FOUND)).encode())]})
                await send({"type": "http.response.body", "body": NOT_FOUND})
                return
        await self.app(scope, receive, send)
