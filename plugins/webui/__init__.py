"""The bundled ``webui`` plugin: a chat page in the browser at ``/ui/``, plain HTML, CSS and ES
modules served from ``static/`` (no build step, nothing fetched at run time).

With ``webui.port`` set, the server also listens on that port (same host as OLLAMA_HOST) and the
same app answers there, with ``/`` redirected to ``/ui/``: the page and the API it calls share one
origin, so no CORS setting is needed.
"""

from __future__ import annotations

from typing import Any

from corral import SettingSpec, hookimpl


def _port(value: Any) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("must be a port number between 1 and 65535, or 0 for none")
    return port


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(
        key="webui.port", default=0, converter=_port, env="CORRAL_WEBUI_PORT",
        help="also serve the web UI (and the API) on this port, e.g. 3000; 0: only at /ui/ on OLLAMA_HOST",
    )]


def ui_port(kernel: Any) -> int:
    port = kernel.settings.plugin["webui.port"]
    return 0 if port == kernel.settings.host.port else port


@hookimpl
def register_blueprints(kernel: Any) -> list[Any]:
    from .blueprint import make_blueprint

    return [make_blueprint(kernel)]


@hookimpl
def register_binds(kernel: Any) -> list[str]:
    port = ui_port(kernel)
    return [kernel.settings.host.with_port(port).bind] if port else []


@hookimpl
def asgi_wrapper(kernel: Any) -> Any:
    port = ui_port(kernel)
    if not port:
        return None
    from .blueprint import RootToUi

    return lambda app: RootToUi(app, port=port)
