"""The Ray actors: a runner per loaded model, and the reader of the serving node's store.

Imported only in Ray processes (the bridge and the actors' workers), never by ``corral serve``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import ray

from corral.sdk.runner import run

CHUNK = 8 * 1024 * 1024
IN_FLIGHT = 4
"""Chunks of a blob on their way to a node at once: a copy holds at most this many in memory."""
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@ray.remote(num_cpus=0, max_concurrency=8)
class StoreReader:
    """Serves the blobs the bridge allowed, by digest, in chunks, from the serving node's store."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def allow(self, files: dict[str, str]) -> None:
        self.paths.update(files)

    def read(self, digest: str, offset: int, length: int) -> bytes:
        path = self.paths.get(digest)
        if path is None:
            raise LookupError(f"blob {digest} is not being shipped")
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(min(length, CHUNK))


class Output:
    """Collects an engine round's messages; flush hands them to the replies stream as one batch."""

    def __init__(self, outbox: queue.Queue[list[dict[str, Any]] | None]) -> None:
        self.outbox = outbox
        self.batch: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.batch.append(message)

    def flush(self) -> None:
        if self.batch:
            self.outbox.put(self.batch)
            self.batch = []


@ray.remote(max_restarts=0, max_concurrency=4)
class RunnerActor:
    """A runner (corral.sdk.runner.run) on its own thread, fed by :meth:`put`, read by :meth:`replies`.

    Methods run on Ray's threads; the engine only ever on the runner thread.
    """

    def __init__(self) -> None:
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.outbox: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self.next_sequence = 0
        self.early: dict[int, dict[str, Any] | None] = {}
        self.order = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="corral-runner", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            run(self.inbox, Output(self.outbox))
        finally:
            self.outbox.put(None)

    def where(self) -> dict[str, str]:
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "address": ray.util.get_node_ip_address()}

    def put(self, sequence: int, message: dict[str, Any] | None) -> None:
        """Deliver messages in the bridge's order: Ray may run two calls of a threaded actor out
        of order."""
        with self.order:
            self.early[sequence] = message
            while self.next_sequence in self.early:
                self.inbox.put(self.early.pop(self.next_sequence))
                self.next_sequence += 1

    def replies(self) -> Any:
        while True:
            batch = self.outbox.get()
            if batch is None:
                return
            yield batch

    def prepare(self, files: list[dict[str, Any]], store: Any, cache: str) -> dict[str, str]:
        """A local path for each file: the same path when this node sees it, else the copy in
        ``cache`` (fetched from ``store`` by digest, verified, kept for the next load)."""
        found = {}
        folder = Path(cache).expanduser()
        for item in files:
            path, digest, size = item["path"], item["digest"], item["size"]
            if _has(Path(path), size):
                found[path] = path
                continue
            if digest is None:
                raise FileNotFoundError(f"{path} is not on this node and has no digest to fetch it by")
            copy = folder / digest.replace(":", "-")
            if not _has(copy, size):
                fetch(store, digest, size, copy)
            found[path] = str(copy)
        return found


def _has(path: Path, size: int) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False


def fetch(store: Any, digest: str, size: int, target: Path) -> None:
    """Copy a blob from the serving node in chunks, hashing as it lands; keep it only if it matches."""
    if not DIGEST.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    hasher = hashlib.sha256()
    waiting: deque[Any] = deque()
    offsets = iter(range(0, size, CHUNK))
    try:
        with open(partial, "wb") as handle:
            for offset in offsets:
                waiting.append(store.read.remote(digest, offset, CHUNK))
                if len(waiting) >= IN_FLIGHT:
                    break
            while waiting:
                data = ray.get(waiting.popleft())
                handle.write(data)
                hasher.update(data)
                del data
                offset = next(offsets, None)
                if offset is not None:
                    waiting.append(store.read.remote(digest, offset, CHUNK))
            handle.flush()
            os.fsync(handle.fileno())
        if partial.stat().st_size != size:
            raise OSError(f"blob {digest}: got {partial.stat().st_size} of {size} bytes")
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise OSError(f"blob {digest}: the copy does not match its digest")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
