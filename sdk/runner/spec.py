"""What it takes to start a runner for one model, wherever it runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class RunnerSpec:
    """How a runtime's runner is built: the engine class, its config, what to import ahead.

    A runtime whose models run in runners offers ``runner_spec(load_spec) -> RunnerSpec``, so
    that a hosting runtime (``corral.contrib.ray``) can start the same runner elsewhere.
    """

    engine: str
    """``module:Class`` of the engine, importable where the runner runs."""
    config: Mapping[str, Any] = attrs.field(factory=dict)
    """The engine's config, JSON-compatible."""
    files: tuple[str, ...] = ()
    """Local files the engine reads (model, adapters), each named in ``config`` as a whole string
    value. A host that runs the runner on another machine gives it copies and replaces every such
    value with the copy's path."""
    preload: tuple[str, ...] = ()
    """Modules a runner process imports before it knows its model (warm spares)."""
