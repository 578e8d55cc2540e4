"""Which models are loaded, for how long, and who may use them.

- A model loads on first use; later requests for it go straight to it (they never queue behind a
  load) and wait only for one of its OLLAMA_NUM_PARALLEL slots.
- At most OLLAMA_MAX_LOADED_MODELS stay loaded (per node, for a runtime whose ``nodes()`` says it
  spreads models over machines): an idle one is evicted to make room, or the request waits until
  one is idle. One load happens at a time.
- At most OLLAMA_MAX_QUEUE requests wait (for a load or a slot); the next is ServerBusy (503).
- When its last request ends, a model expires after its keep_alive (0: at once; FOREVER: never).
  A request that sets keep_alive changes it for the model.
- A runtime whose model dies is dropped; the next request loads it again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs

from .durations import FOREVER
from .errors import RuntimeFailure, ServerBusy
from .gguf import read_gguf
from .options import load_options
from .types import LoadSpec, ModelInfo, ModelLoaded, ModelUnloaded

log = logging.getLogger(__name__)

BUSY = "server busy, please try again.  maximum pending requests exceeded"


@attrs.define(eq=False)
class Loaded:
    """One loaded model and its bookkeeping."""

    key: tuple[str, bool]
    info: ModelInfo
    runtime: str
    requested: dict[str, Any]
    keep_alive: float
    num_parallel: int
    slots: anyio.Semaphore
    model: Any = None
    context_length: int = 0
    node: str | None = None
    refs: int = 0
    expires_at: dt.datetime | None = None
    loaded_at: float = attrs.field(factory=time.monotonic)
    generation: int = 0
    load_ns: int = 0
    loaded_by: int | None = None
    """The task that loaded it, until that task's lease has counted the load as its own."""
    stop: anyio.Event = attrs.field(factory=anyio.Event)
    closed: anyio.Event = attrs.field(factory=anyio.Event)

    @property
    def name(self) -> str:
        return self.info.name


@attrs.frozen(kw_only=True)
class Lease:
    """A slot on a loaded model, held for the length of one request."""

    model: Any
    entry: Loaded
    load_duration_ns: int
    """From asking for the slot to holding it (Ollama's load_duration): queueing and loading."""
    queue_duration_ns: int = 0
    """The part of it spent waiting (for a slot, for room, for another request's load)."""


@attrs.define(eq=False)
class Scheduler:
    kernel: Any
    entries: dict[tuple[str, bool], Loaded] = attrs.field(factory=dict)
    waiting: int = 0
    _lock: anyio.Lock = attrs.field(factory=anyio.Lock)
    _changed: anyio.Event = attrs.field(factory=anyio.Event)
    _runtimes: dict[str, Any] = attrs.field(factory=dict)
    _group: anyio.abc.TaskGroup | None = None
    _closing: anyio.Event = attrs.field(factory=anyio.Event)

    @property
    def settings(self) -> Any:
        return self.kernel.settings

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """Run the scheduler's tasks; on exit, unload every model and let those tasks end."""
        self._closing = anyio.Event()
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    self._closing.set()
                    await self.unload_all()
                    for runtime in self._runtimes.values():
                        close = getattr(runtime, "close", None)
                        if close is not None:
                            await close()
                self._group = None

    # -- using models -----------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, info: ModelInfo, options: Mapping[str, Any], *, keep_alive: float | None,
                    embedding: bool = False) -> AsyncIterator[Lease]:
        """Hold a slot on ``info`` loaded with ``options``' load-time part for one request."""
        if self._group is None:
            raise RuntimeError("the scheduler is not running")
        if self.waiting >= self.settings.max_queue:
            raise ServerBusy(BUSY)
        started = time.perf_counter_ns()
        self.waiting += 1
        try:
            entry = await self._slot(info, load_options(options), keep_alive, embedding)
        finally:
            self.waiting -= 1
        load_duration = time.perf_counter_ns() - started
        loaded_here = 0
        if entry.loaded_by is not None and entry.loaded_by == anyio.get_current_task().id:
            loaded_here, entry.loaded_by = entry.load_ns, None
        try:
            yield Lease(model=entry.model, entry=entry, load_duration_ns=load_duration,
                        queue_duration_ns=max(load_duration - loaded_here, 0))
        finally:
            entry.slots.release()
            self._release(entry)

    async def _slot(self, info: ModelInfo, requested: dict[str, Any], keep_alive: float | None,
                    embedding: bool) -> Loaded:
        while True:
            entry = await self._reserve(info, requested, embedding)
            if keep_alive is not None:
                entry.keep_alive = keep_alive
            try:
                await entry.slots.acquire()
            except BaseException:
                self._release(entry)
                raise
            if not entry.closed.is_set():
                return entry
            entry.slots.release()
            self._release(entry)

    async def _reserve(self, info: ModelInfo, requested: dict[str, Any], embedding: bool) -> Loaded:
        """A loaded entry for the model, with a reference taken so nothing unloads it."""
        key = (info.digest, embedding)
        while True:
            entry = self.entries.get(key)
            if entry is not None and entry.requested == requested and not entry.stop.is_set():
                self._take(entry)  # no await since the lookup: a loaded model skips the queue
                return entry
            changed = self._changed
            async with self._lock:
                entry = self.entries.get(key)
                if entry is not None and not entry.stop.is_set():
                    if entry.requested == requested:
                        self._take(entry)
                        return entry
                    if entry.refs == 0:
                        await self._unload(entry)  # loaded with other options: reload
                        continue
                elif len(self._live()) >= self._capacity(info):
                    idle = [e for e in self._live() if e.refs == 0]
                    if idle:
                        await self._unload(min(idle, key=lambda e: e.loaded_at))
                        continue
                else:
                    entry = await self._load(info, requested, embedding)
                    self._take(entry)
                    return entry
            await changed.wait()

    def _capacity(self, info: ModelInfo) -> int:
        """How many models may be loaded: OLLAMA_MAX_LOADED_MODELS per node of the runtime."""
        nodes = getattr(self._runtimes.get(self.kernel.runtime_for(info).name), "nodes", None)
        return self.settings.max_loaded_models * max(1, nodes() if nodes is not None else 1)

    def _take(self, entry: Loaded) -> None:
        entry.refs += 1
        entry.generation += 1  # cancels a pending expiry

    def _release(self, entry: Loaded) -> None:
        entry.refs -= 1
        if entry.refs == 0 and not entry.stop.is_set():
            if entry.keep_alive <= 0:
                self._spawn(self._unload, entry)
            elif entry.keep_alive != FOREVER:
                entry.expires_at = _now() + dt.timedelta(seconds=entry.keep_alive)
                self._spawn(self._expire, entry, entry.generation, entry.keep_alive)
        self._notify()

    def _spawn(self, function: Any, *args: Any) -> None:
        if self._group is not None:
            self._group.start_soon(function, *args)

    async def _expire(self, entry: Loaded, generation: int, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._closing.wait()
        if self._closing.is_set():
            return
        if entry.generation == generation and entry.refs == 0:
            await self._unload(entry)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _live(self) -> list[Loaded]:
        return [entry for entry in self.entries.values() if not entry.stop.is_set()]

    # -- loading and unloading --------------------------------------------------------------

    async def _load(self, info: ModelInfo, requested: dict[str, Any], embedding: bool) -> Loaded:
        started = time.perf_counter_ns()
        spec_choice = self.kernel.runtime_for(info)
        runtime = self._runtimes.get(spec_choice.name)
        if runtime is None:
            runtime = self._runtimes[spec_choice.name] = spec_choice.factory(self.kernel)
        parts = await self.kernel.store.parts(info)
        if parts.model_path is None:
            raise RuntimeFailure(f"model {info.name} has no weights in a local file")
        gguf = await anyio.to_thread.run_sync(lambda: read_gguf(parts.model_path, skip_arrays_longer_than=0))
        options = dict(requested)
        options["num_ctx"] = max(4, min(options.get("num_ctx", self.settings.context_length),
                                        gguf.context_length or 1 << 31))
        if embedding and gguf.pooling_type is None:
            options["pooling"] = "mean"  # a generative model asked for embeddings
        num_parallel = 1 if embedding else self.settings.num_parallel
        spec = LoadSpec(name=info.name, model_path=parts.model_path, format=info.config.get("model_format", "gguf"),
                        adapters=parts.adapter_paths, projector=parts.projector_path, options=options,
                        num_parallel=num_parallel, embedding=embedding)
        entry = Loaded(key=(info.digest, embedding), info=info, runtime=spec_choice.name, requested=requested,
                       keep_alive=self.settings.keep_alive, num_parallel=num_parallel,
                       slots=anyio.Semaphore(num_parallel), context_length=options["num_ctx"])
        assert self._group is not None
        await self._group.start(self._host, entry, runtime, spec)
        entry.load_ns, entry.loaded_by = time.perf_counter_ns() - started, anyio.get_current_task().id
        if entry.keep_alive != FOREVER:
            entry.expires_at = _now() + dt.timedelta(seconds=max(entry.keep_alive, 0))
        self.entries[entry.key] = entry
        self.kernel.emit(ModelLoaded(name=info.name, runtime=entry.runtime, seconds=entry.load_ns / 1e9))
        return entry

    async def _host(self, entry: Loaded, runtime: Any, spec: LoadSpec,
                    *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep one model loaded: enter the runtime's context, wait for stop or death, exit it."""
        reason = "unloaded"
        try:
            async with runtime.load(spec) as model:
                entry.model = model
                entry.context_length = getattr(model, "context_length", 0) or entry.context_length
                entry.node = getattr(model, "node", None)
                task_status.started()
                async with anyio.create_task_group() as group:

                    async def watch() -> None:
                        nonlocal reason
                        await model.wait()
                        reason = "runner exited"
                        group.cancel_scope.cancel()

                    if hasattr(model, "wait"):
                        group.start_soon(watch)
                    await entry.stop.wait()
                    group.cancel_scope.cancel()
        finally:
            entry.stop.set()
            entry.closed.set()
            if self.entries.get(entry.key) is entry:
                del self.entries[entry.key]
                self.kernel.emit(ModelUnloaded(name=entry.name, reason=reason))
            self._notify()

    async def _unload(self, entry: Loaded) -> None:
        entry.stop.set()
        await entry.closed.wait()

    async def unload(self, info: ModelInfo) -> bool:
        """Unload ``info`` now, or as soon as its requests end. False when it was not loaded."""
        found = [entry for entry in self._live() if entry.info.digest == info.digest]
        for entry in found:
            entry.keep_alive = 0
            if entry.refs == 0:
                await self._unload(entry)
        return bool(found)

    async def unload_all(self) -> None:
        for entry in self._live():
            entry.stop.set()
        for entry in list(self.entries.values()):
            await entry.closed.wait()

    def loaded(self) -> list[Loaded]:
        """Loaded models, latest to expire first (never-expiring first)."""
        far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
        return sorted(self._live(), key=lambda e: e.expires_at or far, reverse=True)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()
