"""POST /api/pull and POST /api/push: the model source that owns the name (``kernel.source_for``)
streams its progress as Ollama's NDJSON, or, with ``stream: false``, only the last line."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from quart import Blueprint, Response, current_app

from corral import gojson
from corral.errors import CorralError, InvalidName, InvalidRequest
from corral.names import parse_reference

from .http import Fields, ndjson_stream, read_json

blueprint = Blueprint("transfer_api", __name__)


def kernel() -> Any:
    return current_app.extensions["corral.kernel"]


def progress_json(progress: Any) -> dict[str, Any]:
    """Ollama's ProgressResponse: ``digest``, ``total`` and ``completed`` are omitted when empty."""
    data: dict[str, Any] = {"status": progress.status}
    if progress.digest:
        data["digest"] = progress.digest
    if progress.total:
        data["total"] = progress.total
    if progress.completed:
        data["completed"] = progress.completed
    return data


async def _lines(progress: AsyncIterator[Any]) -> AsyncGenerator[dict[str, Any], None]:
    try:
        async for item in progress:
            yield progress_json(item)
    finally:
        await progress.aclose()  # type: ignore[attr-defined]


async def _respond(progress: AsyncIterator[Any], stream: bool) -> Response:
    if stream:
        return await ndjson_stream(_lines(progress))
    last: dict[str, Any] = {}
    try:
        async for item in progress:
            last = progress_json(item)
    except CorralError as error:
        return Response(gojson.dumps({"error": error.message}), status=error.status, content_type="application/json")
    finally:
        await progress.aclose()  # type: ignore[attr-defined]
    return Response(gojson.dumps(last), content_type="application/json")


def _reference(fields: Fields, required: str) -> Any:
    name = fields.model()
    if not name:
        raise InvalidRequest(required)
    try:
        return name, parse_reference(name)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None


@blueprint.route("/api/pull", methods=["POST"])
async def pull() -> Response:
    fields = Fields(await read_json("api.PullRequest"), "PullRequest")
    name, ref = _reference(fields, "invalid model name")
    insecure, stream = fields.boolean("insecure"), fields.boolean("stream", True)
    source = kernel().source_for(name)
    return await _respond(source.pull(ref, insecure=insecure), stream)


@blueprint.route("/api/push", methods=["POST"])
async def push() -> Response:
    fields = Fields(await read_json("api.PushRequest"), "PushRequest")
    name, ref = _reference(fields, "model is required")
    insecure, stream = fields.boolean("insecure"), fields.boolean("stream", True)
    source = kernel().source_for(name)
    return await _respond(source.push(ref, insecure=insecure), stream)
