"""``create_app(kernel)``: the Quart app with every plugin's blueprints, errors mapped to Ollama's
shapes, and every plugin's ASGI middleware around it."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from quart import Quart, request
from werkzeug.exceptions import HTTPException

from corral import CorralError
from corral.sdk.http import KERNEL_KEY, STREAMS_KEY, OpenStreams, error_response, log

TEXT_TYPE = "text/plain; charset=utf-8"


def create_app(kernel: Any, streams: OpenStreams | None = None) -> Any:
    """The ASGI application for ``kernel``: the Quart app wrapped in every ``asgi_wrapper``."""
    app = Quart("corral")
    app.extensions[STREAMS_KEY] = streams or OpenStreams()
    app.config.update(
        RESPONSE_TIMEOUT=None,  # streams end when the generation or pull does
        BODY_TIMEOUT=None,  # blob uploads are gigabytes
        MAX_CONTENT_LENGTH=None,
        PROVIDE_AUTOMATIC_OPTIONS=True,
        JSON_SORT_KEYS=False,
    )
    app.url_map.strict_slashes = False
    app.extensions[KERNEL_KEY] = kernel
    for blueprints in kernel.pm.hook.register_blueprints(kernel=kernel):
        for blueprint in blueprints or ():
            app.register_blueprint(blueprint)

    @app.errorhandler(CorralError)
    async def corral_error(error: CorralError) -> Any:
        return error_response(error.message, error.status)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        # gin's plain-text answers for unknown paths and wrong methods
        text = {404: "404 page not found", 405: "405 method not allowed"}.get(error.code or 500)
        if text is None:
            return error_response(error.description or error.name, error.code or 500)
        return text, error.code, {"Content-Type": TEXT_TYPE}

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(f"internal error: {type(error).__name__}: {error}", 500)

    asgi: Any = app
    for wrap in kernel.pm.hook.asgi_wrapper(kernel=kernel, quart_app=app):
        if wrap is not None:
            asgi = wrap(asgi)
    logging.getLogger("quart.app").setLevel(logging.CRITICAL)  # errors are logged above, once
    return origin_form(asgi)


def origin_form(app: Any) -> Any:
    """Outermost: a request target in absolute form (``GET http://host/api/tags``) becomes its
    path, as Go's server reads it. Quart routes on the path alone, so middleware that saw the
    whole URL (keys, limits, the metrics port, the log) would judge another path than the one
    served."""

    async def normalized(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path")
        if scope["type"] in ("http", "websocket") and path and not path.startswith("/"):
            target = urlsplit(path).path or "/"
            scope = {**scope, "path": target, "raw_path": target.encode("utf-8", "surrogateescape")}
        await app(scope, receive, send)

    return normalized


def kernel_of(app: Quart) -> Any:
    return app.extensions[KERNEL_KEY]
