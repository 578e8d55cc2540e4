"""The kernel's fallback choice of runtime (by model format, then priority), as a trylast
``select_runtime`` any plugin can pre-empt."""

from __future__ import annotations

from .hookspecs import hookimpl
from .settings import Settings
from .types import RuntimeSpec


@hookimpl(trylast=True)
def select_runtime(model: object, candidates: list[RuntimeSpec], settings: Settings) -> RuntimeSpec | None:
    if not candidates:
        return None
    return max(candidates, key=lambda spec: spec.priority)
