"""Moving one blob to or from a registry: ranged parallel downloads into a PartialBlob, uploads.

Both block and run in a thread of their own (see source_ollama), so that many parts stream at
socket speed without an event loop hop per chunk. Progress is shared through plain counters that
the async side polls; each counter is written by one thread only.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urljoin

import attrs
import httpx

from corral import BlobPart, Layer, StoreError

from .registry import Cancelled, Registry, RegistryError, Retry

log = logging.getLogger("corral.registry")

SAVE_EVERY = 0.5
"""Seconds between two records of the parts' progress, each after flushing the data to disk (a
restart re-fetches at most this much, and the final flush before the commit has little left)."""

READ_CHUNK = 1024 * 1024
SOCKET_BUFFER = 1024 * 1024
HASH_STEP = 64 * 1024 * 1024
CHUNK_SIZE = 16 * 1024 * 1024
MAX_SLICES = 256
"""A download is cut into slices of 16 MiB (fewer and larger past 4 GiB: at most 256), each one
range request and one progress record: small enough that the finished prefix (which the hash
follows) grows steadily and that a restart loses no finished slice, large enough that a request's
round trip is a small share of it."""
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@attrs.define(eq=False)
class Transfer:
    """One blob moving; shared by every request waiting for the same digest."""

    digest: str
    total: int
    completed: int = 0
    """bytes present so far; written by one thread at a time (the download's coordinator, or the
    upload's sender)"""
    threads: int = 0
    """worker threads still running (an abandoned attempt finishes its current read first)"""
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def enter(self) -> None:
        with self._lock:
            self.threads += 1

    def leave(self) -> None:
        with self._lock:
            self.threads -= 1


def ollama_split(size: int, min_size: int, max_size: int, max_parts: int) -> list[BlobPart]:
    """Ollama's split: size/16 clamped to [100 MB, 1000 MB] (from the settings). Its number of
    parts is how many streams move one blob at a time."""
    part_size = min(max(size // max_parts, min_size), max_size) if size else 1
    return _cut(size, part_size)


def slice_size(size: int) -> int:
    return max(CHUNK_SIZE, -(-size // MAX_SLICES))


def _cut(size: int, part_size: int) -> list[BlobPart]:
    parts, offset = [], 0
    while offset < size or not parts:
        length = min(part_size, size - offset)
        parts.append(BlobPart(index=len(parts), offset=offset, size=length))
        offset += length
        if length == 0:
            break
    return parts


@attrs.define(eq=False)
class _Chunk:
    """A slice of a part fetched by one request; ``done`` is written by the worker holding it."""

    part: BlobPart
    offset: int
    size: int
    done: int = 0


def _chunks(parts: list[BlobPart], size: int) -> list[_Chunk]:
    """The missing bytes of every part, in blob order, in slices of about ``size`` (the records of
    a download Ollama started have larger parts)."""
    chunks = []
    for part in parts:
        start, end = part.offset + part.completed, part.offset + part.size
        count = max(1, -(-(end - start) // size))
        step = -(-(end - start) // count)
        for offset in range(start, end, step):
            chunks.append(_Chunk(part=part, offset=offset, size=min(step, end - offset)))
    return chunks


def download(registry: Registry, layer: Layer, partial: object, transfer: Transfer) -> None:
    """Fetch the bytes of ``layer`` that ``partial`` lacks, hashing the finished prefix as it grows.

    As many streams as Ollama would use (its split of the blob into parts) fetch slices handed
    out in blob order, rather than one stream per part: the finished prefix then grows steadily,
    the hash keeps up with it, and verification has almost nothing left to do when the last byte
    arrives. Each slice has its own progress record, so a restart loses no finished slice.
    """
    settings = registry.settings
    parts = partial.parts()  # type: ignore[attr-defined]
    if not parts:
        parts = _cut(layer.size, slice_size(layer.size))
        partial.save_parts(parts)  # type: ignore[attr-defined]
    chunks = _chunks([part for part in parts if not part.done], slice_size(layer.size))
    done_before = {part.index: part.completed for part in parts}
    transfer.completed = sum(done_before.values())
    if not chunks:
        return
    url = registry.blob_location(layer.digest)
    failed = threading.Event()
    queue = list(reversed(chunks))  # pop() hands out the lowest offset first
    queue_lock = threading.Lock()

    def stop() -> bool:
        return failed.is_set() or registry.cancel.is_set()

    def progress() -> tuple[dict[int, int], int]:
        """Each part's contiguous bytes from its start, and the blob's finished prefix."""
        contiguous = dict(done_before)
        blocked: set[int] = set()
        for chunk in chunks:
            index = chunk.part.index
            if index not in blocked:
                contiguous[index] = chunk.offset + chunk.done - chunk.part.offset
                if chunk.done < chunk.size:
                    blocked.add(index)
        prefix = 0
        for part in parts:
            prefix = part.offset + contiguous[part.index]
            if contiguous[part.index] < part.size:
                break
        return contiguous, prefix

    errors: list[BaseException] = []
    finished = threading.Semaphore(0)

    def worker() -> None:
        transfer.enter()
        try:
            while not stop():
                with queue_lock:
                    if not queue:
                        return
                    chunk = queue.pop()
                _fetch_chunk(registry, url, partial, chunk, transfer, stop)
        except BaseException as error:  # handed to the coordinating thread
            errors.append(error)
            failed.set()
        finally:
            transfer.leave()
            finished.release()

    # Plain daemon threads, not an executor: interpreter exit joins executor threads, and a part
    # stuck on a silent socket must not hold up a server's shutdown.
    streams = len(ollama_split(layer.size, settings.min_part_size, settings.max_part_size, settings.max_parts))
    workers = min(streams, len(chunks))
    for number in range(workers):
        threading.Thread(target=worker, name=f"corral-download-{number}", daemon=True).start()
    left = workers
    saved = dict(done_before)
    last_save = time.monotonic()
    hashed = prefix = 0
    recorder: threading.Thread | None = None

    def record(moved: list[BlobPart]) -> None:
        try:
            partial.save_parts(moved)  # type: ignore[attr-defined]
        except BaseException as error:
            errors.append(error)
            failed.set()

    while left:
        # no pause while the hash is behind the finished prefix: the hash is the longest job
        if finished.acquire(timeout=0.02 if hashed >= prefix else 0):
            left -= 1
        contiguous, prefix = progress()
        transfer.completed = sum(done_before.values()) + sum(chunk.done for chunk in chunks)
        if not failed.is_set():  # a bounded step per round, so progress keeps being recorded
            hashed = min(prefix, hashed + HASH_STEP)
            partial.hash_to(hashed)  # type: ignore[attr-defined]
        # Progress is recorded here rather than by the workers: one waiting on a silent socket
        # cannot, and a restart should lose at most SAVE_EVERY seconds of data. A record flushes
        # the data first, which takes a while: it runs beside the hashing, the last one in line.
        final = stop() or not left
        if time.monotonic() - last_save >= SAVE_EVERY or final:
            if recorder is not None and (final or not recorder.is_alive()):
                recorder.join()
                recorder = None
            moved = [attrs.evolve(part, completed=contiguous[part.index]) for part in parts
                     if contiguous[part.index] != saved[part.index]]
            if moved and recorder is None:
                if final:
                    partial.save_parts(moved)  # type: ignore[attr-defined]
                else:
                    recorder = threading.Thread(target=record, args=(moved,), name="corral-download-record",
                                                daemon=True)
                    recorder.start()
                saved.update({part.index: part.completed for part in moved})
            last_save = time.monotonic()
    if errors:
        raise next((error for error in errors if not isinstance(error, Cancelled)), errors[0])
    partial.hash_to(layer.size)  # type: ignore[attr-defined]


def _fetch_chunk(registry: Registry, url: str, partial: object, chunk: _Chunk, transfer: Transfer,
                 stop: object) -> None:
    end = chunk.offset + chunk.size  # exclusive
    what = f"pull blob {transfer.digest[7:19]} part {chunk.part.index}"

    def attempt() -> None:
        position = chunk.offset + chunk.done
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
            direct = response.status_code == 206 and response.headers.get("content-length") == str(end - position)
            for data in response.iter_raw():  # as the socket delivers: a drop loses nothing received
                if stop():  # type: ignore[operator]
                    raise Cancelled()
                if skip:
                    if len(data) <= skip:
                        skip -= len(data)
                        continue
                    data, skip = data[skip:], 0
                room = end - (chunk.offset + chunk.done)
                if len(data) > room:
                    data = data[:room]
                partial.write(chunk.offset + chunk.done, data)  # type: ignore[attr-defined]
                chunk.done += len(data)
                if chunk.done >= chunk.size:
                    break
                sock = _plain_socket(response) if direct else None
                if sock is not None:  # the first data emptied the HTTP parser's buffer: read on directly
                    _read_socket(registry, sock, partial, chunk, end, stop)
                    break
        except httpx.TimeoutException:
            raise Retry(f"no data for {registry.settings.stall_timeout:g}s (stalled)") from None
        finally:
            response.close()
        if chunk.done < chunk.size:
            raise Retry("the connection closed before the part was complete")

    registry.retrying(what, attempt, progress=lambda: chunk.done)


def _plain_socket(response: httpx.Response) -> socket.socket | None:
    """The TCP socket under a plain-HTTP body, which can be read directly.

    httpx parses the body in 64 KiB pieces and copies each one twice; over loopback that Python
    work, not the network, limits a download. Reading straight from the socket into a large
    reusable buffer leaves only the kernel's copy. httpx then sees an unfinished body and closes
    the connection instead of reusing it, which costs one connect per slice: cheap without TLS,
    so TLS (and compressed or chunked bodies) keep httpx's reader."""
    if response.url.scheme != "http" or "content-encoding" in response.headers:
        return None
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if type(sock) is socket.socket else None


def _read_socket(registry: Registry, sock: socket.socket, partial: object, chunk: _Chunk, end: int,
                 stop: object) -> None:
    buffer = memoryview(bytearray(SOCKET_BUFFER))
    sock.settimeout(registry.settings.stall_timeout)
    while chunk.done < chunk.size:
        if stop():  # type: ignore[operator]
            raise Cancelled()
        try:
            got = sock.recv_into(buffer[:min(SOCKET_BUFFER, end - (chunk.offset + chunk.done))])
        except TimeoutError:
            raise Retry(f"no data for {registry.settings.stall_timeout:g}s (stalled)") from None
        except OSError as error:
            raise Retry(f"the connection failed: {error}") from None
        if not got:
            return  # closed early: the caller retries from here
        partial.write(chunk.offset + chunk.done, buffer[:got])  # type: ignore[attr-defined]
        chunk.done += got


def upload(registry: Registry, layer: Layer, path: Path, transfer: Transfer) -> None:
    """Upload a blob the registry lacks: POST an upload session (a cross-repository mount when the
    layer came from another model), PATCH the bytes in parts, PUT ``?digest=`` to finish."""
    settings = registry.settings
    digest = layer.digest
    what = f"push blob {digest[7:19]}"
    transfer.completed = 0

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
                transfer.completed += len(chunk)
                yield chunk

    def attempt() -> None:
        transfer.completed = 0
        query = {}
        if layer.from_ and "/" in layer.from_:
            query = {"mount": digest, "from": layer.from_}
        start_url = registry.url("blobs/uploads/") + ("?" + urlencode(query) if query else "")
        response = registry.send("POST", start_url, what=what)
        response.close()
        if response.status_code == 201:
            transfer.completed = layer.size
            return
        location = _location(response, start_url)
        parts = ollama_split(layer.size, settings.min_part_size, settings.max_part_size, settings.max_parts)
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
