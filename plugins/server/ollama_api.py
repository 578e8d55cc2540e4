"""Ollama's management endpoints: /, /api/version, /api/tags, /api/show, /api/copy,
/api/delete and /api/blobs. Handlers are thin: parse, call the kernel, serialize."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from corral import InvalidName, InvalidRequest, ModelNotFound, parse_reference, validate_digest
from corral.sdk.http import INFERENCE, OPEN, Fields, access, empty_response, error_response, json_response, kernel, read_json, rfc3339

from .show import read_model_gguf, show_response

# The Ollama API version clients compare against (VS Code needs 0.6.4, webui-lite 0.1.16).
API_VERSION = "0.13.0"

blueprint = Blueprint("ollama_api", __name__)


@blueprint.route("/", methods=["GET", "HEAD"])
@access(OPEN)
async def root() -> Response:
    return Response("Ollama is running", content_type="text/plain; charset=utf-8")


@blueprint.route("/api/version", methods=["GET", "HEAD"])
@access(INFERENCE)
async def version() -> Response:
    return json_response({"version": API_VERSION})


def list_entry(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "model": info.name,
        "modified_at": rfc3339(info.modified_at),
        "size": info.size,
        "digest": info.digest,
        "details": info.details(),
    }


@blueprint.route("/api/tags", methods=["GET", "HEAD"])
@access(INFERENCE)
async def tags() -> Response:
    models = await kernel().store.list()
    return json_response({"models": [list_entry(info) for info in models]})


@blueprint.route("/api/show", methods=["POST"])
@access(INFERENCE)
async def show() -> Response:
    fields = Fields(await read_json("api.ShowRequest"), "ShowRequest")
    name = fields.model()
    if not name:
        raise InvalidRequest("model is required")
    try:
        ref = parse_reference(name)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    store = kernel().store
    try:
        info = await store.get(ref)
    except ModelNotFound:
        raise ModelNotFound(name, f"model '{ref.display}' not found") from None
    verbose = fields.boolean("verbose")
    parts = await store.parts(info)
    gguf = await read_model_gguf(parts, keep_arrays=verbose)
    capabilities = await kernel().inference.capabilities(info.name)
    body = show_response(info, parts, gguf, capabilities=capabilities, verbose=verbose,
                         system=fields.string("system") or None, options=fields.obj("options"))
    return json_response(body)


@blueprint.route("/api/copy", methods=["POST"])
async def copy() -> Response:
    fields = Fields(await read_json("api.CopyRequest"), "CopyRequest")
    source, destination = fields.string("source"), fields.string("destination")
    for label, value in (("source", source), ("destination", destination)):
        try:
            parse_reference(value)
        except InvalidName:
            raise InvalidRequest(f'{label} "{value}" is invalid') from None
    try:
        await kernel().store.copy(source, destination)
    except ModelNotFound:
        raise ModelNotFound(source, f'model "{source}" not found') from None
    return empty_response(200)


@blueprint.route("/api/delete", methods=["DELETE"])
async def delete() -> Response:
    fields = Fields(await read_json("api.DeleteRequest"), "DeleteRequest")
    name = fields.model()
    try:
        parse_reference(name)  # an empty name too: Ollama 0.13 answers `name "" is invalid`
    except InvalidName:
        raise InvalidRequest(f'name "{name}" is invalid') from None
    try:
        await kernel().store.delete(name)
    except ModelNotFound:
        raise ModelNotFound(name, f"model '{name}' not found") from None
    return empty_response(200)


@blueprint.route("/api/blobs/<digest>", methods=["HEAD"])
async def head_blob(digest: str) -> Response:
    digest = validate_digest(digest)
    if await kernel().store.has_blob(digest):
        return empty_response(200)
    return error_response(f'blob "{digest}" not found', 404)


@blueprint.route("/api/blobs/<digest>", methods=["POST"])
async def upload_blob(digest: str) -> Response:
    digest = validate_digest(digest)
    store = kernel().store
    if await store.has_blob(digest):
        return empty_response(200)
    await store.add_blob(request.body, digest)
    return empty_response(201)
