"""POST /api/pull and POST /api/push: the model source that owns the name (``kernel.source_for``)
streams its progress as Ollama's NDJSON, or, with ``stream: false``, only the last line."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from corral import InvalidName, InvalidRequest, parse_reference
from corral.sdk.http import Fields, kernel, progress_response, read_json

blueprint = Blueprint("transfer_api", __name__)


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
    return await progress_response(source.pull(ref, insecure=insecure), stream)


@blueprint.route("/api/push", methods=["POST"])
async def push() -> Response:
    fields = Fields(await read_json("api.PushRequest"), "PushRequest")
    name, ref = _reference(fields, "model is required")
    insecure, stream = fields.boolean("insecure"), fields.boolean("stream", True)
    source = kernel().source_for(name)
    return await progress_response(source.push(ref, insecure=insecure), stream)
