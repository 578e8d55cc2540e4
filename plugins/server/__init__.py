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
def asgi_wrapper(kernel: Any) -> Any:
    """CORS and the Host check (the request log, outside every wrapper, is the app's own)."""
    from .cors import CorsAndHostGuard

    return lambda app: CorsAndHostGuard.from_settings(app, kernel.settings)


@hookimpl
def on_event(event: Any) -> None:
    """Every kernel event is a log line (RequestFinished is the request log's own line)."""
    log_event(event)
