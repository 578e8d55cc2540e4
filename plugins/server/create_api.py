"""``POST /api/create``: Ollama's current form (``model``, ``from``, ``files``, ``adapters``,
``template``, ``system``, ``license``, ``parameters``, ``messages``, ``quantize``) and the legacy
one (``name`` + ``modelfile`` text, as Ollama's tutorials send it), streamed or not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response

from corral import CreateRequest, InvalidModelFile, InvalidRequest
from corral.sdk.http import Fields, kernel, progress_response, read_json
from corral.sdk.modelfile import Instruction, blob_reference, modelfile_request, parse_modelfile

blueprint = Blueprint("create_api", __name__)
STRUCT = "CreateRequest"


def _string_map(fields: Fields, name: str) -> dict[str, str]:
    value = fields.obj(name) or {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(f"json: cannot unmarshal {type(item).__name__} into Go struct field "
                                 f"{STRUCT}.{name} of type string")
    return dict(value)


def _licenses(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidRequest("license must be a string or a list of strings")


def _legacy_locate(instruction: Instruction) -> Mapping[str, str] | None:
    """In a Modelfile sent to the server, FROM/ADAPTER name a model or a blob (``@sha256:...``);
    the server never reads paths on its own disk."""
    text = instruction.value
    blob = blob_reference(instruction)
    if blob is not None:
        return blob
    if text.startswith(("/", "./", "../", "~", ".\\")) or text.lower().endswith((".gguf", ".safetensors", ".bin")):
        raise InvalidModelFile(
            f'(line {instruction.line}): {instruction.name.upper()} "{text}": the server does not read local files; '
            f"upload the file with POST /api/blobs/sha256:<digest> and write {instruction.name.upper()} @sha256:<digest>"
            f", or use `corral create`")
    return None


def create_request(body: Mapping[str, Any]) -> CreateRequest:
    fields = Fields(body, STRUCT)
    name = fields.model()
    quantize = fields.string("quantize") or fields.string("quantization") or None
    modelfile = fields.string("modelfile")
    if modelfile and not (body.get("from") or body.get("files")):
        return modelfile_request(parse_modelfile(modelfile), model=name, quantize=quantize, locate=_legacy_locate)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise InvalidRequest(f"json: cannot unmarshal {type(messages).__name__} into Go struct field "
                             f"{STRUCT}.messages of type []api.Message")
    return CreateRequest(
        model=name,
        from_=fields.string("from") or None,
        files=_string_map(fields, "files"),
        adapters=_string_map(fields, "adapters"),
        template=fields.string("template") or None,
        system=fields.string("system") or None,
        license=_licenses(body.get("license")),
        parameters=fields.obj("parameters") or {},
        messages=tuple(messages),
        quantize=quantize,
    )


@blueprint.route("/api/create", methods=["POST"])
async def create() -> Response:
    body = await read_json(f"api.{STRUCT}")
    request = create_request(body)
    stream = Fields(body, STRUCT).boolean("stream", True)
    return await progress_response(kernel().create_model(request), stream)
