"""The bundled ``llamacpp`` runtime plugin: GGUF models in llama-cpp-python runner processes.

This module imports in microseconds; llama-cpp-python is imported only inside runner processes.
"""

from __future__ import annotations

from typing import Any

from corral import QuantizerSpec, RuntimeSpec, SettingSpec, hookimpl


def _interval(value: Any) -> float:
    interval = float(value)
    if not 0 <= interval <= 1000:
        raise ValueError("must be between 0 and 1000 milliseconds")
    return interval


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(
        key="llamacpp.stream_interval_ms", default=20.0, converter=_interval, env="CORRAL_STREAM_INTERVAL_MS",
        help="join tokens generated within this many milliseconds into one streamed chunk "
             "(0: one chunk per token, as Ollama sends them)",
    )]


@hookimpl
def register_runtimes(settings: Any) -> list[RuntimeSpec]:
    def factory(kernel: Any) -> Any:
        from .runtime import LlamaCppRuntime

        return LlamaCppRuntime(debug=kernel.settings.debug,
                               stream_interval_ms=kernel.settings.plugin["llamacpp.stream_interval_ms"])

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
    from .reaper import reaping_orphans

    return reaping_orphans()
