"""What the fault suites (``-m faults``) share: a server a test may kill with any signal, and a
client at another address that keeps asking for the version while a fault runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from servers import free_port

PROBE_ADDRESS = "127.0.0.2"  # another client: per-client connection caps do not lump it with the fault
SLOW_ANSWER = 1.0


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used so far (every thread, user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``corral serve`` in a process of its own, which a test may kill with any signal."""

    def __init__(self, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from corral.plugins.cli import main; main()", "serve"],
            env={**env, "OLLAMA_HOST": f"127.0.0.1:{port}"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("corral serve did not start:\n" + "".join(self.lines))
            time.sleep(0.1)

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        return 0

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        return self._status("VmHWM")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (every thread, user and system)."""
        return cpu_seconds(self.process.pid)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def serving(env: dict[str, str]) -> Iterator[Server]:
    server = Server(env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            assert server.stop() == 0, "".join(server.lines)


class _Probe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        transport = httpx.HTTPTransport(local_address=PROBE_ADDRESS)
        with httpx.Client(transport=transport, timeout=SLOW_ANSWER * 5,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    client.get(f"{self.url}/api/version").raise_for_status()
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                self.times.append(time.monotonic() - started)
                self.stop.wait(0.2)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.times) < count and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.02)

    def finish(self) -> None:
        """Stop asking (before a test kills the server on purpose); the question under way counts."""
        self.stop.set()
        self.thread.join(timeout=30)


@contextmanager
def version_answers_within_a_second(url: str) -> Iterator[_Probe]:
    """Ask GET /api/version every 0.2 s, each time over a new connection from another loopback
    address, while the block runs; fail if any answer took a second or more (or none came). At
    least one answer comes before the block and, unless the block called ``finish()``, one is
    asked during it or just after."""
    probe = _Probe(url)
    probe.thread.start()
    probe.wait_for(1)
    try:
        yield probe
    finally:
        if not probe.stop.is_set():
            probe.wait_for(len(probe.times) + 1)
        probe.finish()
    assert probe.times, "the probe did not run"
    assert not probe.failures, probe.failures
    assert max(probe.times) < SLOW_ANSWER, f"/api/version took {max(probe.times):.2f} s (of {len(probe.times)} probes)"
