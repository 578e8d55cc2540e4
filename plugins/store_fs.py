"""The filesystem store: Ollama's folder layout under OLLAMA_MODELS, read and written as Ollama does.

``blobs/sha256-<hex>`` and ``manifests/<host>/<namespace>/<model>/<tag>``. Every write goes to a
temporary file in the same folder, is fsynced, then renamed over the target, so a crash leaves
either the old file or the new one.

A blob being downloaded in ranges lives beside the blobs as Ollama keeps it:
``blobs/sha256-<hex>-partial`` (the data, space reserved up front) and one JSON record per range,
``blobs/sha256-<hex>-partial-<N>`` (``{"N", "Offset", "Size", "Completed"}``), so a pull resumes
after a restart, even one Ollama started. They go when the blob is committed (after its digest is
verified) or discarded, when no pull has touched them for ``store.partial_max_age``, or with
``corral prune``. The hub sources download into ``.downloads/`` the same way.

Leftovers (partial data, ``.tmp-*`` files, ``.tmp-create-*`` folders, ``.downloads/``) are swept at
start-up: whoever works on one holds a shared ``flock`` on it (``corral.store.using``), so the sweep, in this
process or another, removes only what nobody holds.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from corral import (
    BlobNotFound,
    BlobPart,
    DigestMismatch,
    Leftover,
    NoSpace,
    Settings,
    SettingSpec,
    StoreError,
    StoreSpec,
    hookimpl,
    parse_go_duration,
    validate_digest,
)

CHUNK = 1024 * 1024
TEMP_GRACE = 60.0
"""Seconds a temporary file nobody holds is kept after its last write (a writer that takes no lock
may be working on it)."""
_BLOB_NAME = re.compile(r"sha256-([0-9a-f]{64})")
_PARTIAL_NAME = re.compile(r"sha256-[0-9a-f]{64}-partial")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")


def _age(value: Any) -> float:
    """A Go duration (``168h``) or seconds; 0 keeps partial data however old it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        seconds = float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else parse_go_duration(text)
    if seconds < 0:
        raise ValueError("must be 0 (keep forever) or more")
    return seconds


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(key="store.partial_max_age", default=7 * 24 * 3600.0, converter=_age,
                        help="partial downloads no pull has touched for this long are removed at start-up "
                             "(168h; 0 keeps them for ever); newer ones resume whatever their age")]


@hookimpl
def register_stores(settings: Settings) -> list[StoreSpec]:
    return [
        StoreSpec(
            name="fs",
            factory=lambda settings: FsBlobStore(settings.models,
                                                 partial_max_age=settings.plugin.get("store.partial_max_age", 0.0)),
            description="Ollama's on-disk layout in OLLAMA_MODELS",
        )
    ]


def _held(path: Path) -> bool:
    """Whether some process holds a lock on ``path`` (see :func:`using`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock


def _os_error(action: str, path: Path, error: OSError) -> StoreError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"no space left on device while {action} {path}")
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
    partial_max_age: float = 0.0
    """Seconds after which partial data no pull touched is swept at start-up; 0: never."""

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
        handle = await io("creating", tmp.open, "wb")
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # an upload may stall for a while: not abandoned
        try:
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
            if not handle.closed:
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
        """Remove leftovers nobody holds: temporary files and folders, and partial data older than
        ``partial_max_age``. ``older_than`` is for unreferenced blobs (the ModelStore's business)."""

        def sweep() -> int:
            now = time.time()
            removed = 0
            for leftover in self._scan():
                limit = 0.0 if leftover.kind == "temporary" else self.partial_max_age
                if leftover.in_use or (leftover.kind != "temporary" and not limit):
                    continue
                if now - leftover.modified.timestamp() >= limit:
                    removed += self._remove(leftover)
            return removed

        return await anyio.to_thread.run_sync(sweep)

    async def leftovers(self) -> list[Leftover]:
        """Partial data and temporary files, with their size on disk and whether a process holds
        them (see ``corral prune``)."""
        return await anyio.to_thread.run_sync(self._scan)

    async def remove_leftover(self, leftover: Leftover) -> bool:
        """Remove a leftover unless a process holds it by now; whether it went."""
        return bool(await anyio.to_thread.run_sync(self._remove, leftover))

    async def free_bytes(self) -> int:
        def free() -> int:
            folder = self.root
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            return shutil.disk_usage(folder).free

        return await anyio.to_thread.run_sync(free)

    async def reserved_bytes(self, digest: str) -> int:
        """Disk space a blob's partial data already holds (a resumed pull needs that much less)."""
        path = self._blob(digest).with_name(self._blob(digest).name + "-partial")

        def allocated() -> int:
            try:
                return path.stat().st_blocks * 512
            except FileNotFoundError:
                return 0

        return await anyio.to_thread.run_sync(allocated)

    def _scan(self) -> list[Leftover]:
        found: list[Leftover] = []
        if self.blobs_dir.is_dir():
            for entry in self.blobs_dir.iterdir():
                if _PARTIAL_NAME.fullmatch(entry.name):
                    records = sorted(self.blobs_dir.glob(entry.name + "-*"))
                    found.append(self._leftover([entry, *records], "partial download"))
                elif entry.name.startswith(".tmp-"):
                    found.append(self._leftover([entry], "temporary"))
        if self.manifests_dir.is_dir():
            for entry in self.manifests_dir.glob("**/.tmp-*"):
                found.append(self._leftover([entry], "temporary"))
        if self.root.is_dir():
            for entry in self.root.glob(".tmp-*"):
                found.append(self._leftover([entry], "temporary"))
        downloads = self.root / ".downloads"
        if downloads.is_dir():  # the hub sources' downloads: one leftover per model folder (or file)
            groups: dict[Path, list[Path]] = {}
            for file in downloads.rglob("*"):
                if file.is_file():
                    relative = file.relative_to(downloads).parts
                    groups.setdefault(downloads.joinpath(*relative[:3]), []).append(file)
            for top, files in sorted(groups.items()):
                found.append(self._leftover([top], "partial download", files=files))
        return [leftover for leftover in found if leftover is not None]

    def _holders(self, paths: list[Path], files: list[Path]) -> list[Path]:
        """What a process working on a leftover locks: the leftover itself, or for a download, any
        of its files or the folders above it up to ``.downloads``."""
        downloads = self.root / ".downloads"
        if not paths[0].is_relative_to(downloads):
            return paths[:1]
        above = [parent for parent in paths[0].parents if parent.is_relative_to(downloads) and parent != downloads]
        return [*files, *([paths[0]] if paths[0].is_dir() else []), *above]

    def _leftover(self, paths: list[Path], kind: str, *, files: list[Path] | None = None) -> Leftover | None:
        files = files if files is not None else [
            found for path in paths for found in ([path] if not path.is_dir() else path.rglob("*"))]
        size, modified = 0, 0.0
        for file in files:
            try:
                stat = file.lstat()
            except FileNotFoundError:
                continue
            size += stat.st_blocks * 512
            modified = max(modified, stat.st_mtime)
        for path in paths:
            try:
                modified = max(modified, path.lstat().st_mtime)
            except FileNotFoundError:
                pass
        if not modified:
            return None
        # a temporary file this new may come from a writer that takes no lock (a manifest's, the
        # quantizer's); folders are made by corral's own code, which locks them
        fresh = kind == "temporary" and not paths[0].is_dir() and time.time() - modified < TEMP_GRACE
        held = fresh or any(_held(path) for path in self._holders(paths, files))
        return Leftover(name=str(paths[0].relative_to(self.root)), kind=kind, size=size,
                        modified=dt.datetime.fromtimestamp(modified, dt.timezone.utc), in_use=held,
                        paths=tuple(str(path.relative_to(self.root)) for path in paths))

    def _remove(self, leftover: Leftover) -> int:
        paths = [self.root / path for path in leftover.paths]
        for path in paths:  # never outside the store, whatever the record says
            if not path.resolve().is_relative_to(self.root.resolve()) or path.resolve() == self.root.resolve():
                raise StoreError(f"refusing to remove {path}: not inside the store")
        downloads = self.root / ".downloads"
        current = self._leftover(paths, leftover.kind)
        if current is None or current.in_use:
            return 0
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        parent = paths[0].parent
        while parent.is_relative_to(downloads) and parent != downloads:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return 1


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
            fcntl.flock(fd, fcntl.LOCK_SH)  # a pull works on it: the leftover sweep keeps it
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
