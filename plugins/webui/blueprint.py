"""The routes of the web UI: ``/ui/`` and its static files, and a log line with its address."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from quart import Blueprint, Response, redirect, send_from_directory

from corral.sdk.http import OPEN, access

STATIC = Path(__file__).parent / "static"

log = logging.getLogger("corral.webui")


def make_blueprint(kernel: Any) -> Blueprint:
    blueprint = Blueprint("webui", __name__)
    host = kernel.settings.host

    @blueprint.route("/ui", methods=["GET", "HEAD"], strict_slashes=True)
    @access(OPEN)
    async def ui_without_slash() -> Response:
        return redirect("/ui/", 301)

    @blueprint.route("/ui/", methods=["GET", "HEAD"], strict_slashes=True)
    @access(OPEN)
    async def page() -> Response:
        return await static_file("index.html")

    @blueprint.route("/ui/<path:name>", methods=["GET", "HEAD"])
    @access(OPEN)
    async def static_file(name: str) -> Response:
        # send_from_directory refuses paths that leave STATIC (404)
        response = await send_from_directory(STATIC, name)
        response.cache_control.no_cache = True  # revalidate, so an upgraded corral shows its new page
        response.cache_control.max_age = 0
        return response

    @blueprint.before_app_serving
    async def announce() -> None:
        from . import ui_port

        log.info("web UI at %s/ui/", host.url)
        port = ui_port(kernel)
        if port:
            log.info("web UI also at %s/", host.with_port(port).url)

    return blueprint


class RootToUi:
    """ASGI middleware: on the web UI's own port, ``GET /`` redirects to ``/ui/``."""

    def __init__(self, app: Any, *, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        server = scope.get("server") or ()
        if (scope["type"] == "http" and scope.get("path") == "/" and scope.get("method") in ("GET", "HEAD")
                and len(server) > 1 and server[1] == self.port):
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", b"/ui/"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)
