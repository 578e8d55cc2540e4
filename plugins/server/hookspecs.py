"""Hooks the HTTP server adds (through ``addhooks``) for frontends and middleware."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from corral import hookspec

if TYPE_CHECKING:
    from corral.sdk.http import Bind


@hookspec
def register_blueprints(kernel: Any) -> Iterable[Any]:
    """Return Quart blueprints to mount on the server: the Ollama API, /v1, the web UI...

    Called once per app by ``create_app(kernel)``. Import Quart inside the implementation, so the
    command line never pays for it. Handlers stay thin: parse, call the kernel, serialize.
    """


@hookspec
def asgi_wrapper(kernel: Any, quart_app: Any) -> Callable[[Any], Any] | None:
    """Return a function that wraps the ASGI app in middleware (CORS, authentication, metrics), or None.

    ``quart_app`` is the Quart app every blueprint is registered on (not the ASGI app being
    wrapped), for middleware that needs its URL map or view functions. Wrappers are applied in
    plugin call order, so the first plugin's middleware is innermost and the last one sees
    requests first: the bundled server plugin's (request log, CORS, API keys) is outermost.
    """


@hookspec
def register_binds(kernel: Any) -> Iterable[Bind | str]:
    """Return more addresses for ``corral serve`` to listen on besides OLLAMA_HOST: ``host:port``
    strings (``127.0.0.1:3000``, ``[::1]:3000``) or ``Bind`` records (``corral.sdk.http``).

    The same app answers on every address; middleware can tell them apart by the port in
    ``scope["server"]``. A string is ``Bind(address)``, which needs the API key like OLLAMA_HOST;
    ``Bind(address, requires_key=False)`` is served without one, and the plugin that declares it
    answers only safe paths there. Default: none.
    """
