"""Creating a model (``/api/create``, ``corral create``): layers from an existing model or from
blobs already in the store, plus template, system prompt, parameters, licenses and messages.

``create_model`` streams Ollama's statuses (``parsing GGUF``, ``using existing layer sha256:...``,
``creating new layer sha256:...``, ``writing manifest``, ``success``). Every check runs before the
manifest is written, so a failed create leaves the store's models as they were; blobs it wrote
on the way are unreferenced and pruned later.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs

from . import gojson
from . import options as option_rules
from .errors import InvalidDigest, InvalidName, InvalidRequest, ModelNotFound, StoreError
from .gguf import GGUFFile, human_number, read_gguf
from .gotemplate.named import named_template
from .gotemplate.ollama import PromptTemplate
from .store import Hold, in_use
from .names import parse_reference, validate_digest
from .types import (
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TYPE_CONFIG,
    Layer,
    CreateRequest,
    Manifest,
    Progress,
)

GGUF_MAGIC = b"GGUF"
QUANTIZABLE = ("F32", "F16", "BF16")
MESSAGE_ROLES = ("system", "user", "assistant", "tool")


def check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values by name, converted to their option types; unknown names are a 400."""
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        if value is None or name in option_rules.RETIRED:
            continue
        if name not in option_rules.OPTION_TYPES:
            raise InvalidRequest(f"unknown parameter '{name}'")
        if option_rules.OPTION_TYPES[name] == option_rules.STRINGS and isinstance(value, str):
            value = [value]
        checked[name] = option_rules.convert_option(name, value)
    return checked


def check_messages(messages: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(messages, (list, tuple)):
        raise InvalidRequest("messages must be a list of {role, content} objects")
    checked = []
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("content", ""), str):
            raise InvalidRequest("messages must be a list of {role, content} objects")
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise InvalidRequest(f'message role must be one of "system", "user", "assistant" or "tool", not {role!r}')
        checked.append({"role": role, "content": message.get("content", "")})
    return tuple(checked)


def check_file_name(name: str) -> None:
    """Go's fs.ValidPath: a relative, slash-separated path without ``.``/``..`` or empty parts."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise InvalidRequest("file path must be relative")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidRequest("file path must be relative")


def _check_digest(digest: Any) -> str:
    try:
        return validate_digest(digest)
    except InvalidDigest:
        raise InvalidRequest("invalid digest format") from None


@attrs.define(eq=False)
class _Build:
    """The layers of the model being built, and the statuses to report for them."""

    hold: Hold
    """Every blob the model will name is held from collection until its manifest is written."""
    layers: list[Layer] = attrs.field(factory=list)
    statuses: list[str] = attrs.field(factory=list)
    config: dict[str, Any] = attrs.field(factory=dict)
    params: dict[str, Any] = attrs.field(factory=dict)

    def add(self, layer: Layer, status: str) -> None:
        self.hold.add(layer.digest)
        self.layers.append(layer)
        self.statuses.append(status)

    def drop(self, *media_types: str) -> None:
        keep = [(layer, status) for layer, status in zip(self.layers, self.statuses)
                if layer.media_type not in media_types]
        self.layers = [layer for layer, _ in keep]
        self.statuses = [status for _, status in keep]


async def create_model(kernel: Any, request: CreateRequest) -> AsyncIterator[Progress]:
    """Build ``request.model``, yielding Ollama's create statuses; CorralError on failure (then no
    manifest is written)."""
    store = kernel.store
    try:
        ref = parse_reference(request.model)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    if ref.digest is not None:
        raise InvalidRequest("invalid model name")
    for name, digest in {**request.files, **request.adapters}.items():
        check_file_name(name)
        _check_digest(digest)
    if len(request.adapters) > 1:
        raise InvalidRequest("only one adapter is currently supported")
    # The cheap checks come first, so that bad input fails before any conversion or quantization.
    parameters = check_parameters(request.parameters)
    messages = check_messages(request.messages)
    if request.template:
        PromptTemplate.parse(request.template)  # TemplateError (400) when it does not parse
    if request.quantize:
        kernel.quantizer_for(request.quantize)

    # blobs named in the request or reused from a model are held before they are looked at
    async with store.holding([*request.files.values(), *request.adapters.values()]) as hold:
        build = _Build(hold=hold)
        if request.from_:
            async for progress in _from_model(kernel, request.from_, build):
                yield progress
        elif request.files:
            async for progress in _from_files(kernel, request.files, build, detect_template=request.template is None):
                yield progress
        else:
            raise InvalidRequest("neither 'from' or 'files' was specified")

        for name, digest in sorted(request.adapters.items()):
            yield Progress(status="parsing GGUF")
            gguf = await _read_blob_gguf(store, digest, name)
            if gguf.metadata.get("general.type") != "adapter":
                raise InvalidRequest(f'"{name}" is not a LoRA adapter (its general.type is not "adapter")')
            build.drop(MEDIA_ADAPTER)
            build.add(Layer(media_type=MEDIA_ADAPTER, digest=digest, size=gguf.file_size, from_=name),
                      f"using existing layer {digest}")

        if request.quantize:
            async for progress in _quantize(kernel, request.quantize, build):
                yield progress

        if request.template:
            build.drop(MEDIA_TEMPLATE, MEDIA_PROMPT)
            await _add_text(store, build, request.template.encode(), MEDIA_TEMPLATE)
        if request.system:
            build.drop(MEDIA_SYSTEM)
            await _add_text(store, build, request.system.encode(), MEDIA_SYSTEM)
        for text in request.license:
            if text:
                await _add_text(store, build, text.encode(), MEDIA_LICENSE)
        params = {**build.params, **parameters}
        if params:
            build.drop(MEDIA_PARAMS)
            await _add_json(store, build, params, MEDIA_PARAMS)
        if messages:
            build.drop(MEDIA_MESSAGES)
            await _add_json(store, build, list(messages), MEDIA_MESSAGES)

        if not any(layer.media_type == MEDIA_MODEL for layer in build.layers):
            raise InvalidRequest("the model has no weights: FROM must name a model or a GGUF or safetensors file")
        config = {
            **build.config,
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in build.layers]},
        }
        config_bytes = gojson.dumps(config).encode()
        build.hold.add(_sha256(config_bytes))
        config_layer = await store.add_bytes(config_bytes, MEDIA_TYPE_CONFIG)
        for status in build.statuses:
            yield Progress(status=status)
        yield Progress(status="writing manifest")
        await store.put(ref, Manifest(config=config_layer, layers=build.layers))
    yield Progress(status="success")


# -- sources of weights --------------------------------------------------------------------------


async def _from_model(kernel: Any, name: str, build: _Build) -> AsyncIterator[Progress]:
    """Reuse the layers of model ``name``; as Ollama does, a model not in the store is pulled
    first (by the source that owns its name)."""
    if _is_digest(name):
        raise InvalidRequest(f'"{name}" is a blob digest: send it in "files" instead of "from"')
    store = kernel.store
    try:
        ref = parse_reference(name)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    try:
        info = await store.get(ref)
    except ModelNotFound:
        async for progress in kernel.source_for(name).pull(ref):
            yield progress
        info = await store.get(ref)
    build.hold.add(*info.manifest.digests)
    source = info.ref.display
    params: dict[str, Any] = {}
    for layer in info.manifest.layers:
        if layer.media_type == MEDIA_PARAMS:
            found = await store.read_json(layer.digest)
            params = found if isinstance(found, dict) else {}
        build.add(Layer(media_type=layer.media_type, digest=layer.digest, size=layer.size,
                        from_=source, name=layer.name),
                  f"using existing layer {layer.digest}")
    build.params = params
    build.config = {key: info.config[key] for key in
                    ("model_format", "model_family", "model_families", "model_type", "file_type")
                    if key in info.config}


def _is_digest(text: str) -> bool:
    try:
        validate_digest(text.removeprefix("@"))
    except InvalidDigest:
        return False
    return True


async def _from_files(kernel: Any, files: Mapping[str, str], build: _Build, *,
                      detect_template: bool) -> AsyncIterator[Progress]:
    store = kernel.store
    names = sorted(files)
    if any(name.endswith(".safetensors") for name in names):
        async for progress in _from_safetensors(kernel, files, build, detect_template=detect_template):
            yield progress
        return
    model_gguf: GGUFFile | None = None
    for name in names:
        digest = files[name]
        yield Progress(status="parsing GGUF")
        gguf = await _read_blob_gguf(store, digest, name)
        media_type = _gguf_media_type(gguf)
        if media_type == MEDIA_MODEL:
            if model_gguf is not None:
                raise InvalidRequest("more than one model GGUF file was given")
            model_gguf = gguf
        build.add(Layer(media_type=media_type, digest=digest, size=gguf.file_size, from_=name),
                  f"using existing layer {digest}")
    if model_gguf is None:
        raise InvalidRequest("no model GGUF file was given (only adapters or projectors)")
    build.config = _config_of(model_gguf)
    if detect_template:
        await _detect_template(store, model_gguf, build)


async def _from_safetensors(kernel: Any, files: Mapping[str, str], build: _Build, *,
                            detect_template: bool) -> AsyncIterator[Progress]:
    """Convert a safetensors checkpoint (its blobs linked into a work folder under their names)
    to an F16 GGUF in a worker thread, and store that as the model layer."""
    from .convert import convert_checkpoint

    store = kernel.store
    paths = {name: await _blob_file(store, digest, name) for name, digest in files.items()}
    models_folder = next(iter(paths.values())).parent.parent
    with tempfile.TemporaryDirectory(prefix=".tmp-create-", dir=models_folder) as work, in_use(Path(work)):
        folder = Path(work) / "checkpoint"
        for name, path in paths.items():
            link = folder / name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
        output = Path(work) / "model.gguf"
        yield Progress(status="converting model")
        async for progress in _in_thread(lambda report: convert_checkpoint(folder, output, progress=report)):
            yield progress
        gguf = await anyio.to_thread.run_sync(lambda: read_gguf(output))
        layer, status = await add_file(store, output, MEDIA_MODEL, build.hold)
    build.add(layer, status)
    build.config = _config_of(gguf)
    if detect_template:
        await _detect_template(store, gguf, build)


class _Abandoned(Exception):
    """Raised in a worker thread's progress callback once nobody waits for its result."""


async def _in_thread(work: Callable[[Callable[[Progress], None]], None]) -> AsyncIterator[Progress]:
    """Run ``work(report)`` in a thread, yielding what it reports. Closing the iterator early
    makes the next ``report`` raise in the thread, which stops it."""
    updates: queue.SimpleQueue[Progress | None] = queue.SimpleQueue()
    abandoned = threading.Event()
    failure: list[BaseException] = []

    def report(progress: Progress) -> None:
        if abandoned.is_set():
            raise _Abandoned()
        updates.put(progress)

    def target() -> None:
        try:
            work(report)
        except BaseException as error:  # re-raised in the event loop below
            failure.append(error)
        finally:
            updates.put(None)

    thread = threading.Thread(target=target, name="corral-create", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = updates.get_nowait()
            except queue.Empty:
                await anyio.sleep(0.05)
                continue
            if item is None:
                break
            yield item
    finally:
        abandoned.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(thread.join)
    if failure and not isinstance(failure[0], _Abandoned):
        raise failure[0]


def _gguf_media_type(gguf: GGUFFile) -> str:
    kind = gguf.metadata.get("general.type")
    if kind == "adapter":
        return MEDIA_ADAPTER
    if kind in ("projector", "mmproj") or gguf.architecture == "clip":
        return MEDIA_PROJECTOR
    return MEDIA_MODEL


def _config_of(gguf: GGUFFile) -> dict[str, Any]:
    family = gguf.architecture or ""
    return {
        "model_format": "gguf",
        "model_family": family,
        "model_families": [family],
        "model_type": human_number(gguf.parameter_count),
        "file_type": gguf.file_type,
    }


async def _detect_template(store: Any, gguf: GGUFFile, build: _Build) -> None:
    """As Ollama: a GGUF chat template that matches one of Ollama's named templates gets that
    template (and its stop parameters) as layers; otherwise the Jinja template is used as is."""
    jinja = gguf.chat_template
    named = named_template(jinja) if jinja else None
    if named is None:
        return
    data = named.template.encode()
    build.hold.add(_sha256(data))
    layer = await store.add_bytes(data, MEDIA_TEMPLATE)
    build.add(layer, f"using autodetected template {named.name}")
    if named.parameters and named.parameters.get("stop"):
        build.params = {"stop": list(named.parameters["stop"]), **build.params}


async def _blob_file(store: Any, digest: str, name: str) -> Path:
    if not await store.has_blob(digest):
        raise InvalidRequest(f'blob {digest} for "{name}" not found: upload it with POST /api/blobs/{digest} first')
    path = store.blob_path(digest)
    if path is None:
        raise StoreError("creating models needs a store on the local filesystem")
    return path


async def _read_blob_gguf(store: Any, digest: str, name: str) -> GGUFFile:
    path = await _blob_file(store, digest, name)
    with path.open("rb") as file:
        if file.read(4) != GGUF_MAGIC:
            raise InvalidRequest(f'"{name}" is not a GGUF file (supplied file was not in GGUF format)')
    return await anyio.to_thread.run_sync(lambda: read_gguf(path, display_name=name))


# -- quantization --------------------------------------------------------------------------------


async def _quantize(kernel: Any, wanted: str, build: _Build) -> AsyncIterator[Progress]:
    quantizer = kernel.quantizer_for(wanted)
    canonical = wanted.upper()
    index = next(i for i, layer in enumerate(build.layers) if layer.media_type == MEDIA_MODEL)
    source = build.layers[index]
    path = await _blob_file(kernel.store, source.digest, "model")
    gguf = await anyio.to_thread.run_sync(lambda: read_gguf(path, skip_arrays_longer_than=0))
    if gguf.file_type == canonical:
        return
    if gguf.file_type not in QUANTIZABLE:
        raise InvalidRequest(f"quantization is only supported for F16, BF16 and F32 models, "
                             f"this one is {gguf.file_type}")
    async with temporary_file(path.parent, ".gguf") as output:
        async for progress in quantizer.quantize(path, output, canonical):
            yield attrs.evolve(progress, digest=progress.digest or source.digest)
        yield Progress(status="verifying conversion")
        quantized = await anyio.to_thread.run_sync(lambda: read_gguf(output, skip_arrays_longer_than=0))
        layer, status = await add_file(kernel.store, output, MEDIA_MODEL, build.hold)
    build.hold.add(layer.digest)
    build.layers[index] = attrs.evolve(layer, from_=source.from_)
    build.statuses[index] = status
    build.config = {**build.config, **_config_of(quantized)}


class temporary_file:
    """A fresh ``.tmp-*`` file in ``folder``, locked while in use (the store sweeps those nobody
    holds, if a crash leaves one), removed on exit."""

    def __init__(self, folder: Path, suffix: str = "") -> None:
        self.path = folder / f".tmp-{uuid.uuid4().hex}{suffix}"
        self._lock = in_use(self.path)

    async def __aenter__(self) -> Path:
        self.path.touch()
        self._lock.__enter__()
        return self.path

    async def __aexit__(self, *_exc: object) -> None:
        self._lock.__exit__(None, None, None)
        self.path.unlink(missing_ok=True)


async def add_file(store: Any, path: Path, media_type: str, hold: Hold | None = None) -> tuple[Layer, str]:
    """Store a local file as a blob; the layer and its ``creating``/``using existing`` status.
    With ``hold``, the blob is held from collection before it is looked for."""

    def sha256() -> str:
        hasher = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as file:
            while chunk := await file.read(1 << 20):
                yield chunk

    digest = await anyio.to_thread.run_sync(sha256)
    if hold is not None:
        hold.add(digest)
    if await store.has_blob(digest):
        return Layer(media_type=media_type, digest=digest, size=path.stat().st_size), f"using existing layer {digest}"
    digest, size = await store.add_blob(chunks(), digest)
    return Layer(media_type=media_type, digest=digest, size=size), f"creating new layer {digest}"


async def _add_text(store: Any, build: _Build, data: bytes, media_type: str) -> None:
    layer = await _add_bytes(store, build.hold, data, media_type)
    build.add(*layer)


async def _add_json(store: Any, build: _Build, value: Any, media_type: str) -> None:
    layer = await _add_bytes(store, build.hold, gojson.dumps(value).encode(), media_type)
    build.add(*layer)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _add_bytes(store: Any, hold: Hold, data: bytes, media_type: str) -> tuple[Layer, str]:
    digest = _sha256(data)
    hold.add(digest)
    existed = await store.has_blob(digest)
    layer = await store.add_bytes(data, media_type)
    return layer, f"{'using existing' if existed else 'creating new'} layer {layer.digest}"
