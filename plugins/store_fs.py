"""The filesystem store: Ollama's folder layout under OLLAMA_MODELS, read and written as Ollama does.

``blobs/sha256-<hex>`` and ``manifests/<host>/<namespace>/<model>/<tag>``. Every write goes to a
temporary file in the same folder, is fsynced, then renamed over the target, so a crash leaves
either the old file or the new one. Temporary files are named ``.tmp-*`` and swept after an hour.

A blob being downloaded in ranges lives beside the blobs as Ollama keeps it:
``blobs/sha256-<hex>-partial`` (the data, space reserved up front) and one JSON record per range,
``blobs/sha256-<hex>-partial-<N>`` (``{"N", "Offset", "Size", "Completed"}``), so a pull resumes
after a restart, even one Ollama started. They are never swept: they go when the blob is
committed (after its digest is verified) or discarded.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import threading
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from corral import hookimpl
from corral.errors import BlobNotFound, DigestMismatch, StoreError
from corral.names import validate_digest
from corral.settings import Settings
from corral.types import BlobPart, StoreSpec

CHUNK = 1024 * 1024
_BLOB_NAME = re.compile(r"sha256-([0-9a-f]{64})")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")


@hookimpl
def register_stores(settings: Settings) -> list[StoreSpec]:
    return [
        StoreSpec(
            name="fs",
            factory=lambda settings: FsBlobStore(settings.models),
            description="Ollama's on-disk layout in OLLAMA_MODELS",
        )
    ]


def _os_error(action: str, path: Path, error: OSError) -> StoreError:
    if error.errno == errno.ENOSPC:
        return StoreError(f"no space left on device while {action} {path}")
    if error.errno == errno.EFBIG:
        return StoreError(f"file too large for the file system (or this process's file size limit) while {action} {path}")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"cannot write to the model store: permission denied while {action} {path}")
    return StoreError(f"model store error while {action} {path}: {error.strerror or error}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_durably(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    _fsync_dir(target.parent)


@attrs.define(eq=False)
class FsBlobStore:
    root: Path

    @property
    def location(self) -> str:
        return str(self.root)

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    def _blob(self, digest: str) -> Path:
        return self.blobs_dir / validate_digest(digest).replace(":", "-")

    def _manifest(self, parts: tuple[str, str, str, str]) -> Path:
        for part in parts:
            if not _PART.fullmatch(part):
                raise StoreError(f"refusing manifest path component {part!r}")
        return self.manifests_dir.joinpath(*parts)

    # -- blobs ------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path | None:
        path = self._blob(digest)
        return path if path.is_file() else None

    async def has_blob(self, digest: str) -> bool:
        return await anyio.to_thread.run_sync(self._blob(digest).is_file)

    async def blob_size(self, digest: str) -> int | None:
        path = self._blob(digest)
        try:
            return (await anyio.to_thread.run_sync(path.stat)).st_size
        except FileNotFoundError:
            return None

    async def read_blob(self, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        path = self._blob(digest)
        try:
            handle = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(f'blob "{validate_digest(digest)}" not found') from None
        async with handle:
            await handle.seek(offset)
            while chunk := await handle.read(CHUNK):
                yield chunk

    async def write_blob(self, chunks: AsyncIterable[bytes], expected: str | None = None) -> tuple[str, int]:
        tmp = self.blobs_dir / f".tmp-{uuid.uuid4().hex}"

        async def io(action: str, function, *args):  # type: ignore[no-untyped-def]
            try:
                return await anyio.to_thread.run_sync(function, *args)
            except OSError as error:
                raise _os_error(action, tmp, error) from None

        hasher = hashlib.sha256()
        size = 0
        await io("creating", lambda: self.blobs_dir.mkdir(parents=True, exist_ok=True))
        handle = None
        try:  # from the file's creation on: a cancelled upload (client gone, body stalled) removes it
            handle = await io("creating", tmp.open, "wb")
            buffer = bytearray()
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await io("writing", handle.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await io("writing", handle.write, bytes(buffer))
            await io("writing", self._finish, handle)
            digest = "sha256:" + hasher.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatch(f'digest mismatch, expected "{expected}", got "{digest}"')
            await io("writing", _replace_durably, tmp, self._blob(digest))
        finally:
            if handle is not None and not handle.closed:
                handle.close()
            tmp.unlink(missing_ok=True)
        return digest, size

    @staticmethod
    def _finish(handle) -> None:  # type: ignore[no-untyped-def]
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    async def delete_blob(self, digest: str) -> None:
        await anyio.to_thread.run_sync(lambda: self._blob(digest).unlink(missing_ok=True))

    async def list_blobs(self) -> dict[str, tuple[int, dt.datetime]]:
        def scan() -> dict[str, tuple[int, dt.datetime]]:
            found = {}
            if not self.blobs_dir.is_dir():
                return found
            for entry in os.scandir(self.blobs_dir):
                match = _BLOB_NAME.fullmatch(entry.name)
                if match and entry.is_file():
                    stat = entry.stat()
                    modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc)
                    found["sha256:" + match.group(1)] = (stat.st_size, modified)
            return found

        return await anyio.to_thread.run_sync(scan)

    async def open_partial(self, digest: str, size: int) -> FsPartialBlob:
        path = self._blob(digest).with_name(self._blob(digest).name + "-partial")
        try:
            return await anyio.to_thread.run_sync(FsPartialBlob.open, path, validate_digest(digest), size)
        except OSError as error:
            raise _os_error("reserving space for", path, error) from None

    # -- manifests --------------------------------------------------------------------------

    async def read_manifest(self, parts: tuple[str, str, str, str]) -> tuple[bytes, dt.datetime] | None:
        path = self._manifest(parts)

        def read() -> tuple[bytes, dt.datetime] | None:
            try:
                with path.open("rb") as handle:
                    modified = dt.datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime).astimezone()
                    return handle.read(), modified
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
            except OSError as error:
                raise _os_error("reading", path, error) from None

        return await anyio.to_thread.run_sync(read)

    async def write_manifest(self, parts: tuple[str, str, str, str], data: bytes) -> None:
        path = self._manifest(parts)

        def write() -> None:
            tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with tmp.open("wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                _replace_durably(tmp, path)
            except OSError as error:
                raise _os_error("writing", path, error) from None
            finally:
                tmp.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(write)

    async def delete_manifest(self, parts: tuple[str, str, str, str]) -> bool:
        path = self._manifest(parts)

        def delete() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as error:
                raise _os_error("deleting", path, error) from None
            parent = path.parent
            while parent != self.manifests_dir and parent.is_relative_to(self.manifests_dir):
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
            return True

        return await anyio.to_thread.run_sync(delete)

    async def list_manifests(self) -> list[tuple[str, str, str, str]]:
        def scan() -> list[tuple[str, str, str, str]]:
            found = []
            for path in self.manifests_dir.glob("*/*/*/*"):
                parts = path.relative_to(self.manifests_dir).parts
                if path.is_file() and all(_PART.fullmatch(part) for part in parts):
                    found.append((parts[0], parts[1], parts[2], parts[3]))
            return sorted(found)

        return await anyio.to_thread.run_sync(scan)

    async def cleanup(self, older_than: float) -> int:
        def sweep() -> int:
            cutoff = time.time() - older_than
            removed = 0
            for folder, pattern in ((self.blobs_dir, ".tmp-*"), (self.manifests_dir, "**/.tmp-*")):
                for path in folder.glob(pattern) if folder.is_dir() else ():
                    try:
                        if path.stat().st_mtime < cutoff:
                            path.unlink()
                            removed += 1
                    except FileNotFoundError:
                        continue
            return removed

        return await anyio.to_thread.run_sync(sweep)


HASH_CHUNK = 4 * 1024 * 1024


@attrs.define(eq=False)
class FsPartialBlob:
    """``sha256-<hex>-partial`` and its range records (see the module docstring). Thread-safe."""

    path: Path
    digest: str
    size: int
    _fd: int
    _hasher: Any = attrs.field(factory=hashlib.sha256, init=False)
    _hashed: int = attrs.field(default=0, init=False)
    _hash_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @classmethod
    def open(cls, path: Path, digest: str, size: int) -> FsPartialBlob:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size not in (0, size):  # left by a download of other data: start over
                os.ftruncate(fd, 0)
                for record in path.parent.glob(path.name + "-*"):
                    record.unlink(missing_ok=True)
            try:
                if size:
                    os.posix_fallocate(fd, 0, size)  # a full disk fails now, not halfway
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return cls(path=path, digest=digest, size=size, fd=fd)

    def _record(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}-{index}")

    def _io(self, action: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except OSError as error:
            raise _os_error(action, self.path, error) from None

    def parts(self) -> list[BlobPart]:
        found = []
        for record in self.path.parent.glob(self.path.name + "-*"):
            try:
                data = json.loads(record.read_bytes())
                found.append(BlobPart(index=int(data["N"]), offset=int(data["Offset"]), size=int(data["Size"]),
                                      completed=int(data["Completed"])))
            except (OSError, ValueError, KeyError, TypeError):
                return []  # unreadable records: the data cannot be trusted, start over
        found.sort(key=lambda part: part.offset)
        expected = 0
        for part in found:  # the ranges must tile the blob exactly
            if part.offset != expected or part.size <= 0 or not 0 <= part.completed <= part.size:
                return []
            expected += part.size
        return found if expected == self.size else []

    def save_parts(self, parts: list[BlobPart]) -> None:
        def write() -> None:
            os.fdatasync(self._fd)
            for part in parts:
                record = self._record(part.index)
                tmp = record.with_name(f".tmp-{uuid.uuid4().hex}")
                try:
                    tmp.write_text(json.dumps({"N": part.index, "Offset": part.offset, "Size": part.size,
                                               "Completed": part.completed}))
                    os.replace(tmp, record)
                finally:
                    tmp.unlink(missing_ok=True)

        self._io("recording progress of", write)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self._io("writing", os.pwrite, self._fd, view, offset)
            view = view[written:]
            offset += written

    def hash_to(self, end: int) -> None:
        with self._hash_lock:
            end = min(end, self.size)
            while self._hashed < end:
                chunk = self._io("reading", os.pread, self._fd, min(HASH_CHUNK, end - self._hashed), self._hashed)
                if not chunk:
                    raise StoreError(f"model store error while reading {self.path}: unexpected end of file")
                self._hasher.update(chunk)
                self._hashed += len(chunk)

    def verify(self) -> None:
        self.hash_to(self.size)
        got = "sha256:" + self._hasher.hexdigest()
        if got != self.digest:
            self.discard()
            raise DigestMismatch(f"digest mismatch, file must be downloaded again: want {self.digest}, got {got}")

    def commit(self) -> None:
        def commit() -> None:
            os.fsync(self._fd)
            target = self.path.with_name(self.path.name.removesuffix("-partial"))
            try:
                _replace_durably(self.path, target)
            except FileNotFoundError:
                if not target.is_file():  # else a concurrent pull of the same blob committed it
                    raise
            for record in self.path.parent.glob(self.path.name + "-*"):
                record.unlink(missing_ok=True)

        self._io("storing", commit)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        for record in self.path.parent.glob(self.path.name + "-*"):
            record.unlink(missing_ok=True)
