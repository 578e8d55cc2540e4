"""Every core hook of corral. These docstrings are the hooks' documentation.

Hooks are synchronous. A hook that needs to do async work returns an object with async methods or
an async context manager; never write ``async def`` on a hook implementation (a coroutine is not
None, so it would always "win" a firstresult hook). Call hooks by keyword.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .kernel import Kernel
    from .settings import Settings
    from .types import Event, QuantizerSpec, RuntimeSpec, SettingSpec, SourceSpec, StoreSpec

PROJECT = "corral"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add hookspecs of your own with ``pluginmanager.add_hookspecs(module)``.

    Historic: a plugin registered later still receives this call. The HTTP server plugin uses it
    to add the server hooks (``register_blueprints``, ``asgi_wrapper``).
    """


@hookspec
def register_settings() -> Iterable[SettingSpec]:
    """Declare the plugin's settings.

    Return SettingSpec records with ``key="<table>.<name>"``; operators set them in the config file
    under ``[<table>]`` (or through ``SettingSpec.env``). The kernel converts each value with the
    spec's ``converter`` (a ValueError there becomes a one-line configuration error) and exposes it
    as ``kernel.settings.plugin["<table>.<name>"]``. A key declared twice is an error naming both
    plugins.
    """


@hookspec
def register_stores(settings: Settings) -> Iterable[StoreSpec]:
    """Offer storage backends by name.

    The kernel builds the one named by ``settings.store`` (default ``fs``, the Ollama-compatible
    folder at OLLAMA_MODELS) with ``spec.factory(settings)``. Names must be unique.
    """


@hookspec
def register_sources(settings: Settings) -> Iterable[SourceSpec]:
    """Offer model sources (Ollama's registry, Hugging Face, local files...).

    ``spec.factory(kernel)`` is called the first time the source is used. Names must be unique.
    """


@hookspec(firstresult=True)
def resolve_reference(reference: str, settings: Settings) -> str | None:
    """Name the source that owns a model reference such as ``hf.co/user/repo:Q4_K_M``.

    Return a source name, or None to let other plugins decide. The Ollama registry is the
    fallback (``trylast``) for every reference.
    """


@hookspec
def register_runtimes(settings: Settings) -> Iterable[RuntimeSpec]:
    """Offer runtimes: a name, the model formats each loads, a priority and a lazy factory.

    ``spec.factory(kernel)`` runs the first time a model needs the runtime, so importing a heavy
    library belongs inside the factory, not at module level.
    """


@hookspec(firstresult=True)
def select_runtime(model: Any, candidates: list[RuntimeSpec], settings: Settings) -> RuntimeSpec | None:
    """Choose the runtime for ``model`` (a ModelInfo) among the ``candidates`` that load its format.

    Return one of the candidates, or None to defer. The default (``trylast``) takes the highest
    priority.
    """


@hookspec
def register_quantizers(settings: Settings) -> Iterable[QuantizerSpec]:
    """Offer weight quantizers: a name, the target types each makes, and a lazy factory.

    ``kernel.quantizer_for(type)`` finds the quantizer for a type (case-insensitively) and builds it
    with ``spec.factory(kernel)`` on first use. A Quantizer has one method,
    ``quantize(src: Path, dst: Path, type: str) -> AsyncIterator[Progress]``: it writes ``dst``
    from the F32/F16/BF16 GGUF file ``src``, yields progress as it goes, and raises a CorralError
    (InvalidRequest for a source it cannot quantize). It must not block the event loop. A type
    claimed by two quantizers is an error naming both plugins.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``corral`` command line: ``cli.add_command(...)`` or ``@cli.command()``.

    Runs for every invocation, ``corral --help`` included: keep imports inside the commands.
    """


@hookspec
def lifespan(kernel: Kernel) -> AbstractAsyncContextManager[Any] | None:
    """Return an async context manager to run while the kernel runs, or None.

    ``async with kernel.running():`` enters every one (in plugin order) and exits them in reverse,
    so a plugin can start a background task or hold a resource for the life of the server.
    """


@hookspec
def on_event(event: Event, kernel: Kernel) -> None:
    """Observe what happens: models stored, deleted, loaded and unloaded, runners started and
    stopped, pulls and pushes progressing and finished, HTTP requests finished (the event types
    are the ``Event`` subclasses exported by ``corral``).

    ``kernel`` is the kernel the event happened in (take the parameter only if you need it).
    Called synchronously where the event happens: keep it cheap and never raise (an exception is
    logged and dropped). Never called per token.
    """
