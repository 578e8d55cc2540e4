"""The kernel: settings, the plugin manager, and registries built lazily from the hooks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError, InvalidRequest, PluginError
from .manager import CorralPluginManager, collect, make_plugin_manager
from .inference import Inference
from .scheduler import Scheduler
from .settings import Settings
from .store import ModelStore
from .types import CreateRequest, Event, Progress, QuantizerSpec, RuntimeSpec, SettingSpec, SourceSpec, StoreSpec

log = logging.getLogger(__name__)


def registry(pm: CorralPluginManager, hook: str, what: str, **kwargs: Any) -> dict[str, Any]:
    """Flatten a collector hook into a name-keyed dict; a name claimed twice names both plugins."""
    found: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for plugin, record in collect(pm, hook, **kwargs):
        name = record.key if isinstance(record, SettingSpec) else record.name
        if name in found:
            raise PluginError(f'{what} "{name}" is registered by both plugin "{owner[name]}" and plugin "{plugin}"')
        found[name] = record
        owner[name] = plugin
    return found


@attrs.define(eq=False)
class Kernel:
    """What every frontend holds: effective settings, plugins, the store, sources and runtimes."""

    settings: Settings
    pm: CorralPluginManager

    @classmethod
    def create(
        cls,
        environ: Mapping[str, str] | None = None,
        config_path: str | Path | None = None,
        overrides: Mapping[str, str] | None = None,
        *,
        plugins: tuple[Any, ...] = (),
        load_entry_points: bool = True,
    ) -> Kernel:
        """Read settings, build a fresh plugin manager and resolve plugin settings."""
        settings = Settings.load(environ, config_path, overrides)
        pm = make_plugin_manager(
            settings.enable, settings.disable, load_entry_points=load_entry_points, extra=plugins
        )
        specs = registry(pm, "register_settings", "setting").values()
        settings = settings.with_plugin_settings(specs)
        for warning in settings.warnings:
            log.warning("%s", warning)
        return cls(settings=settings, pm=pm)

    # -- registries -------------------------------------------------------------------------

    @cached_property
    def stores(self) -> dict[str, StoreSpec]:
        return registry(self.pm, "register_stores", "store", settings=self.settings)

    @cached_property
    def sources(self) -> dict[str, SourceSpec]:
        return registry(self.pm, "register_sources", "source", settings=self.settings)

    @cached_property
    def runtimes(self) -> dict[str, RuntimeSpec]:
        return registry(self.pm, "register_runtimes", "runtime", settings=self.settings)

    @cached_property
    def quantizers(self) -> dict[str, QuantizerSpec]:
        """Quantizers keyed by the types they make; a type claimed twice names both plugins."""
        by_type: dict[str, QuantizerSpec] = {}
        owner: dict[str, str] = {}
        for plugin, spec in collect(self.pm, "register_quantizers", settings=self.settings):
            for kind in spec.types:
                if kind in by_type:
                    raise PluginError(f'quantization type "{kind}" is registered by both plugin '
                                      f'"{owner[kind]}" and plugin "{plugin}"')
                by_type[kind] = spec
                owner[kind] = plugin
        return by_type

    def quantizer_for(self, kind: str) -> Any:
        """The Quantizer that makes ``kind`` (case-insensitive), built on first use; a 400 naming
        the supported types otherwise."""
        spec = self.quantizers.get(kind.upper())
        if spec is None:
            known = ", ".join(self.quantizers) or "none"
            raise InvalidRequest(f"unsupported quantization type {kind} - supported types are {known}")
        if spec.name not in self._built_quantizers:
            self._built_quantizers[spec.name] = spec.factory(self)
        return self._built_quantizers[spec.name]

    @cached_property
    def _built_quantizers(self) -> dict[str, Any]:
        return {}

    @cached_property
    def store(self) -> ModelStore:
        spec = self.stores.get(self.settings.store)
        if spec is None:
            known = ", ".join(sorted(self.stores)) or "none"
            raise ConfigError(f'server.store="{self.settings.store}": no such store (available: {known})')
        return ModelStore(blobs=spec.factory(self.settings), noprune=self.settings.noprune, emit=self.emit)

    def source_for(self, reference: str) -> Any:
        """The ModelSource that owns ``reference``, built on first use."""
        name = self.pm.hook.resolve_reference(reference=reference, settings=self.settings)
        if name is None or name not in self.sources:
            raise InvalidRequest(f'no model source handles "{reference}"')
        return self._built_sources.setdefault(name, self.sources[name].factory(self))

    def runtime_for(self, model: Any) -> RuntimeSpec:
        """The runtime to load ``model`` (a ModelInfo) with: candidates by format, then the hook."""
        model_format = model.config.get("model_format") or "gguf"
        candidates = [spec for spec in self.runtimes.values() if model_format in spec.formats]
        chosen = self.pm.hook.select_runtime(model=model, candidates=candidates, settings=self.settings)
        if chosen is None:
            raise InvalidRequest(f'no runtime can load models of format "{model_format}"')
        return chosen

    @cached_property
    def _built_sources(self) -> dict[str, Any]:
        return {}

    @cached_property
    def scheduler(self) -> Scheduler:
        return Scheduler(self)

    @cached_property
    def inference(self) -> Inference:
        return Inference(self)

    def create_model(self, request: CreateRequest) -> AsyncIterator[Progress]:
        """Make a model as /api/create does (see ``corral.create``), streaming its statuses."""
        from .create import create_model

        return create_model(self, request)

    # -- life -------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Tell every on_event observer; an observer that raises is logged, never propagated."""
        for impl in reversed(self.pm.hook.on_event.get_hookimpls()):
            kwargs = {"event": event, "kernel": self} if "kernel" in impl.argnames else {"event": event}
            try:
                impl.function(**kwargs)
            except Exception:
                log.exception("plugin %s failed in on_event(%s)", impl.plugin_name, event.kind)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Kernel]:
        """Enter every plugin's lifespan (in plugin order) and leave them in reverse."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.scheduler.running())
            for manager in self.pm.hook.lifespan(kernel=self):
                if manager is not None:
                    await stack.enter_async_context(manager)
            yield self
