"""The bundled ``server`` plugin: the HTTP server (Quart on Hypercorn) and Ollama's API.

This module stays import-light: Quart and Hypercorn load only when a server is built.
"""

from __future__ import annotations

from typing import Any

from corral import hookimpl

from . import hookspecs as server_hookspecs
from .logs import log_event


@hookimpl
def addhooks(pluginmanager: Any) -> None:
    pluginmanager.add_hookspecs(server_hookspecs)


@hookimpl
def register_commands(cli: Any) -> None:
    from .command import serve_command

    cli.add_command(serve_command)


@hookimpl
def register_blueprints(kernel: Any) -> list[Any]:
    from . import create_api, inference_api, ollama_api, transfer_api

    return [ollama_api.blueprint, inference_api.blueprint, transfer_api.blueprint, create_api.blueprint]


@hookimpl
def asgi_wrapper(kernel: Any, quart_app: Any) -> Any:
    """The request log outermost (so refusals are logged and counted too), then CORS and the Host
    check (so preflights need no key), then the API keys when any is set."""
    from .api_keys import ApiKeyGuard, RouteAccess, load_keys
    from .binds import keyless_ports, listen_binds
    from .cors import CorsAndHostGuard
    from .request_log import RequestLog, Routes

    settings = kernel.settings
    keys = load_keys(settings)

    def wrap(app: Any) -> Any:
        if keys is not None:
            app = ApiKeyGuard(app, keys=keys, routes=RouteAccess(quart_app),
                              keyless_ports=keyless_ports(listen_binds(kernel)))
        return RequestLog(CorsAndHostGuard.from_settings(app, settings), kernel=kernel,
                          routes=Routes(quart_app.url_map))

    return wrap


@hookimpl
def on_event(event: Any) -> None:
    """Every kernel event is a log line (RequestFinished is the request log's own line)."""
    log_event(event)
