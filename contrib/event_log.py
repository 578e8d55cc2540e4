"""Append every kernel event to a JSON-lines file, for audits and debugging.

Off by default; turn it on with ``[plugins] enable = ["event_log"]`` and optionally set
``[event_log] path = "/var/log/corral/events.jsonl"``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from corral import Event, SettingSpec, hookimpl, parse_path

_state: dict[str, Any] = {"path": None}
_lock = threading.Lock()


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [
        SettingSpec(
            key="event_log.path",
            default=Path.home() / ".corral" / "events.jsonl",
            converter=parse_path,
            env="CORRAL_EVENT_LOG",
            help="file that receives one JSON object per event",
        )
    ]


@hookimpl
def lifespan(kernel: Any) -> AbstractAsyncContextManager[None]:
    @asynccontextmanager
    async def logging_events() -> AsyncIterator[None]:
        _state["path"] = kernel.settings.plugin["event_log.path"]
        try:
            yield
        finally:
            _state["path"] = None

    return logging_events()


@hookimpl
def on_event(event: Event) -> None:
    path: Path | None = _state["path"]
    if path is None:
        return
    record = {"event": event.kind, **attrs.asdict(event)}
    line = json.dumps(record, default=str) + "\n"
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)
