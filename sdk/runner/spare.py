"""Warm spares: a runner process started ahead of need, its engine's modules already imported, so
that loading a model costs only the model's own work (file mapping, context creation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio
import anyio.abc

from .pipe import start_runner


class SpareRunners:
    """Keeps one idle runner process ready. :meth:`take` hands it over (or starts a fresh one when
    there is none); :meth:`refill` starts the next, which imports its modules only ``delay``
    seconds later, so that it does not take the CPU from the model just loaded while that answers
    its first request; :meth:`aclose` ends the spare."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str] | None = None, *, enabled: bool = True,
                 delay: float = 2.0) -> None:
        self.preload = tuple(preload)
        self.env = env
        self.enabled = enabled
        self.delay = delay
        self.spare: anyio.abc.Process | None = None
        self.refilling = False
        self.closed = False

    async def take(self) -> tuple[anyio.abc.Process, bool]:
        """A runner process for the next load, and whether it is a spare started earlier (it may
        have died since: a caller retries with a fresh one when a spare fails before answering)."""
        spare, self.spare = self.spare, None
        if spare is not None and spare.returncode is None:
            return spare, True
        return await start_runner(self.preload, self.env), False

    async def refill(self) -> None:
        # Two loads that finish together both refill: the second must not start another process.
        if not self.enabled or self.spare is not None or self.refilling or self.closed:
            return
        self.refilling = True
        try:
            spare = await start_runner(self.preload, self.env, self.delay)
        finally:
            self.refilling = False
        if self.closed:
            await _end(spare)
        else:
            self.spare = spare

    async def aclose(self) -> None:
        self.closed = True
        spare, self.spare = self.spare, None
        if spare is not None:
            await _end(spare)


async def _end(process: anyio.abc.Process) -> None:
    if process.returncode is None:
        process.kill()
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await process.wait()
