"""A Ray cluster on loopback for tests: a head and worker nodes, each a process (ray_node.py).

A node can be started with folders hidden from it (an empty tmpfs mounted over each, in a mount
namespace of its own), to stand for a machine that does not share the server's model store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from servers import free_port

HERE = Path(__file__).resolve().parent
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""Every Ray process on 127.0.0.1, and no usage report sent anywhere."""


@attrs.define(eq=False)
class RayNode:
    process: subprocess.Popen[str]
    node_id: str

    def kill(self) -> None:
        """The machine is gone: its node and every process on it end at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # stray workers of the node
        except ProcessLookupError:
            pass


@attrs.define(eq=False)
class LoopbackCluster:
    temp: Path
    env: dict[str, str]
    port: int = 0
    nodes: list[RayNode] = attrs.field(factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, params: dict, hide: tuple[Path, ...] = ()) -> RayNode:
        command = [sys.executable, str(HERE / "ray_node.py"), json.dumps({"temp_dir": str(self.temp), **params})]
        if hide:
            mounts = " && ".join(f"mount -t tmpfs tmpfs '{folder}'" for folder in hide)
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f'{mounts} && exec "$@"', "sh", *command]
        process = subprocess.Popen(command, env={**self.env, **LOOPBACK_ENV}, stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"a Ray node did not start (exit status {process.wait()})")
        node = RayNode(process=process, node_id=json.loads(line)["node_id"])
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int = 0) -> RayNode:
        self.port = free_port()
        return self.start({"head": True, "num_cpus": num_cpus, "gcs_server_port": self.port})

    def add_node(self, num_cpus: int = 1, resources: dict[str, float] | None = None,
                 hide: tuple[Path, ...] = ()) -> RayNode:
        return self.start({"num_cpus": num_cpus, "resources": resources or {}, "gcs_address": self.address},
                          hide)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.nodes.clear()


@contextmanager
def loopback_cluster(env: dict[str, str]) -> Iterator[LoopbackCluster]:
    """A cluster whose session files live in a short temporary folder (Ray's socket paths must be
    short), stopped and removed on exit."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    cluster = LoopbackCluster(temp=temp, env=env)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
