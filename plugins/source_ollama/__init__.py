"""The bundled ``source_ollama`` plugin: pull from and push to an Ollama registry (registry v2).

It owns every reference no other source claims (``resolve_reference`` is trylast here). Pulls go
as Ollama's do: the manifest, then each missing layer in parallel byte ranges into resumable
partial data beside the store, every blob verified against its digest before it becomes visible,
and the manifest written last. See docs/sources.md.

httpx and the transfer code are imported when a source is built, never at plugin load.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import attrs

from corral import (
    CorralError,
    ModelRef,
    Progress,
    PullError,
    SettingSpec,
    SourceSpec,
    StoreError,
    decode_manifest,
    hookimpl,
    parse_count,
    parse_positive_duration,
)

POLL = 0.1
"""Seconds between two progress lines while a blob moves."""
HEARTBEAT = 1.0
"""A progress line at least this often even when no byte moved (a stalled link stays visible)."""


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [
        SettingSpec(key="registry.stall_timeout", default=30.0, converter=parse_positive_duration,
                    help="seconds without a byte before a download slice or upload part is retried"),
        SettingSpec(key="registry.retries", default=6, converter=parse_count(0),
                    help="retries of a failing slice or part in a row, waiting backoff * 1, 2, 4 ... seconds"),
        SettingSpec(key="registry.backoff", default=1.0, converter=parse_positive_duration,
                    help="seconds before the first retry; doubled for each retry after it"),
        SettingSpec(key="registry.min_part_size", default=100_000_000, converter=parse_count(1),
                    help="bytes per parallel stream at least (Ollama's split: 100 MB, so a 500 MB blob uses 5 streams)"),
        SettingSpec(key="registry.max_parts", default=16, converter=parse_count(1),
                    help="most parallel streams for one blob (Ollama: 16)"),
    ]


@hookimpl
def register_sources(settings: Any) -> list[SourceSpec]:
    return [SourceSpec(name="ollama", factory=lambda kernel: OllamaSource(kernel=kernel),
                       description="Ollama registries (registry.ollama.ai or any registry v2)")]


@hookimpl(trylast=True)
def resolve_reference(reference: str, settings: Any) -> str | None:
    return "ollama"


def _settings(kernel: Any) -> Any:
    from corral.sdk.outbound import Policy

    from .registry import TransferSettings

    plugin = kernel.settings.plugin
    min_part = plugin["registry.min_part_size"]
    return TransferSettings(stall_timeout=plugin["registry.stall_timeout"], retries=plugin["registry.retries"],
                            backoff=plugin["registry.backoff"], min_part_size=min_part,
                            max_part_size=max(min_part, 1_000_000_000), max_parts=plugin["registry.max_parts"],
                            policy=Policy.of(kernel))


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args, abandon_on_cancel=True)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


@attrs.define(eq=False)
class OllamaSource:
    """Pulls and pushes for one kernel. Concurrent pulls of one blob share its download."""

    kernel: Any
    name: str = "ollama"
    _transfers: dict[str, Any] = attrs.field(factory=dict)
    _locks: dict[str, anyio.Lock] = attrs.field(factory=dict)

    _clients: dict[str, Any] = attrs.field(factory=dict)
    _tokens: dict[str, str] = attrs.field(factory=dict)

    def _registry(self, ref: ModelRef, insecure: bool, cancel: threading.Event) -> Any:
        """A Registry sharing this source's HTTP connections and tokens (building an HTTPS client
        costs tens of milliseconds; a token is good for many requests)."""
        from .registry import Registry, http_client

        settings = _settings(self.kernel)
        scheme = "http" if insecure else ref.scheme
        client = self._clients.get(scheme)
        if client is None:
            client = self._clients[scheme] = http_client(settings)
        return Registry(ref, insecure=insecure, settings=settings, cancel=cancel, http=client, tokens=self._tokens)

    async def _run(self, function: Callable[[], None], transfer: Any, status: str, digest: str,
                   cancel: threading.Event) -> AsyncIterator[Progress]:
        """Run ``function`` in a thread of its own, yielding progress until it ends; its error is
        raised here. If the pull is abandoned, ``cancel`` tells the thread to stop."""
        outcome: list[BaseException | None] = []
        finished = threading.Event()

        def body() -> None:
            try:
                function()
                outcome.append(None)
            except BaseException as error:  # handed to the async side
                outcome.append(error)
            finally:
                finished.set()

        thread = threading.Thread(target=body, name=f"corral-{status}", daemon=True)
        thread.start()
        try:
            last, last_at = -1, 0.0
            while not outcome:
                now = anyio.current_time()
                completed = transfer.completed
                if completed != last or now - last_at >= HEARTBEAT:
                    yield Progress(status=status, digest=digest, total=transfer.total, completed=completed)
                    last, last_at = completed, now
                # wait in a worker thread, so the end is seen at once rather than at the next tick
                await anyio.to_thread.run_sync(finished.wait, POLL, abandon_on_cancel=True)
        finally:
            if not outcome:
                cancel.set()
        if outcome[0] is not None:
            raise outcome[0]
        yield Progress(status=status, digest=digest, total=transfer.total, completed=transfer.completed)

    # -- pull --------------------------------------------------------------------------------

    async def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        store = self.kernel.store
        cancel = threading.Event()
        # building an HTTP client (imports, TLS contexts) takes a while: not on the event loop
        registry = await anyio.to_thread.run_sync(self._registry, ref, insecure, cancel)
        partials: list[Any] = []
        try:
            yield Progress(status="pulling manifest")
            raw = await _in_thread(registry.manifest)
            try:
                manifest = decode_manifest(raw, "from the registry")
            except StoreError as error:
                raise PullError(f"pull model manifest: the registry sent an invalid manifest: "
                                f"{error.message.removeprefix('corrupt manifest from the registry: ')}") from None
            await store.check_space({layer.digest: layer.size for layer in [*manifest.layers, manifest.config]},
                                    "pull model")
            # blobs present now (shared with other models) stay until the manifest names them
            async with store.holding(manifest.digests):
                seen: set[str] = set()
                for layer in [*manifest.layers, manifest.config]:
                    if layer.digest in seen:
                        continue
                    seen.add(layer.digest)
                    async for item in self._pull_blob(registry, layer, partials, cancel):
                        yield item
                if partials:
                    yield Progress(status="verifying sha256 digest")
                    for partial in partials:
                        await anyio.to_thread.run_sync(partial.verify)
                    for partial in list(partials):
                        await anyio.to_thread.run_sync(partial.commit)
                        partials.remove(partial)
                yield Progress(status="writing manifest")
                await store.put_raw(ref, raw)
            yield Progress(status="success")
        finally:
            cancel.set()
            for partial in partials:
                partial.close()

    async def _pull_blob(self, registry: Any, layer: Any, partials: list[Any],
                         cancel: threading.Event) -> AsyncIterator[Progress]:
        from .blob_transfer import Transfer, download

        store = self.kernel.store
        status, digest = f"pulling {_short(layer.digest)}", layer.digest
        if await store.blobs.blob_size(digest) == layer.size:
            yield Progress(status=status, digest=digest, total=layer.size, completed=layer.size)
            return
        transfer = self._transfers.get(digest)
        if transfer is None or transfer.total != layer.size:
            transfer = self._transfers[digest] = Transfer(digest=digest, total=layer.size)
        lock = self._locks.setdefault(digest, anyio.Lock())
        if lock.locked():  # another request is fetching it: show its progress while waiting
            yield Progress(status=status, digest=digest, total=layer.size, completed=transfer.completed)
        async with lock:
            while transfer.threads:  # an abandoned attempt is finishing its last chunk
                yield Progress(status=status, digest=digest, total=layer.size, completed=transfer.completed)
                await anyio.sleep(POLL)
            if await store.blobs.blob_size(digest) == layer.size:
                yield Progress(status=status, digest=digest, total=layer.size, completed=layer.size)
                return
            partial = await store.open_partial(digest, layer.size)
            partials.append(partial)
            async for item in self._run(lambda: download(registry, layer, partial, transfer), transfer,
                                        status, digest, cancel):
                yield item

    # -- push --------------------------------------------------------------------------------

    async def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        from .blob_transfer import Transfer, upload

        store = self.kernel.store
        yield Progress(status="retrieving manifest")
        found = await store.find(ref)
        read = await store.blobs.read_manifest(found.parts)
        if read is None:
            raise CorralError(f"couldn't retrieve manifest for {ref.display}")
        raw = read[0]
        manifest = decode_manifest(raw, found.display)
        cancel = threading.Event()
        # building an HTTP client (imports, TLS contexts) takes a while: not on the event loop
        registry = await anyio.to_thread.run_sync(self._registry, ref, insecure, cancel)
        try:
            for layer in [*manifest.layers, manifest.config]:
                status, digest = f"pushing {_short(layer.digest)}", layer.digest
                if await _in_thread(registry.has_blob, digest):
                    yield Progress(status=status, digest=digest, total=layer.size, completed=layer.size)
                    continue
                path = store.blob_path(digest)
                if path is None:
                    raise StoreError(f"blob {digest} of {found.display} is not in the store")
                transfer = Transfer(digest=digest, total=layer.size)
                async for item in self._run(lambda: upload(registry, layer, path, transfer), transfer,
                                            status, digest, cancel):
                    yield item
            yield Progress(status="pushing manifest")
            await _in_thread(registry.put_manifest, ref.tag, raw)
            yield Progress(status="success")
        finally:
            cancel.set()
