"""The bundled ``llamacpp`` runtime plugin: GGUF models in llama-cpp-python runner processes.

This module imports in microseconds; llama-cpp-python is imported only inside runner processes.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from corral import QuantizerSpec, RuntimeSpec, SettingSpec, hookimpl, parse_bool

_spares: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
"""The warm spare runners of each kernel, shared by its lifespan and its runtime."""


def _interval(value: Any) -> float:
    interval = float(value)
    if not 0 <= interval <= 1000:
        raise ValueError("must be between 0 and 1000 milliseconds")
    return interval


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [
        SettingSpec(
            key="llamacpp.stream_interval_ms", default=20.0, converter=_interval, env="CORRAL_STREAM_INTERVAL_MS",
            help="join tokens generated within this many milliseconds into one streamed chunk "
                 "(0: one chunk per token, as Ollama sends them)",
        ),
        SettingSpec(
            key="llamacpp.spare_runner", default=True, converter=parse_bool, env="CORRAL_SPARE_RUNNER",
            help="keep a runner process with llama.cpp imported ready for the next load (faster cold starts)",
        ),
    ]


def spares_for(kernel: Any) -> Any:
    from .runtime import spare_runners

    if kernel not in _spares:
        _spares[kernel] = spare_runners(enabled=kernel.settings.plugin["llamacpp.spare_runner"])
    return _spares[kernel]


@hookimpl
def register_runtimes(settings: Any) -> list[RuntimeSpec]:
    def factory(kernel: Any) -> Any:
        from .runtime import LlamaCppRuntime

        return LlamaCppRuntime(debug=kernel.settings.debug,
                               stream_interval_ms=kernel.settings.plugin["llamacpp.stream_interval_ms"],
                               spares=spares_for(kernel))

    return [RuntimeSpec(name="llamacpp", formats=("gguf",), priority=10, factory=factory,
                        description="llama.cpp through llama-cpp-python, one runner process per model")]


@hookimpl
def register_quantizers(settings: Any) -> list[QuantizerSpec]:
    from .quantize import FILE_TYPES

    def factory(kernel: Any) -> Any:
        from .quantize import LlamaCppQuantizer

        return LlamaCppQuantizer()

    return [QuantizerSpec(name="llamacpp", types=tuple(FILE_TYPES), factory=factory,
                          description="llama.cpp's quantizer (llama_model_quantize) in a subprocess")]


@hookimpl
def lifespan(kernel: Any) -> Any:
    @asynccontextmanager
    async def runners() -> AsyncIterator[None]:
        from .reaper import stop_orphans

        stop_orphans()
        spares = spares_for(kernel)
        gguf = [spec for spec in kernel.runtimes.values() if "gguf" in spec.formats]
        if max(gguf, key=lambda spec: spec.priority).name == "llamacpp":  # not when e.g. Ray hosts them
            await spares.refill()
        try:
            yield
        finally:
            await spares.aclose()

    return runners()
