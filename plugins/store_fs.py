"""The filesystem store: Ollama's folder layout under OLLAMA_MODELS, read and written as Ollama does.

``blobs/sha256-<hex>`` and ``manifests/<host>/<namespace>/<model>/<tag>``. Every write goes to a
temporary file in the same folder, is fsynced, then renamed over the target, so a crash leaves
either the old file or the new one. Temporary files are named ``.tmp-*`` and swept after an hour.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
import attrs

from corral import hookimpl
from corral.errors import BlobNotFound, DigestMismatch, StoreError
from corral.names import validate_digest
from corral.settings import Settings
from corral.types import StoreSpec

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
        handle = await io("creating", tmp.open, "wb")
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
