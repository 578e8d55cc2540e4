"""Prometheus metrics at ``GET /metrics``: requests, tokens, latency, queue, models, runners,
transfers, and the process itself. Off by default; ``pip install 'corral[metrics]'`` and turn it
on with ``[plugins] enable = ["metrics"]``. With ``[metrics] port = 9090`` the server also listens
on that port (same host as OLLAMA_HOST), which serves /metrics and nothing else, and /metrics is
no longer served on the main address. See docs/metrics.md.

Everything comes from kernel events (``RequestFinished``, ``ModelLoaded``...), counted once per
request or per event; nothing runs per token.
"""

from __future__ import annotations

import importlib.util
import weakref
from typing import TYPE_CHECKING, Any

from corral import Event, PluginError, SettingSpec, hookimpl, parse_port

if TYPE_CHECKING:
    from .instruments import Instruments

if importlib.util.find_spec("prometheus_client") is None:
    raise PluginError("the metrics plugin needs prometheus-client: pip install 'corral[metrics]'")

_instruments: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()


def instruments_of(kernel: Any) -> Instruments:
    """The kernel's own metrics (a registry per kernel), made when its server is built."""
    found = _instruments.get(kernel)
    if found is None:
        from .instruments import Instruments

        found = _instruments[kernel] = Instruments.for_kernel(kernel)
    return found


def metrics_port(kernel: Any) -> int:
    port = kernel.settings.plugin["metrics.port"]
    return 0 if port == kernel.settings.host.port else port


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(
        key="metrics.port", default=0, converter=parse_port, env="CORRAL_METRICS_PORT",
        help="serve /metrics only on this port (same host as OLLAMA_HOST), e.g. 9090; 0: on the main address",
    )]


@hookimpl
def register_blueprints(kernel: Any) -> list[Any]:
    from .endpoint import blueprint

    instruments_of(kernel)
    return [blueprint]


@hookimpl
def register_binds(kernel: Any) -> list[Any]:
    """The metrics port needs no API key: it answers /metrics and nothing else."""
    port = metrics_port(kernel)
    if not port:
        return []
    from corral.sdk.http import Bind

    return [Bind(kernel.settings.host.with_port(port).bind, requires_key=False)]


@hookimpl
def asgi_wrapper(kernel: Any) -> Any:
    port = metrics_port(kernel)
    if not port:
        return None
    from .endpoint import MetricsPortOnly

    return lambda app: MetricsPortOnly(app, port=port)


@hookimpl
def on_event(event: Event, kernel: Any) -> None:
    found = _instruments.get(kernel)
    if found is not None:  # no server, no metrics
        found.observe(event)
