"""Which models are loaded, for how long, and who may use them.

- A model loads on first use; later requests for it go straight to it and wait only for one of its
  OLLAMA_NUM_PARALLEL slots.
- At most OLLAMA_MAX_LOADED_MODELS are loaded or loading (per node, for a runtime whose
  ``nodes()`` says it spreads models over machines): an idle one is evicted to make room, or the
  request waits until one is idle. Each model loads in a task of its own and nothing is locked
  meanwhile, so a slow or hung load never delays requests to other models. A load that takes
  longer than OLLAMA_LOAD_TIMEOUT fails (and its runtime stops what it started).
- At most OLLAMA_MAX_QUEUE requests wait (for a load, for room, or for a slot); the next is
  ServerBusy (503). As in Ollama, a request whose model is loading for it (or has made room for
  that load) counts as running, not waiting.
- When its last request ends, a model expires after its keep_alive (0: at once; FOREVER: never).
  A request that sets keep_alive changes it for the model.
- A model loaded with other load-time options is reloaded once it is idle.
- A model whose runtime dies is dropped; the next request loads it again.

Every runtime gets the same events from here: RunnerStarted as its load starts, ModelLoaded when
it is ready, RunnerStopped (``crashed`` when it failed or died on its own) and ModelUnloaded.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs

from .durations import FOREVER, format_go_duration
from .errors import CorralError, RuntimeFailure, ServerBusy
from .options import load_options
from .types import (
    LoadSpec,
    ModelFiles,
    ModelInfo,
    ModelLoaded,
    ModelUnloaded,
    RunnerStarted,
    RunnerStopped,
)

log = logging.getLogger(__name__)

BUSY = "server busy, please try again.  maximum pending requests exceeded"


@attrs.define(eq=False)
class Loaded:
    """One model, from the start of its load until its runtime has let it go."""

    key: tuple[str, bool]
    info: ModelInfo
    requested: dict[str, Any]
    keep_alive: float
    num_parallel: int
    slots: anyio.Semaphore
    after: Loaded | None = None
    """The model this one took the place of: its load waits until that one has gone."""
    runtime: str = ""
    model: Any = None
    context_length: int = 0
    node: str | None = None
    refs: int = 0
    expires_at: dt.datetime | None = None
    loaded_at: float = attrs.field(factory=time.monotonic)
    generation: int = 0
    failure: BaseException | None = None
    handed_over: bool = False
    """Its place among the loaded models is promised to the model loading after it."""
    stop_reason: str = "unloaded"
    ready: anyio.Event = attrs.field(factory=anyio.Event)
    """Set when the load ended: loaded, or failed (``failure`` says why)."""
    stop: anyio.Event = attrs.field(factory=anyio.Event)
    closed: anyio.Event = attrs.field(factory=anyio.Event)
    scope: anyio.CancelScope | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def live(self) -> bool:
        """Loaded or loading, and not told to stop."""
        return not self.stop.is_set() and self.failure is None

    @property
    def idle(self) -> bool:
        return self.live and self.ready.is_set() and self.refs == 0 and not self.handed_over

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()
            if not self.ready.is_set() and self.scope is not None:
                self.scope.cancel()  # still loading: give up the load


@attrs.frozen(kw_only=True)
class Lease:
    """A slot on a loaded model, held for the length of one request."""

    model: Any
    entry: Loaded
    load_duration_ns: int
    """From asking for the slot to holding it (Ollama's load_duration): queueing and loading."""
    queue_duration_ns: int = 0
    """The part of it spent waiting (for a slot, for room, for a load another request started);
    the rest, if any, loaded the model for this request."""


@attrs.define(eq=False)
class Scheduler:
    kernel: Any
    entries: dict[tuple[str, bool], Loaded] = attrs.field(factory=dict)
    """The current entry of each (model, embedding) pair."""
    waiting: int = 0
    _hosted: set[Loaded] = attrs.field(factory=set)
    """Every entry whose runtime context is not closed yet, replaced ones included."""
    _changed: anyio.Event = attrs.field(factory=anyio.Event)
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
                    await self.kernel.close_runtimes()
                self._group = None

    # -- using models -----------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, info: ModelInfo, options: Mapping[str, Any], *, keep_alive: float | None,
                    embedding: bool = False) -> AsyncIterator[Lease]:
        """Hold a slot on ``info`` loaded with ``options``' load-time part for one request."""
        if self._group is None:
            raise RuntimeError("the scheduler is not running")
        if self._closing.is_set():
            raise RuntimeFailure("the server is shutting down")
        if self.waiting >= self.settings.max_queue:
            raise ServerBusy(BUSY)
        started = time.perf_counter_ns()
        ticket = _Ticket(self)
        try:
            entry, loaded_ns = await self._slot(info, load_options(options), keep_alive, embedding, ticket)
        finally:
            ticket.leave()
        load_duration = time.perf_counter_ns() - started
        try:
            yield Lease(model=entry.model, entry=entry, load_duration_ns=load_duration,
                        queue_duration_ns=max(load_duration - loaded_ns, 0))
        finally:
            entry.slots.release()
            self._release(entry)

    async def _slot(self, info: ModelInfo, requested: dict[str, Any], keep_alive: float | None,
                    embedding: bool, ticket: _Ticket) -> tuple[Loaded, int]:
        loaded_ns = 0
        while True:
            entry, loading_ns = await self._reserve(info, requested, embedding, ticket)
            loaded_ns += loading_ns
            if keep_alive is not None:
                entry.keep_alive = keep_alive
            try:
                await entry.slots.acquire()
            except BaseException:
                self._release(entry)
                raise
            if entry.live:
                return entry, loaded_ns
            entry.slots.release()  # it died or was told to stop while we waited: start over
            self._release(entry)

    async def _reserve(self, info: ModelInfo, requested: dict[str, Any], embedding: bool,
                       ticket: _Ticket) -> tuple[Loaded, int]:
        """A live entry for the model with a reference taken, so nothing unloads it, and how long
        this request spent loading it (0 unless the load was started for this request). Each pass
        decides without awaiting anything, so no lock is needed and none is held while loading."""
        key = (info.digest, embedding)
        while True:
            changed = self._changed
            entry = self.entries.get(key)
            after = None
            if entry is not None and entry.live:
                if entry.requested == requested:
                    self._take(entry)
                    await self._await_load(entry)  # another request's load: queueing for this one
                    return entry, 0
                if not entry.idle:
                    await changed.wait()  # loaded with other options and in use: reload when idle
                    continue
                after = entry  # loaded with other options: this load takes its place
            elif len(self._places()) >= self._capacity(info):
                idle = [e for e in self._places() if e.idle]
                if not idle:
                    await changed.wait()
                    continue
                after = min(idle, key=lambda e: e.loaded_at)  # evict the longest loaded
            if after is not None:
                after.handed_over = True
                after.request_stop("unloaded")
            entry = self._start_load(info, requested, embedding, after)
            ticket.leave()  # this request's model is loading for it: it runs, it no longer waits
            return entry, await self._await_load(entry)

    async def _await_load(self, entry: Loaded) -> int:
        """Wait for the load of an entry this request holds a reference on; its failure is the
        request's. Returns how long that took."""
        if entry.ready.is_set() and entry.failure is None:
            return 0
        started = time.perf_counter_ns()
        try:
            await entry.ready.wait()
        except BaseException:
            self._release(entry)
            raise
        if entry.failure is not None:
            self._release(entry)
            raise entry.failure
        return time.perf_counter_ns() - started

    def _capacity(self, info: ModelInfo) -> int:
        """How many models may be loaded: OLLAMA_MAX_LOADED_MODELS per node of the model's runtime."""
        nodes = getattr(self.kernel.runtime(self.kernel.runtime_for(info)), "nodes", None)
        return self.settings.max_loaded_models * max(1, nodes() if nodes is not None else 1)

    def _take(self, entry: Loaded) -> None:
        entry.refs += 1
        entry.generation += 1  # cancels a pending expiry
        entry.expires_at = None

    def _release(self, entry: Loaded) -> None:
        entry.refs -= 1
        if entry.refs == 0:
            self._idle(entry)
        self._notify()

    def _idle(self, entry: Loaded) -> None:
        """Start the expiry of a loaded model that nobody uses any more."""
        if not entry.live or not entry.ready.is_set():
            return
        if entry.keep_alive <= 0:
            entry.request_stop("unloaded")
        elif entry.keep_alive == FOREVER:
            entry.expires_at = None
        else:
            entry.expires_at = _now() + dt.timedelta(seconds=entry.keep_alive)
            self._spawn(self._expire, entry, entry.generation, entry.keep_alive)

    def _spawn(self, function: Any, *args: Any) -> None:
        if self._group is not None:
            self._group.start_soon(function, *args)

    async def _expire(self, entry: Loaded, generation: int, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._closing.wait()
        if not self._closing.is_set() and entry.generation == generation and entry.refs == 0:
            entry.request_stop("expired")
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _places(self) -> list[Loaded]:
        """Entries holding a place among the loaded models: loading, loaded, or still stopping
        (unless their place is promised to the model loading after them)."""
        return [entry for entry in self._hosted if not entry.handed_over]

    def _live(self) -> list[Loaded]:
        return [entry for entry in self.entries.values() if entry.live and entry.ready.is_set()]

    # -- loading and unloading --------------------------------------------------------------

    def _start_load(self, info: ModelInfo, requested: dict[str, Any], embedding: bool,
                    after: Loaded | None) -> Loaded:
        if self._closing.is_set():
            raise RuntimeFailure("the server is shutting down")
        num_parallel = 1 if embedding else self.settings.num_parallel
        entry = Loaded(key=(info.digest, embedding), info=info, requested=requested,
                       keep_alive=self.settings.keep_alive, num_parallel=num_parallel,
                       slots=anyio.Semaphore(num_parallel), after=after)
        self.entries[entry.key] = entry
        self._hosted.add(entry)
        self._take(entry)
        assert self._group is not None
        self._group.start_soon(self._host, entry, embedding)
        return entry

    async def _host(self, entry: Loaded, embedding: bool) -> None:
        """Keep one model loaded: enter its runtime's context, wait for stop or death, exit it.

        The model's whole life runs in one cancel scope. Until the model is ready its deadline is
        the load timeout, and stopping the entry cancels it: a hung load ends inside the runtime,
        which stops whatever it started, and nothing but this model's own requests waits for it."""
        loaded = crashed = started_runner = False
        reason = "unloaded"
        try:
            if entry.after is not None:
                await entry.after.closed.wait()  # never two copies of the weights in memory
                entry.after = None
            with anyio.CancelScope() as scope:
                entry.scope = scope
                timeout = self.settings.load_timeout
                if timeout != FOREVER:
                    scope.deadline = anyio.current_time() + timeout
                if entry.stop.is_set():
                    scope.cancel()
                started = time.perf_counter()
                choice = self.kernel.runtime_for(entry.info)
                entry.runtime = choice.name
                runtime = self.kernel.runtime(choice)
                facts = await self.kernel.describe(entry.info)
                options = dict(entry.requested)
                options["num_ctx"] = max(4, min(options.get("num_ctx", self.settings.context_length),
                                                facts.context_length or 1 << 31))
                if "num_batch" in options:  # llama.cpp never uses more; the runtime might allocate it anyway
                    options["num_batch"] = min(options["num_batch"], options["num_ctx"])
                spec = LoadSpec(files=ModelFiles.of(entry.info, self.kernel.store), facts=facts, options=options,
                                num_parallel=entry.num_parallel, embedding=embedding)
                self.kernel.emit(RunnerStarted(name=entry.name, runtime=entry.runtime))
                started_runner = True
                async with runtime.load(spec) as model:
                    scope.deadline = math.inf
                    entry.model = model
                    entry.context_length = model.context_length or options["num_ctx"]
                    entry.node = model.node
                    loaded = True
                    entry.ready.set()
                    self.kernel.emit(ModelLoaded(name=entry.name, runtime=entry.runtime,
                                                 seconds=time.perf_counter() - started, node=entry.node))
                    if entry.refs == 0:
                        self._idle(entry)  # every request that wanted it went away during the load
                    self._notify()
                    if await _stopped_or_died(entry, model):
                        reason = entry.stop_reason
                    else:
                        reason, crashed = "runner exited", True
            if not loaded and scope.cancelled_caught:
                if entry.stop.is_set():
                    entry.failure = RuntimeFailure(f"{entry.name} was unloaded while it loaded")
                    reason = "unloaded"
                else:
                    entry.failure = RuntimeFailure(
                        f"timed out waiting for {entry.name} to load after {format_go_duration(timeout)} "
                        f"(OLLAMA_LOAD_TIMEOUT)")
                    reason = "load timed out"
        except Exception as error:
            if loaded:
                log.exception("runtime %s failed while serving %s", entry.runtime, entry.name)
                crashed, reason = True, str(error) or type(error).__name__
            else:
                if not isinstance(error, CorralError):
                    log.exception("runtime %s failed to load %s", entry.runtime or "?", entry.name)
                    error = RuntimeFailure(f"failed to load {entry.name}: {error}")
                entry.failure = error
                crashed, reason = True, error.message
        finally:
            entry.stop.set()
            entry.ready.set()
            entry.closed.set()
            self._hosted.discard(entry)
            if self.entries.get(entry.key) is entry:
                del self.entries[entry.key]
            if started_runner:
                self.kernel.emit(RunnerStopped(name=entry.name, runtime=entry.runtime, crashed=crashed,
                                               reason=reason))
            if loaded:
                self.kernel.emit(ModelUnloaded(name=entry.name, reason=reason))
            self._notify()

    async def unload(self, info: ModelInfo) -> bool:
        """Unload ``info`` now, or as soon as its requests end. False when it was not loaded."""
        found = [entry for entry in self._live() if entry.info.digest == info.digest]
        for entry in found:
            entry.keep_alive = 0
            if entry.refs == 0:
                entry.request_stop("unloaded")
                await entry.closed.wait()
        return bool(found)

    async def unload_all(self) -> None:
        for entry in list(self._hosted):
            entry.request_stop("shutdown")
        while self._hosted:
            await next(iter(self._hosted)).closed.wait()

    def loaded(self) -> list[Loaded]:
        """Loaded models, latest to expire first (never-expiring first)."""
        far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
        return sorted(self._live(), key=lambda e: e.expires_at or far, reverse=True)


async def _stopped_or_died(entry: Loaded, model: Any) -> bool:
    """Wait until the entry is told to stop (True) or its model dies (False)."""
    stopped = True
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal stopped
            await model.wait()
            stopped = False
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await entry.stop.wait()
        group.cancel_scope.cancel()
    return stopped


@attrs.define(eq=False)
class _Ticket:
    """A request's place in the queue: counted from its arrival until it holds a slot, or until
    its model starts loading for it."""

    scheduler: Scheduler
    counted: bool = True

    def __attrs_post_init__(self) -> None:
        self.scheduler.waiting += 1

    def leave(self) -> None:
        if self.counted:
            self.counted = False
            self.scheduler.waiting -= 1


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()
