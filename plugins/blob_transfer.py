"""Moving one blob to or from a registry: ranged parallel downloads into a PartialBlob, uploads.

Both block and run in a thread of their own (see source_ollama), so that many parts stream at
socket speed without an event loop hop per chunk. Progress is shared through plain counters that
the async side polls; each counter is written by one thread only.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urljoin

import attrs
import httpx

from corral.errors import StoreError
from corral.types import BlobPart, Layer

from .ollama_registry import Cancelled, Registry, RegistryError, Retry

log = logging.getLogger("corral.registry")

SAVE_EVERY = 0.5
"""Seconds between two records of the parts' progress, each after flushing the data to disk (a
restart re-fetches at most this much, and the final flush before the commit has little left)."""

READ_CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@attrs.define(eq=False)
class Transfer:
    """One blob moving; shared by every request waiting for the same digest."""

    digest: str
    total: int
    progress: dict[int, int] = attrs.field(factory=dict)
    """part index -> bytes done; each entry written by its part's thread only"""
    threads: int = 0
    """worker threads still running (an abandoned attempt finishes its current chunk first)"""
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    @property
    def completed(self) -> int:
        return sum(list(self.progress.values()))

    def enter(self) -> None:
        with self._lock:
            self.threads += 1

    def leave(self) -> None:
        with self._lock:
            self.threads -= 1


def plan_parts(size: int, min_size: int, max_size: int, max_parts: int) -> list[BlobPart]:
    """Ollama's split: size/16 clamped to [100 MB, 1000 MB] (from the settings)."""
    part_size = min(max(size // max_parts, min_size), max_size) if size else 1
    parts, offset = [], 0
    while offset < size or not parts:
        length = min(part_size, size - offset)
        parts.append(BlobPart(index=len(parts), offset=offset, size=length))
        offset += length
        if length == 0:
            break
    return parts


def download(registry: Registry, layer: Layer, partial: object, transfer: Transfer) -> None:
    """Fetch the ranges of ``layer`` that ``partial`` lacks, hashing the finished prefix as it grows."""
    settings = registry.settings
    parts = partial.parts()  # type: ignore[attr-defined]
    if not parts:
        parts = plan_parts(layer.size, settings.min_part_size, settings.max_part_size, settings.max_parts)
        partial.save_parts(parts)  # type: ignore[attr-defined]
    transfer.progress = {part.index: part.completed for part in parts}
    missing = [part for part in parts if not part.done]
    if not missing:
        return
    url = registry.blob_location(layer.digest)
    failed = threading.Event()

    def stop() -> bool:
        return failed.is_set() or registry.cancel.is_set()

    def prefix() -> int:
        end = 0
        for part in parts:
            done = transfer.progress[part.index]
            end = part.offset + done
            if done < part.size:
                break
        return end

    # Plain daemon threads, not an executor: interpreter exit joins executor threads, and a part
    # stuck on a silent socket must not hold up a server's shutdown.
    errors: list[BaseException] = []
    finished = threading.Semaphore(0)

    def run(part: BlobPart) -> None:
        try:
            _fetch_part(registry, url, partial, part, transfer, stop)
        except BaseException as error:  # handed to the coordinating thread
            errors.append(error)
            failed.set()
        finally:
            finished.release()

    for part in missing:
        threading.Thread(target=run, args=(part,), name=f"corral-part-{part.index}", daemon=True).start()
    left = len(missing)
    saved = dict(transfer.progress)
    last_save = time.monotonic()
    while left:
        if finished.acquire(timeout=0.05):
            left -= 1
        if not failed.is_set():
            partial.hash_to(prefix())  # type: ignore[attr-defined]
        # Record progress here rather than in the part threads: a part waiting on a silent
        # socket cannot, and a restart should lose at most SAVE_EVERY seconds of data.
        if time.monotonic() - last_save >= SAVE_EVERY or registry.cancel.is_set():
            moved = [attrs.evolve(part, completed=transfer.progress[part.index]) for part in missing
                     if transfer.progress[part.index] != saved[part.index]]
            if moved:
                partial.save_parts(moved)  # type: ignore[attr-defined]  # also flushes the data written so far
                saved.update({part.index: part.completed for part in moved})
            last_save = time.monotonic()
    if errors:
        first = next((error for error in errors if not isinstance(error, Cancelled)), errors[0])
        raise first
    partial.hash_to(layer.size)  # type: ignore[attr-defined]


def _fetch_part(registry: Registry, url: str, partial: object, part: BlobPart, transfer: Transfer,
                stop: object) -> None:
    transfer.enter()
    try:
        _fetch_part_attempts(registry, url, partial, part, transfer, stop)
    finally:
        transfer.leave()


def _fetch_part_attempts(registry: Registry, url: str, partial: object, part: BlobPart, transfer: Transfer,
                         stop: object) -> None:
    completed = part.completed
    end = part.offset + part.size  # exclusive
    what = f"pull blob {transfer.digest[7:19]} part {part.index}"

    def save() -> None:
        partial.save_parts([attrs.evolve(part, completed=completed)])  # type: ignore[attr-defined]

    def attempt() -> None:
        nonlocal completed
        position = part.offset + completed
        if position >= end:
            return
        headers = {"Range": f"bytes={position}-{end - 1}", "Accept-Encoding": "identity"}
        response = registry.send("GET", url, headers=headers, stream=True, what=what)
        try:
            skip = 0
            if response.status_code == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
                if match is None or int(match.group(1)) != position:
                    raise RegistryError(f"{what}: the registry answered range {position}- with "
                                        f"{response.headers.get('content-range')!r}")
                if match.group(3) != "*" and int(match.group(3)) != transfer.total:
                    raise RegistryError(f"{what}: the registry says the blob has {match.group(3)} bytes, "
                                        f"the manifest {transfer.total}", 400)
            elif response.status_code == 200:
                skip = position  # a server that ignores Range sends the whole blob
            else:
                raise RegistryError(f"{what}: unexpected answer {response.status_code} to a range request")
            for chunk in response.iter_raw():  # as the socket delivers: a drop loses nothing received
                if stop():  # type: ignore[operator]
                    raise Cancelled()
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                room = end - (part.offset + completed)
                if len(chunk) > room:
                    chunk = chunk[:room]
                partial.write(part.offset + completed, chunk)  # type: ignore[attr-defined]
                completed += len(chunk)
                transfer.progress[part.index] = completed
                if part.offset + completed >= end:
                    break
        except httpx.TimeoutException:
            raise Retry(f"no data for {registry.settings.stall_timeout:g}s (stalled)") from None
        finally:
            response.close()
            save()
        if part.offset + completed < end:
            raise Retry("the connection closed before the part was complete")

    registry.retrying(what, attempt, progress=lambda: completed)


def upload(registry: Registry, layer: Layer, path: Path, transfer: Transfer) -> None:
    """Upload a blob the registry lacks: POST an upload session (a cross-repository mount when the
    layer came from another model), PATCH the bytes in parts, PUT ``?digest=`` to finish."""
    settings = registry.settings
    digest = layer.digest
    what = f"push blob {digest[7:19]}"
    transfer.progress = {0: 0}

    def body(start: int, length: int) -> Iterator[bytes]:
        with path.open("rb") as handle:
            handle.seek(start)
            left = length
            while left > 0:
                if registry.cancel.is_set():
                    raise Cancelled()
                chunk = handle.read(min(READ_CHUNK, left))
                if not chunk:
                    raise StoreError(f"blob {digest} is shorter than its manifest says")
                left -= len(chunk)
                transfer.progress[0] += len(chunk)
                yield chunk

    def attempt() -> None:
        transfer.progress[0] = 0
        query = {}
        if layer.from_ and "/" in layer.from_:
            query = {"mount": digest, "from": layer.from_}
        start_url = registry.url("blobs/uploads/") + ("?" + urlencode(query) if query else "")
        response = registry.send("POST", start_url, what=what)
        response.close()
        if response.status_code == 201:
            transfer.progress[0] = layer.size
            return
        location = _location(response, start_url)
        parts = plan_parts(layer.size, settings.min_part_size, settings.max_part_size, settings.max_parts)
        for part in parts:
            if part.size == 0:
                continue
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(part.size),
                       "Content-Range": f"{part.offset}-{part.offset + part.size - 1}"}
            response = registry.send("PATCH", location, headers=headers,
                                     content=lambda part=part: body(part.offset, part.size), what=what)
            response.close()
            location = _location(response, location)
        separator = "&" if "?" in location else "?"
        registry.send("PUT", location + separator + urlencode({"digest": digest}),
                      headers={"Content-Length": "0"}, what=what).close()

    transfer.enter()
    try:
        registry.retrying(what, attempt)
    finally:
        transfer.leave()


def _location(response: httpx.Response, current: str) -> str:
    location = response.headers.get("docker-upload-location") or response.headers.get("location")
    if not location:
        raise RegistryError(f"the registry answered {response.status_code} without an upload location")
    return urljoin(current, location)
