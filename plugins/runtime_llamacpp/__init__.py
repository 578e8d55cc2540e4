"""The bundled ``llamacpp`` runtime plugin: GGUF models in llama-cpp-python runner processes.

This module imports in microseconds; llama-cpp-python is imported only inside runner processes.
"""

from __future__ import annotations

from typing import Any

from corral import RuntimeSpec, hookimpl


@hookimpl
def register_runtimes(settings: Any) -> list[RuntimeSpec]:
    def factory(kernel: Any) -> Any:
        from .runtime import LlamaCppRuntime

        return LlamaCppRuntime(debug=kernel.settings.debug)

    return [RuntimeSpec(name="llamacpp", formats=("gguf",), priority=10, factory=factory,
                        description="llama.cpp through llama-cpp-python, one runner process per model")]


@hookimpl
def lifespan(kernel: Any) -> Any:
    from .reaper import reaping_orphans

    return reaping_orphans()
