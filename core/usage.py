"""What the model work for one request cost, recorded as it happens.

Whoever serves a request (the HTTP server's request log) opens a ``Usage`` with
``recording_usage()`` around it; ``Inference`` fills it in through ``current_usage()`` (model,
tokens, queue wait, load, first token), and the opener reads it when the request ends. It is
context-scoped, so it follows the request into the tasks that serve it; with none open, nothing
is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import attrs


@attrs.define
class Usage:
    """The model work done on behalf of one request. ``model`` is set only once the model was
    found in the store, so it never holds a name a client made up."""

    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_seconds: float = 0.0
    """waiting for a slot, for room, or for a load another request started"""
    load_seconds: float = 0.0
    """loading the model for this request"""
    first_token_at: float | None = None
    """``time.perf_counter()`` when the first generated piece arrived from the runtime"""

    def leased(self, lease: Any) -> None:
        """Count a scheduler lease's wait, split into queueing and this request's own load."""
        self.queue_seconds += lease.queue_duration_ns / 1e9
        self.load_seconds += (lease.load_duration_ns - lease.queue_duration_ns) / 1e9


_usage: ContextVar[Usage | None] = ContextVar("corral_usage", default=None)


@contextmanager
def recording_usage() -> Iterator[Usage]:
    """Record the work of every inference call made in this context (and the tasks it starts)."""
    usage = Usage()
    token = _usage.set(usage)
    try:
        yield usage
    finally:
        _usage.reset(token)


def current_usage() -> Usage:
    """The open Usage, or a throwaway one when nobody records."""
    return _usage.get() or Usage()
