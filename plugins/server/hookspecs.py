"""Hooks the HTTP server adds (through ``addhooks``) for frontends and middleware."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from corral import hookspec


@hookspec
def register_blueprints(kernel: Any) -> Iterable[Any]:
    """Return Quart blueprints to mount on the server: the Ollama API, /v1, the web UI...

    Called once per app by ``create_app(kernel)``. Import Quart inside the implementation, so the
    command line never pays for it. Handlers stay thin: parse, call the kernel, serialize.
    """


@hookspec
def asgi_wrapper(kernel: Any) -> Callable[[Any], Any] | None:
    """Return a function that wraps the ASGI app in middleware (CORS, authentication, metrics), or None.

    Wrappers are applied in plugin call order, so the first plugin's middleware is innermost and
    the last one sees requests first.
    """


@hookspec
def register_binds(kernel: Any) -> Iterable[str]:
    """Return more addresses (Hypercorn binds such as ``127.0.0.1:3000``) for ``corral serve`` to
    listen on besides OLLAMA_HOST. The same app answers on every address; middleware can tell them
    apart by ``scope["server"]``. Default: none.
    """
