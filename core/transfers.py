"""Pulls and pushes, observed: every source's transfer becomes TransferProgress and
TransferFinished events, in this one place (``kernel.source_for`` hands out sources wrapped)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import attrs

from .errors import CorralError
from .names import ModelRef
from .types import Event, Progress, TransferFinished, TransferProgress

PROGRESS_INTERVAL = 0.25
"""Seconds between two TransferProgress events of one transfer, at most."""


@attrs.define(eq=False)
class ObservedSource:
    """A ModelSource whose pulls and pushes emit transfer events. Bytes are counted from the
    progress lines: what a layer's ``completed`` grows by after its first line, so a blob that
    was already there, or the part of a resumed one fetched earlier, counts as nothing moved."""

    source: Any
    emit: Callable[[Event], None]

    @property
    def name(self) -> str:
        return self.source.name

    def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        return self._observed("pull", ref, self.source.pull(ref, insecure=insecure))

    def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        return self._observed("push", ref, self.source.push(ref, insecure=insecure))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)  # whatever else a source offers its own frontends

    async def _observed(self, direction: str, ref: ModelRef, progress: AsyncIterator[Progress]) -> AsyncIterator[Progress]:
        model = ref.display
        started = last = time.monotonic()
        seen: dict[str, int] = {}
        moved = unreported = 0
        error: str | None = "cancelled"
        try:
            async with aclosing(progress):  # type: ignore[type-var]
                async for item in progress:
                    if item.digest and item.completed is not None:
                        before = seen.setdefault(item.digest, item.completed)
                        if item.completed > before:
                            seen[item.digest] = item.completed
                            moved += item.completed - before
                            unreported += item.completed - before
                    now = time.monotonic()
                    if unreported and now - last >= PROGRESS_INTERVAL:
                        self.emit(TransferProgress(direction=direction, model=model, bytes=unreported))
                        unreported, last = 0, now
                    yield item
            error = None
        except CorralError as failure:
            error = failure.message
            raise
        except Exception as failure:
            error = str(failure) or type(failure).__name__
            raise
        finally:
            if unreported:
                self.emit(TransferProgress(direction=direction, model=model, bytes=unreported))
            self.emit(TransferFinished(direction=direction, model=model, bytes=moved,
                                       seconds=time.monotonic() - started, error=error))
