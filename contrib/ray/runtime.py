"""The server side of the Ray runtime: the bridge process, a channel per loaded model, the runtime.

``corral serve`` never imports Ray: it talks to the bridge (``bridge.py``, a Ray driver in a child
process) over a pipe. Each loaded model is a channel on that pipe and a RunnerActor on the
cluster; the channel is a corral.sdk.runner Transport, so the model is an ordinary RunnerClient.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs

from corral import LoadSpec, ModelFacts, ModelFiles, RuntimeFailure
from corral.sdk.runner import PeerGone, PipeTransport, RunnerClient, child_env, open_pipe

log = logging.getLogger(__name__)

BRIDGE_MODULE = "corral.contrib.ray.bridge"
CLOSE_SECONDS = 15.0
BLOB_NAME = re.compile(r"sha256-([0-9a-f]{64})")


@attrs.frozen(kw_only=True)
class RaySettings:
    address: str
    num_cpus: int
    resources: dict[str, float]
    cache: str
    connect_timeout: float
    placement_timeout: float

    @classmethod
    def of(cls, plugin: Any) -> RaySettings:
        return cls(address=plugin["ray.address"], num_cpus=plugin["ray.num_cpus"],
                   resources=plugin["ray.resources"], cache=plugin["ray.cache"],
                   connect_timeout=plugin["ray.connect_timeout"],
                   placement_timeout=plugin["ray.placement_timeout"])


class Channel:
    """One loaded model's messages on the bridge's pipe: a corral.sdk.runner Transport."""

    def __init__(self, link: Link, number: int) -> None:
        self.link = link
        self.number = number
        self.incoming, self.receiving = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self.gone_reason: str | None = None
        self.gone = anyio.Event()

    def deliver(self, message: dict[str, Any]) -> None:
        if message.get("op") == "gone":
            self.end(message.get("reason") or "gone")
        else:
            self.incoming.send_nowait(message)

    def end(self, reason: str) -> None:
        if self.gone_reason is None:
            self.gone_reason = reason
            self.gone.set()
            self.incoming.close()

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone_reason is not None:
            raise PeerGone(self.gone_reason)
        await self.link.send({**message, "channel": self.number})

    async def receive(self) -> dict[str, Any]:
        try:
            return await self.receiving.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise PeerGone(self.gone_reason or "gone") from None

    async def close(self) -> None:
        if self.gone_reason is None:
            try:
                await self.link.send({"op": "close", "channel": self.number})
            except PeerGone:
                return
            with anyio.move_on_after(CLOSE_SECONDS):
                await self.gone.wait()


class Link:
    """The pipe to one bridge process and the channels on it."""

    def __init__(self, transport: PipeTransport, address: str) -> None:
        self.transport = transport
        self.stdin = transport.process.stdin
        self.address = address
        self.channels: dict[int, Channel] = {}
        self.numbers = itertools.count(1)
        self.dead: str | None = None
        self.nodes = 1
        """Nodes that can hold models, as the bridge last reported."""

    async def send(self, message: dict[str, Any]) -> None:
        if self.dead is not None:
            raise PeerGone(self.dead)
        await self.transport.send(message)

    def route(self, message: dict[str, Any]) -> None:
        number = message.pop("channel", None)
        if number == 0 and message.get("op") == "nodes":
            self.nodes = message.get("count") or 0
            return
        channel = self.channels.get(number)  # type: ignore[arg-type]
        if channel is not None:
            channel.deliver(message)

    async def end(self) -> None:
        await self.stdin.aclose()  # type: ignore[union-attr]

    def fail(self, reason: str) -> None:
        self.dead = reason
        for channel in list(self.channels.values()):
            channel.end(reason)

    @asynccontextmanager
    async def channel(self, start: dict[str, Any]) -> AsyncIterator[Channel]:
        channel = Channel(self, next(self.numbers))
        self.channels[channel.number] = channel
        try:
            await channel.send({"op": "start", **start})
            yield channel
        finally:
            with anyio.CancelScope(shield=True):
                await channel.close()
            self.channels.pop(channel.number, None)


class RayCluster:
    """The server's connection to the cluster: one bridge at a time, started again after a loss."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.lock = anyio.Lock()
        self.current: Link | None = None
        self.group: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RayCluster]:
        """Join the cluster (a one-line error when there is none) and stay joined until exit."""
        async with anyio.create_task_group() as group:
            self.group = group
            try:
                await self.link()
                yield self
            finally:
                self.group = None
                if self.current is not None:
                    with anyio.CancelScope(shield=True):
                        await self.current.end()  # the bridge leaves when its input ends

    async def link(self) -> Link:
        async with self.lock:
            if self.current is None or self.current.dead is not None:
                if self.group is None:
                    raise RuntimeFailure("the Ray runtime is not running")
                self.current = await self.group.start(self._keep)
            return self.current

    async def _keep(self, *, task_status: anyio.abc.TaskStatus[Link] = anyio.TASK_STATUS_IGNORED) -> None:
        where = f"the Ray cluster (ray.address = {self.settings.address})"
        # A driver that lost the cluster's head leaves after this long (Ray's default: 60 s); the
        # next load then starts a bridge that joins the cluster again, or says it cannot.
        env = child_env({"RAY_gcs_rpc_server_reconnect_timeout_s": str(int(self.settings.connect_timeout)),
                         **os.environ})
        process = await anyio.open_process([sys.executable, "-m", BRIDGE_MODULE], stdin=-1, stdout=-1, stderr=-1,
                                           env=env)
        async with open_pipe(process, name="ray bridge") as transport:
            try:
                await transport.send({"address": self.settings.address})
                with anyio.fail_after(self.settings.connect_timeout):
                    hello = await transport.receive()
            except PeerGone as gone:
                raise RuntimeFailure(f"cannot join {where}: the bridge process ended ({gone})") from None
            except TimeoutError:
                raise RuntimeFailure(f"cannot join {where}: no answer within "
                                     f"{self.settings.connect_timeout:g} seconds") from None
            if hello.get("op") != "connected":
                raise RuntimeFailure(f"cannot join {where}: {hello.get('error', hello)}")
            link = Link(transport, hello.get("address", ""))
            log.info("joined the Ray cluster from node %s (%s nodes)", link.address, hello.get("nodes"))
            task_status.started(link)
            try:
                while True:
                    link.route(await transport.receive())
            except PeerGone as gone:
                link.fail(f"the connection to {where} ended ({gone})")
                log.warning("lost %s: %s", where, gone)
            finally:
                link.fail(link.dead or "the server is stopping")
                with anyio.CancelScope(shield=True):
                    await link.end()


class RayRuntime:
    """Loads each model into a RunnerActor on the cluster, with another runtime's runner
    (``runner_spec``, e.g. llama.cpp's)."""

    def __init__(self, cluster: RayCluster, local: Any, max_per_node: int) -> None:
        self.cluster = cluster
        self.local = local
        self.max_per_node = max_per_node

    def nodes(self) -> int:
        """Machines the models spread over: OLLAMA_MAX_LOADED_MODELS counts per node."""
        link = self.cluster.current
        return link.nodes if link is not None and link.dead is None else 1

    async def describe(self, files: ModelFiles) -> ModelFacts:
        return await self.local.describe(files)  # the same format as the runtime whose runner it hosts

    async def close(self) -> None:
        pass  # the cluster connection is the plugin's lifespan's to end

    @asynccontextmanager
    async def load(self, spec: LoadSpec) -> AsyncIterator[RunnerClient]:
        settings = self.cluster.settings
        runner = self.local.runner_spec(spec)
        threads = int(spec.options.get("num_thread") or settings.num_cpus)
        runner = attrs.evolve(runner, config={**runner.config, "num_thread": threads})
        files = await anyio.to_thread.run_sync(describe_files, runner.files)
        start = {"name": spec.name, "files": files, "num_cpus": threads,
                 "gpu": (spec.options.get("num_gpu") or 0) > 0, "resources": settings.resources,
                 "cache": settings.cache, "placement_timeout": settings.placement_timeout,
                 "max_per_node": self.max_per_node}
        link = await self.cluster.link()
        try:
            async with link.channel(start) as channel, \
                    RunnerClient.connect(channel, runner, name=spec.name) as model:
                yield model
        except PeerGone as gone:
            raise RuntimeFailure(f"llama runner process has terminated: {gone}") from None


def describe_files(paths: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each file's path, size and digest (from its store name), for the node to find or fetch it."""
    described = []
    for path in paths:
        match = BLOB_NAME.fullmatch(os.path.basename(path))
        described.append({"path": path, "size": os.path.getsize(path),
                          "digest": f"sha256:{match.group(1)}" if match else None})
    return described
