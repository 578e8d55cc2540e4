"""Building the plugin manager: bundled plugins, contrib plugins, third-party entry points."""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "corral"

BUNDLED_PLUGINS: tuple[str, ...] = (
    "corral.defaults",
    "corral.plugins.store_fs",
    "corral.plugins.outbound",
    "corral.plugins.source_ollama",
    "corral.plugins.cli.commands",
    "corral.plugins.server",
    "corral.plugins.runtime_llamacpp",
    "corral.plugins.openai",
    "corral.plugins.source_hf",
    "corral.plugins.source_modelscope",
    "corral.plugins.source_pip",
    "corral.plugins.webui",
)


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to load and was skipped."""


class CorralPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.origins: dict[str, str] = {}
        """plugin name -> ``bundled``, ``contrib`` or ``<distribution> <version>``"""

    def plugin_names(self) -> list[str]:
        return [name for name, _plugin in self.list_name_plugin() if name is not None]


def contrib_plugin_names() -> list[str]:
    import corral.contrib

    return sorted(module.name for module in pkgutil.iter_modules(corral.contrib.__path__))


def short_name(dotted: str) -> str:
    return "cli" if dotted == "corral.plugins.cli.commands" else dotted.rpartition(".")[2]


def make_plugin_manager(
    enable: tuple[str, ...] | list[str] = (),
    disable: tuple[str, ...] | list[str] = (),
    *,
    load_entry_points: bool = True,
    extra: tuple[Any, ...] = (),
) -> CorralPluginManager:
    """A fresh manager: bundled plugins, enabled contrib plugins, then installed entry points.

    Plugins registered later run earlier, so an installed plugin can override a bundled one.
    ``extra`` plugin objects (tests) are registered last. A third-party plugin that fails to
    import is a PluginLoadWarning naming its distribution (a PluginError with
    ``CORRAL_STRICT_PLUGINS=1``); an unknown name in ``enable``/``disable`` is a PluginError.
    """
    pm = CorralPluginManager()
    pm.add_hookspecs(hookspecs)
    pm.hook.addhooks.call_historic(kwargs={"pluginmanager": pm})
    strict = os.environ.get("CORRAL_STRICT_PLUGINS", "") not in ("", "0", "false")
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP)) if load_entry_points else []
    contrib = contrib_plugin_names()
    bundled = {short_name(dotted): dotted for dotted in BUNDLED_PLUGINS}
    known = set(bundled) | set(contrib) | {entry.name for entry in entry_points}
    for key, names in (("plugins.enable", enable), ("plugins.disable", disable)):
        for name in names:
            if name not in known:
                raise PluginError(f'{key}: unknown plugin "{name}" (known: {", ".join(sorted(known))})')
    for name in disable:
        pm.set_blocked(name)

    for name, dotted in bundled.items():
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(dotted), name=name)
            pm.origins[name] = "bundled"
    for name in enable:
        if name in contrib and not pm.is_blocked(name):
            pm.register(importlib.import_module(f"corral.contrib.{name}"), name=name)
            pm.origins[name] = "contrib"
    for entry in entry_points:
        if pm.is_blocked(entry.name) or pm.has_plugin(entry.name):
            continue
        distribution = f"{entry.dist.name} {entry.dist.version}" if entry.dist else "unknown distribution"
        try:
            pm.register(entry.load(), name=entry.name)
        except Exception as error:  # a broken third-party plugin must not take corral down
            message = f'plugin "{entry.name}" from {distribution} failed to load: {type(error).__name__}: {error}'
            if strict:
                raise PluginError(message) from error
            warnings.warn(message, PluginLoadWarning, stacklevel=2)
            continue
        pm.origins[entry.name] = distribution
    for plugin in extra:
        name = pm.register(plugin)
        pm.origins[name] = "test"
    _check_pending(pm, strict)
    return pm


def _check_pending(pm: CorralPluginManager, strict: bool) -> None:
    """Drop (or, strictly, refuse) third-party plugins that implement hooks nobody declared."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as error:
            name = pm.get_name(error.plugin) or repr(error.plugin)
            message = f'plugin "{name}" ({pm.origins.get(name, "?")}): {error}'
            if strict or pm.origins.get(name) in ("bundled", "contrib"):
                raise PluginError(message) from None
            warnings.warn(message, PluginLoadWarning, stacklevel=3)
            pm.unregister(error.plugin)
            pm.origins.pop(name, None)


def collect(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Call a collector hook plugin by plugin, yielding ``(plugin name, record)`` pairs."""
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        result = impl.function(**{name: kwargs[name] for name in impl.argnames})
        for record in result or ():
            yield impl.plugin_name, record


def hooks_of(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
