"""The toolkit for model sources that download files from a hub or a package index (the bundled
Hugging Face, ModelScope and pip sources use it): which GGUF file a tag names, blocking downloads
run in a worker thread while their progress streams out, and turning downloaded files into a
stored model.

Every file enters the store through ``kernel.store.add_blob`` with the digest it was announced with
(when the source announces one), so a corrupt or truncated download never becomes a blob, and the
model itself is made by ``kernel.create_model``, as ``/api/create`` makes one.
"""

from __future__ import annotations

import collections
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import attrs

from corral import DEFAULT_TAG, CreateRequest, Hold, InvalidRequest, Kernel, ModelNotFound, ModelRef, Progress

DEFAULT_QUANT = "Q4_K_M"
"""The quantization Ollama's Hugging Face integration picks when the reference has no tag."""

CHUNK = 1024 * 1024
REPORT_INTERVAL = 0.1

# Files of a Hugging Face checkpoint folder that converting it needs: weights, config, tokenizer.
FOLDER_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".tiktoken")

_QUANT = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q\d+(?:_[A-Za-z0-9]+)*|TQ\d_\d|BF16|F16|FP16|F32|FP32|MXFP4(?:_MOE)?))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"-\d{5}-of-(\d{5})\.gguf$", re.IGNORECASE)


def reference_host(reference: str) -> str | None:
    """The host part of ``[scheme://]host/namespace/model[:tag]``, lower-cased, or None."""
    text = reference.strip().partition("@")[0]
    if "://" in text:
        text = text.partition("://")[2]
    pieces = text.split("/")
    return pieces[0].lower() if len(pieces) == 3 else None


def requested_tag(ref: ModelRef) -> str | None:
    """The tag the user asked for, or None for the default (Ollama stores it as ``latest``)."""
    return None if ref.tag.lower() == DEFAULT_TAG else ref.tag


# -- choosing a GGUF file ----------------------------------------------------------------------


def quant_of(path: str) -> str | None:
    """The quantization a GGUF file name announces (``Q4_K_M``, ``IQ4_XS``, ``F16``...), or None."""
    stem = PurePosixPath(path).name
    stem = _SPLIT.sub("", stem)
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def is_model_gguf(path: str) -> bool:
    """A GGUF file that holds a model (not a vision projector)."""
    name = PurePosixPath(path).name.lower()
    return name.endswith(".gguf") and "mmproj" not in name


def choose_gguf(paths: Iterable[str], tag: str | None, name: str) -> str:
    """The GGUF file a tag selects, matched case-insensitively on the quantization in its name.

    Without a tag: the Q4_K_M file when there is one, else the first in name order (as Ollama's
    Hugging Face integration does). An unknown tag is a ModelNotFound listing what there is.
    """
    candidates = sorted(path for path in paths if is_model_gguf(path))
    if tag is None:
        wanted = [path for path in candidates if (quant_of(path) or "") == DEFAULT_QUANT] or candidates[:1]
    else:
        wanted = [
            path for path in candidates
            if (quant_of(path) or "").casefold() == tag.casefold()
            or PurePosixPath(path).name.casefold() in (tag.casefold(), f"{tag}.gguf".casefold())
        ]
    if not wanted:
        available = ", ".join(sorted({quant_of(path) or PurePosixPath(path).name for path in candidates})) or "none"
        raise ModelNotFound(name, f'{name}: no GGUF file for quantization "{tag}" (available: {available})')
    chosen = wanted[0]
    split = _SPLIT.search(chosen)
    if split and int(split.group(1)) > 1:
        raise InvalidRequest(f"{name}: {chosen} is split into {int(split.group(1))} files, which is not supported")
    return chosen


def checkpoint_files(paths: Iterable[str]) -> list[str]:
    """The files of a safetensors checkpoint at the top of a repository or folder, or [].

    Weights, config and tokenizer files at the top, and the small JSON files of sub-folders (a
    sentence-transformers model keeps its pooling in ``1_Pooling/config.json``).
    """
    paths = list(paths)
    top = [path for path in paths if "/" not in path]
    if "config.json" not in top or not any(path.endswith(".safetensors") for path in top):
        return []
    return sorted(path for path in paths
                  if (path in top and path.endswith(FOLDER_SUFFIXES)) or (path not in top and path.endswith(".json")))


def repository_files(ref: ModelRef, paths: Iterable[str], name: str) -> tuple[list[str], bool]:
    """What to download from a hub repository, and whether it is a GGUF file: the GGUF the tag
    asks for (Ollama's choice without one), else a safetensors checkpoint (which has no tags)."""
    paths = list(paths)
    ggufs = [path for path in paths if is_model_gguf(path)]
    if ggufs:
        return [choose_gguf(ggufs, requested_tag(ref), name)], True
    chosen = checkpoint_files(paths)
    if not chosen:
        raise InvalidRequest(f"{name}: the repository has no GGUF file and no safetensors checkpoint")
    if requested_tag(ref) is not None:
        raise ModelNotFound(name, f'{name}: the repository has no GGUF files, so no quantization "{ref.tag}"')
    return chosen, False


def safe_repo_path(path: str) -> bool:
    """A file path from a listing or an archive that stays inside the folder it is unpacked in."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith("/") and ".." not in parts and "\\" not in path


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file (what the Hub lists for files not stored with LFS)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- blocking work in a worker thread, progress streamed out -------------------------------------


class Abandoned(Exception):
    """Raised inside a worker when the pull that started it has gone away."""


@attrs.define(eq=False)
class Reporter:
    """Handed to blocking work: ``report(progress)`` from the worker thread, throttled.

    Raises Abandoned once the pull stopped listening, so a download thread stops at its next chunk.
    """

    queue: collections.deque[Progress] = attrs.field(factory=collections.deque)
    _stopped: threading.Event = attrs.field(factory=threading.Event)
    _last: float = 0.0

    def __call__(self, progress: Progress, *, force: bool = False) -> None:
        if self._stopped.is_set():
            raise Abandoned("the pull was cancelled")
        now = time.monotonic()
        if force or now - self._last >= REPORT_INTERVAL or progress.completed == progress.total:
            self._last = now
            self.queue.append(progress)

    def stop(self) -> None:
        self._stopped.set()


@attrs.define
class Outcome:
    """Where :func:`in_thread` puts the worker's return value."""

    value: Any = None


async def in_thread(function: Callable[..., Any], *args: Any, outcome: Outcome | None = None) -> AsyncIterator[Progress]:
    """Run ``function(report, *args)`` in a worker thread, yielding what it reports.

    Its return value lands in ``outcome``; its exception is raised here. If the caller stops
    iterating, the worker is told to stop (Abandoned at its next report) and left to finish alone.
    """
    reporter = Reporter()
    done = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            value = function(reporter, *args)
            if outcome is not None:
                outcome.value = value
        except BaseException as error:  # handed to the event loop side below
            failure.append(error)
        finally:
            done.set()

    threading.Thread(target=target, name="corral-download", daemon=True).start()
    try:
        while True:
            finished = done.is_set()
            while reporter.queue:
                yield reporter.queue.popleft()
            if finished:
                break
            await anyio.sleep(REPORT_INTERVAL / 2)
    finally:
        reporter.stop()
    if failure:
        raise failure[0]


def copy_with_progress(report: Reporter, read: Callable[[int], bytes], target: Path, *, status: str,
                       total: int | None, digest: str | None = None) -> str:
    """Copy a readable stream into ``target`` (created), reporting; return the sha256 digest."""
    hasher = hashlib.sha256()
    completed = 0
    report(Progress(status=status, digest=digest, total=total, completed=0), force=True)
    with target.open("wb") as out:
        while chunk := read(CHUNK):
            out.write(chunk)
            hasher.update(chunk)
            completed += len(chunk)
            report(Progress(status=status, digest=digest, total=total, completed=completed))
    report(Progress(status=status, digest=digest, total=total or completed, completed=completed), force=True)
    return "sha256:" + hasher.hexdigest()


# -- into the store ------------------------------------------------------------------------------


async def add_file(kernel: Kernel, path: Path, expected: str | None, hold: Hold) -> str:
    """Stream a local file into the store as a blob, verified against ``expected`` when given,
    and held from collection (``ModelStore.holding``) until the pull's manifest names it."""

    async def chunks() -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as handle:
            while chunk := await handle.read(CHUNK):
                yield chunk

    if expected is not None:
        hold.add(expected)
    digest, _size = await kernel.store.add_blob(chunks(), expected)
    hold.add(digest)
    return digest


async def create_from(kernel: Kernel, name: str, files: Mapping[str, str]) -> AsyncIterator[Progress]:
    """Make the model ``name`` from blobs already in the store, as ``/api/create`` with ``files``
    (a safetensors checkpoint is converted there)."""
    async for progress in kernel.create_model(CreateRequest(model=name, files=dict(files))):
        yield progress


def downloads_dir(kernel: Kernel, *parts: str) -> Path:
    """Where a source keeps downloads in progress: beside the store, never inside a manifest."""
    folder = Path(kernel.settings.models, ".downloads", *parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
