"""Creating a model (``/api/create``, ``corral create``): layers from an existing model or from
blobs already in the store, plus template, system prompt, parameters, licenses and messages.

``create_model`` streams Ollama's statuses (``parsing GGUF``, ``using existing layer sha256:...``,
``creating new layer sha256:...``, ``writing manifest``, ``success``). Every check runs before the
manifest is written, so a failed create leaves the store's models as they were; blobs it wrote
on the way are unreferenced and pruned later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .. import gojson
from ..errors import InvalidName, InvalidRequest
from ..gotemplate.ollama import PromptTemplate
from ..names import parse_reference
from ..template_limits import Budget, TemplateLimits, run_template
from ..types import (
    MEDIA_ADAPTER,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROMPT,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    MEDIA_TYPE_CONFIG,
    CreateRequest,
    Layer,
    Manifest,
    Progress,
)
from .assembly import Build, add_json, add_text, from_model, sha256_of
from .conversion import from_files, read_blob_gguf
from .quantization import quantize
from .validation import check_digest, check_file_name, check_messages, check_parameters

__all__ = ["CreateRequest", "create_model"]


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
        check_digest(digest)
    if len(request.adapters) > 1:
        raise InvalidRequest("only one adapter is currently supported")
    # The cheap checks come first, so that bad input fails before any conversion or quantization.
    parameters = check_parameters(request.parameters)
    messages = check_messages(request.messages)
    if request.template:  # TemplateError (400) when it does not parse
        budget = Budget(TemplateLimits.from_settings(kernel.settings))
        await run_template(budget, PromptTemplate.parse, request.template, budget)
    if request.quantize:
        kernel.quantizer_for(request.quantize)

    # blobs named in the request or reused from a model are held before they are looked at
    async with store.holding([*request.files.values(), *request.adapters.values()]) as hold:
        build = Build(hold=hold)
        if request.from_:
            async for progress in from_model(kernel, request.from_, build):
                yield progress
        elif request.files:
            async for progress in from_files(kernel, request.files, build, detect_template=request.template is None):
                yield progress
        else:
            raise InvalidRequest("neither 'from' or 'files' was specified")

        for name, digest in sorted(request.adapters.items()):
            yield Progress(status="parsing GGUF")
            gguf = await read_blob_gguf(store, digest, name)
            if gguf.metadata.get("general.type") != "adapter":
                raise InvalidRequest(f'"{name}" is not a LoRA adapter (its general.type is not "adapter")')
            build.drop(MEDIA_ADAPTER)
            build.add(Layer(media_type=MEDIA_ADAPTER, digest=digest, size=gguf.file_size, from_=name),
                      f"using existing layer {digest}")

        if request.quantize:
            async for progress in quantize(kernel, request.quantize, build):
                yield progress

        if request.template:
            build.drop(MEDIA_TEMPLATE, MEDIA_PROMPT)
            await add_text(store, build, request.template.encode(), MEDIA_TEMPLATE)
        if request.system:
            build.drop(MEDIA_SYSTEM)
            await add_text(store, build, request.system.encode(), MEDIA_SYSTEM)
        for text in request.license:
            if text:
                await add_text(store, build, text.encode(), MEDIA_LICENSE)
        params = {**build.params, **parameters}
        if params:
            build.drop(MEDIA_PARAMS)
            await add_json(store, build, params, MEDIA_PARAMS)
        if messages:
            build.drop(MEDIA_MESSAGES)
            await add_json(store, build, list(messages), MEDIA_MESSAGES)

        if not any(layer.media_type == MEDIA_MODEL for layer in build.layers):
            raise InvalidRequest("the model has no weights: FROM must name a model or a GGUF or safetensors file")
        config = {
            **build.config,
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in build.layers]},
        }
        config_bytes = gojson.dumps(config).encode()
        build.hold.add(sha256_of(config_bytes))
        config_layer = await store.add_bytes(config_bytes, MEDIA_TYPE_CONFIG)
        for status in build.statuses:
            yield Progress(status=status)
        yield Progress(status="writing manifest")
        await store.put(ref, Manifest(config=config_layer, layers=build.layers))
    yield Progress(status="success")
