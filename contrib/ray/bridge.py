"""The bridge: ``corral serve``'s one connection to the Ray cluster, a child process of its own.

Run as ``python -m corral.contrib.ray.bridge``. It reads JSON lines on stdin: first the
connection settings, then messages tagged with a ``channel`` (one per loaded model). For each
channel it places a RunnerActor, brings the model's files to its node, and relays runner
messages both ways (corral.sdk.runner's protocol). It is a Ray driver, so the actors it creates
end with it; a server that loses it (the cluster went away) starts a new one for the next load.

Messages from the server: ``{"channel": n, "op": "start", "name", "files", "num_cpus", "gpu",
"resources", "cache", "placement_timeout", "max_per_node"}`` (see runtime.py), then runner messages
for that channel, then ``{"channel": n, "op": "close"}``. To the server: runner messages tagged with
their channel; ``{"channel": n, "op": "failed", "error"}`` when the runner could not be started;
``{"channel": n, "op": "gone", "reason"}`` once it ended; ``{"channel": 0, "op": "nodes", "count"}``
whenever the number of nodes that can hold models changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections import Counter
from typing import Any, BinaryIO

from corral.sdk.runner import decode, die_with_parent, encode, protocol_stream

CLOSE_SECONDS = 5.0
NODES_SECONDS = 2.0


class Relay:
    """Writes tagged messages to the server, one flush per batch."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def write(self, channel: int, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.stream.write(encode({**message, "channel": channel}))
        self.stream.flush()


class Host:
    """One channel: a RunnerActor, its files, and the messages both ways."""

    def __init__(self, bridge: Bridge, channel: int, start: dict[str, Any]) -> None:
        self.bridge = bridge
        self.channel = channel
        self.start = start
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.actor: Any = None
        self.chosen: str | None = None
        self.where: dict[str, str] = {}

    def say(self, message: dict[str, Any]) -> None:
        self.bridge.relay.write(self.channel, [message])

    async def run(self) -> None:
        import ray

        avoid: set[str] = set()
        while True:
            try:
                paths = await self._place(avoid)
                break
            except Exception as error:
                await self._kill()
                if isinstance(error, ray.exceptions.RayActorError) and self.chosen and self.chosen not in avoid:
                    avoid.add(self.chosen)  # its node went away as the model arrived: try another once
                    continue
                died = isinstance(error, ray.exceptions.RayActorError)
                self.say({"op": "failed", "error": ("the Ray actor for the model died as it started: " if died else "")
                          + describe(error)})
                await self._wait_for_close()
                self.say({"op": "gone", "reason": "not started"})
                return
        sequence = 0
        pump = asyncio.create_task(self._pump())
        reason = ""
        try:
            while True:
                getting = asyncio.create_task(self.incoming.get())
                done, _ = await asyncio.wait({getting, pump}, return_when=asyncio.FIRST_COMPLETED)
                if pump in done:
                    getting.cancel()
                    reason = pump.result()
                    break
                message = getting.result()
                if message.get("op") == "close":
                    try:
                        reason = await asyncio.wait_for(asyncio.shield(pump), CLOSE_SECONDS)
                    except asyncio.TimeoutError:
                        reason = "closed"
                    break
                if message.get("op") == "load":
                    message = {**message, "config": replace_paths(message.get("config") or {}, paths)}
                self.actor.put.remote(sequence, message)
                sequence += 1
        finally:
            pump.cancel()
            await self._kill()
            self.say({"op": "gone", "reason": reason or "closed"})

    async def _place(self, avoid: set[str]) -> dict[str, str]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .actors import RunnerActor

        start = self.start
        options: dict[str, Any] = {"num_cpus": start["num_cpus"], "resources": start.get("resources") or {}}
        if start.get("gpu") and ray.cluster_resources().get("GPU", 0) > 0:
            options["num_gpus"] = 1
        node = self.chosen = self.bridge.choose_node(options, start.get("max_per_node") or 1, avoid)
        # Soft: should that node be busy with other work, Ray may still place the model elsewhere.
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True) if node else "SPREAD"
        self.actor = RunnerActor.options(**options).remote()
        try:
            self.where = await asyncio.wait_for(self.actor.where.remote(), start["placement_timeout"])
        except asyncio.TimeoutError:
            raise TimeoutError(f"no Ray node took the model within {start['placement_timeout']:g} seconds "
                               f"(it needs {describe_resources(options)})") from None
        files = start["files"]
        await self.bridge.store.allow.remote({item["digest"]: item["path"] for item in files if item["digest"]})
        return await self.actor.prepare.remote(files, self.bridge.store, start["cache"])

    async def _pump(self) -> str:
        """Relay the actor's replies until it ends; return why it ended."""
        try:
            async for reference in self.actor.replies.options(num_returns="streaming").remote():
                batch = await reference
                for message in batch:
                    if message.get("op") == "ready":
                        message["node"] = self.where.get("address")
                self.bridge.relay.write(self.channel, batch)
        except Exception as error:
            return self.bridge.why_gone(self.where, error)
        return "exited"

    async def _wait_for_close(self) -> None:
        while (await self.incoming.get()).get("op") != "close":
            pass

    async def _kill(self) -> None:
        import ray

        if self.actor is not None:
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception:  # already gone
                pass


class Bridge:
    def __init__(self, store: Any, out: BinaryIO) -> None:
        self.store = store
        self.relay = Relay(out)
        self.hosts: dict[int, Host] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, message: dict[str, Any]) -> None:
        channel = message.pop("channel")
        if message.get("op") == "start":
            host = self.hosts[channel] = Host(self, channel, message)
            task = asyncio.create_task(host.run())
            self.tasks.add(task)
            task.add_done_callback(lambda _task: (self.tasks.discard(_task), self.hosts.pop(channel, None)))
        elif channel in self.hosts:
            self.hosts[channel].incoming.put_nowait(message)

    def choose_node(self, options: dict[str, Any], max_per_node: int, avoid: set[str]) -> str | None:
        """The node for the next model: alive, not in ``avoid``, big enough, with the fewest of this
        server's models (OLLAMA_MAX_LOADED_MODELS counts per node). None when no node is big enough
        now (Ray then waits for one, e.g. from an autoscaler)."""
        import ray

        needs = {"CPU": options["num_cpus"], **options["resources"]}
        if options.get("num_gpus"):
            needs["GPU"] = options["num_gpus"]
        counts = Counter(host.where.get("node_id") for host in self.hosts.values() if host.where)
        fits = [node for node in ray.nodes()
                if node["Alive"] and node["NodeID"] not in avoid and all(node["Resources"].get(name, 0) >= amount for name, amount in needs.items())]
        free = [node for node in fits if counts[node["NodeID"]] < max_per_node]
        if fits and not free:
            raise RuntimeError(f"every Ray node that fits the model already runs {max_per_node} "
                               f"(OLLAMA_MAX_LOADED_MODELS counts per node)")
        if not free:
            return None
        return min(free, key=lambda node: (counts[node["NodeID"]], -node["Resources"].get("CPU", 0)))["NodeID"]

    async def report_nodes(self) -> None:
        """Tell the server how many nodes can hold models, whenever that changes."""
        import ray

        known = None
        while True:
            try:
                count = sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0)
            except Exception:  # the head is away; the driver leaves on its own if it stays away
                count = known
            if count != known:
                self.relay.write(0, [{"op": "nodes", "count": count}])
                known = count
            await asyncio.sleep(NODES_SECONDS)

    def why_gone(self, where: dict[str, str], error: BaseException) -> str:
        import ray

        address = where.get("address", "?")
        try:
            alive = any(node["NodeID"] == where.get("node_id") and node["Alive"] for node in ray.nodes())
        except Exception:
            alive = True
        if not alive:
            return f"its Ray node {address} left the cluster"
        return f"its Ray actor on node {address} died ({type(error).__name__})"


def describe(error: BaseException) -> str:
    """One line for a user: Ray's errors span many lines."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def describe_resources(options: dict[str, Any]) -> str:
    wants = [f"{options['num_cpus']} CPU"]
    if options.get("num_gpus"):
        wants.append(f"{options['num_gpus']} GPU")
    wants += [f"{amount:g} {name}" for name, amount in (options.get("resources") or {}).items()]
    return ", ".join(wants)


def replace_paths(config: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return paths.get(value, value)
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    return {key: swap(value) for key, value in config.items()}


def connect(settings: dict[str, Any]) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .actors import StoreReader

    ray.init(address=settings["address"], namespace="corral", logging_level=logging.WARNING,
             log_to_driver=False, configure_logging=True)
    here = ray.get_runtime_context().get_node_id()
    return StoreReader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()


async def serve(bridge: Bridge) -> None:
    bridge.tasks.add(asyncio.create_task(bridge.report_nodes()))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip():
            bridge.dispatch(decode(line))


def main() -> None:
    die_with_parent()
    settings = json.loads(sys.stdin.buffer.readline() or b"{}")
    out = protocol_stream()  # Ray prints to stdout now and then
    try:
        store = connect(settings)
    except Exception as error:
        out.write(encode({"op": "failed", "error": describe(error)}))
        out.flush()
        os._exit(1)
    import ray

    out.write(encode({"op": "connected", "address": ray.util.get_node_ip_address(),
                      "nodes": sum(1 for node in ray.nodes() if node["Alive"])}))
    out.flush()
    asyncio.run(serve(Bridge(store, out)))
    os._exit(0)


if __name__ == "__main__":
    main()
