"""Scale-out on a Ray cluster: each loaded model runs as a Ray actor, placed by resources.

Install with ``pip install 'corral[ray]'``, turn on with ``[plugins] enable = ["ray"]``; the
server's machine must be a node of the cluster. See docs/scale-out.md.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from corral import RuntimeFailure, RuntimeSpec, SettingSpec, hookimpl, parse_count, parse_string

_clusters: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
"""Each kernel's connection to the cluster, made by its lifespan and used by its runtime."""


def _seconds(value: Any) -> float:
    seconds = float(value)
    if not 0 < seconds <= 86400:
        raise ValueError("must be between 0 and 86400 seconds")
    return seconds


def _resources(value: Any) -> dict[str, float]:
    table = json.loads(value) if isinstance(value, str) else value
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) and v > 0
                                              for k, v in table.items()):
        raise ValueError('must be a table of resource names and positive amounts, e.g. {"corral" = 1}')
    return {name: float(amount) for name, amount in table.items()}


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [
        SettingSpec(key="ray.address", default="auto", converter=parse_string, env="CORRAL_RAY_ADDRESS",
                    help='the Ray cluster to join: "auto" (the one started on this machine) or HOST:PORT'),
        SettingSpec(key="ray.num_cpus", default=2, converter=parse_count(1), env="CORRAL_RAY_NUM_CPUS",
                    help="CPUs each model's actor reserves, and its threads, unless num_thread is set"),
        SettingSpec(key="ray.resources", default={}, converter=_resources, env="CORRAL_RAY_RESOURCES",
                    help='custom Ray resources each model\'s actor needs, e.g. {"corral" = 1}'),
        SettingSpec(key="ray.cache", default="~/.cache/corral/blobs", converter=parse_string,
                    env="CORRAL_RAY_CACHE",
                    help="where a node keeps the models it was sent (on that node; ~ is its home)"),
        SettingSpec(key="ray.connect_timeout", default=60.0, converter=_seconds, env="CORRAL_RAY_CONNECT_TIMEOUT",
                    help="seconds to wait for the cluster to answer when joining it"),
        SettingSpec(key="ray.placement_timeout", default=60.0, converter=_seconds,
                    env="CORRAL_RAY_PLACEMENT_TIMEOUT",
                    help="seconds a model may wait for a node with room before its load fails"),
        SettingSpec(key="ray.runtime", default="llamacpp", converter=parse_string, env="CORRAL_RAY_RUNTIME",
                    help="the runtime whose runners run on the cluster"),
    ]


@hookimpl
def register_runtimes(settings: Any) -> list[RuntimeSpec]:
    def factory(kernel: Any) -> Any:
        from .runtime import RayRuntime

        cluster = _clusters.get(kernel)
        if cluster is None:
            raise RuntimeFailure("the Ray runtime is not running")
        name = kernel.settings.plugin["ray.runtime"]
        local_spec = kernel.runtimes.get(name)
        local = local_spec.factory(kernel) if local_spec is not None else None
        if not hasattr(local, "runner_spec"):
            raise RuntimeFailure(f'ray.runtime = "{name}": no runtime of that name runs its models in runners')
        return RayRuntime(cluster, local, kernel.settings.max_loaded_models)

    return [RuntimeSpec(name="ray", formats=("gguf",), priority=20, factory=factory,
                        description="each model in a Ray actor on the cluster (ray.runtime's runner)")]


@hookimpl
def lifespan(kernel: Any) -> Any:
    @asynccontextmanager
    async def joined() -> AsyncIterator[None]:
        from .runtime import RayCluster, RaySettings

        cluster = RayCluster(RaySettings.of(kernel.settings.plugin))
        async with cluster.running():
            _clusters[kernel] = cluster
            try:
                yield
            finally:
                _clusters.pop(kernel, None)

    return joined()
