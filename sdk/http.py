"""The toolkit for HTTP frontends (Quart blueprints from ``register_blueprints``).

Ollama's exact shapes: Go-style JSON, Go's unmarshal errors for wrong field types, RFC 3339
timestamps, NDJSON streams that turn a late error into a last ``{"error": ...}`` line; OpenAI's
server-sent events and error objects; the kernel a request is served by (``kernel()``); and
``Bind`` records for the server's ``register_binds`` hook. Streams made here are ended cleanly by
the server's shutdown.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import anyio
import attrs
from quart import Response, current_app, request

from corral import gojson
from corral.errors import CorralError, InvalidName, InvalidRequest, ModelNotFound
from corral.inference import check_think, parse_keep_alive_value
from corral.interfaces import Kernel
from corral.names import parse_reference
from corral.types import Progress

__all__ = [
    "ACCESS_LEVELS", "FULL", "INFERENCE", "OPEN", "access", "access_of",
    "JSON_TYPE", "KERNEL_KEY", "NDJSON_TYPE", "SSE_TYPE", "STREAMS_KEY", "Bind", "Fields", "OpenStreams", "bind_port",
    "check_think", "checked_model_name", "counted_stream", "embedding_inputs", "empty_response", "error_response",
    "go_json", "go_json_string", "json_response", "kernel", "large_json_response", "ndjson_lines", "ndjson_stream",
    "now_utc",
    "openai_error", "openai_json_response", "parse_keep_alive_value", "progress_json", "progress_response",
    "read_json", "rfc3339", "sse_stream",
]

log = logging.getLogger("corral.server")

JSON_TYPE = "application/json; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"
SSE_TYPE = "text/event-stream"
OPENAI_JSON_TYPE = "application/json"

KERNEL_KEY = "corral.kernel"
"""``app.extensions[KERNEL_KEY]`` is the kernel the app serves."""
STREAMS_KEY = "corral.streams"
"""``app.extensions[STREAMS_KEY]`` is the app's OpenStreams."""

go_json = gojson.dumps
"""JSON text as Go's encoding/json writes it (what Ollama's answers look like, byte for byte)."""
go_json_string = gojson.string
"""One string as go_json writes it, for a line pre-encoded around it."""


def kernel() -> Kernel:
    """The kernel serving the current request."""
    return current_app.extensions[KERNEL_KEY]

_JSON_KIND = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object",
              type(None): "null"}


@attrs.frozen
class Bind:
    """An address for ``corral serve`` to listen on besides OLLAMA_HOST, from ``register_binds``.

    ``address`` is a Hypercorn bind, ``host:port`` (``[::1]:9090`` for IPv6). With
    ``requires_key=False``, requests arriving on that port skip the API-key check: the plugin
    that declares such a bind answers only safe paths there (``/metrics`` on ``metrics.port``).
    """

    address: str
    requires_key: bool = True

    def __attrs_post_init__(self) -> None:
        if bind_port(self.address) == 0 and not self.requires_key:
            raise ValueError(f"bind {self.address!r}: a bind without the API key needs a port of its own, not 0")


def bind_port(address: str) -> int:
    """The port of a ``host:port`` bind; ValueError for anything else."""
    _host, colon, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bind {address!r}: expected host:port with a port up to 65535")
    return int(port)


OPEN = "open"
"""Access level of a view anyone may call, with no key (``GET /``, the web UI's files)."""
INFERENCE = "inference"
"""Access level of a view an inference key may call: running models, listing and showing them."""
FULL = "full"
"""Access level of a view only a full key may call: anything that changes the store. The default."""
ACCESS_LEVELS = (OPEN, INFERENCE, FULL)

View = TypeVar("View", bound=Callable[..., Any])
T = TypeVar("T")


def access(level: str) -> Callable[[View], View]:
    """Declare which API keys may call a view when the server has keys (``server.api_keys``).

    ``@access(INFERENCE)`` lets inference keys in as well as full ones; ``@access(OPEN)`` needs
    no key at all. A view without it needs a full key. Put it under ``@blueprint.route``.
    """
    if level not in ACCESS_LEVELS:
        raise ValueError(f"access level {level!r}: expected one of {', '.join(ACCESS_LEVELS)}")

    def declare(view: View) -> View:
        view.corral_access = level  # type: ignore[attr-defined]
        return view

    return declare


def access_of(view: Callable[..., Any]) -> str:
    """The access level a view declared with :func:`access`; FULL when it declared none."""
    return getattr(view, "corral_access", FULL)


class OpenStreams:
    """The streams in flight, so that a shutdown can end each one with an error line, wait for
    them, and only then close connections."""

    def __init__(self) -> None:
        self.count = 0
        self.stopping = False


def json_response(value: Any, status: int = 200) -> Response:
    return Response(gojson.dumps(value), status=status, content_type=JSON_TYPE)


async def large_json_response(build: Callable[[], Any],
                              respond: Callable[[Any], Response] = json_response) -> Response:
    """``respond(build())`` (``json_response`` or ``openai_json_response``) for an answer that may
    run to megabytes, built and encoded in a worker thread so that the other requests are not held
    meanwhile (embeddings: 1,000 inputs of a 576-wide model are 10 MB of numbers, two seconds of
    encoding)."""
    return await anyio.to_thread.run_sync(lambda: respond(build()))


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def empty_response(status: int = 200) -> Response:
    return Response(b"", status=status)


async def read_json(struct: str, *, empty: str = "missing request body") -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type says, as Ollama binds it.

    Empty body: ``empty`` (Ollama's API says ``missing request body``, its /v1 ``EOF``); ``null``:
    an empty request; not an object: Go's "cannot unmarshal" message naming ``struct`` (e.g.
    ``api.ShowRequest``).
    """
    raw = await request.get_data()
    if not raw or not raw.strip():
        raise InvalidRequest(empty)
    _check_value_count(raw, kernel().settings.max_json_values)
    try:
        value = json.loads(raw, parse_constant=_not_json, parse_int=_go_int, parse_float=_go_float)
    except _NotJson as error:
        raise InvalidRequest(f"invalid JSON: {error} is not a JSON value") from None
    except _TooLarge as error:
        raise InvalidRequest(f"json: cannot unmarshal number {error} into Go value of type float64") from None
    except UnicodeDecodeError:
        raise InvalidRequest("invalid JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise InvalidRequest("invalid JSON: nested too deeply") from None
    if _ESCAPED_SURROGATE.search(raw):
        value = _without_lone_surrogates(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"json: cannot unmarshal {_JSON_KIND.get(type(value), 'value')} into Go value of type {struct}")
    return value


BUILT_INLINE_BYTES = 64 * 1024
"""A request body up to this size becomes its request record on the event loop; a larger one (a
long chat, many inputs) in a worker thread, so that checking it does not hold the other requests."""


async def read_request(struct: str, build: Callable[[dict[str, Any]], T], *, empty: str = "missing request body") -> T:
    """The request body as ``read_json`` reads it, turned into a request record by ``build``."""
    body = await read_json(struct, empty=empty)
    if (request.content_length or 0) <= BUILT_INLINE_BYTES:
        return build(body)
    return await anyio.to_thread.run_sync(build, body)


def embedding_inputs(values: list[str]) -> tuple[str, ...]:
    """A list of texts to embed: an empty one has no token to embed (llama.cpp fails on it)."""
    for index, value in enumerate(values):
        if not value:
            raise InvalidRequest(f"invalid input: input[{index}] is an empty string")
    return tuple(values)


_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _without_lone_surrogates(value: Any) -> Any:
    """Strings with each unpaired ``\\ud800``-``\\udfff`` escape made U+FFFD, as Go's JSON decoder
    does (Python keeps them, and they cannot be encoded as UTF-8 later)."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(key): _without_lone_surrogates(item) for key, item in value.items()}
    return value


class _TooManyValues(InvalidRequest):
    status = 413


def _check_value_count(raw: bytes, limit: int) -> None:
    """Refuse a body with more JSON values than ``limit`` before parsing it: Python's parser holds
    the event loop and takes 25 to 100 bytes of memory per value (``[{},{},...]`` in 32 MiB took
    seconds and gigabytes). Every value but the first follows a comma or an opening bracket; the
    count is an upper bound (commas in strings count too) taken in milliseconds."""
    count = raw.count(b",") + raw.count(b"{") + raw.count(b"[")
    if count > limit:
        raise _TooManyValues(f"request body has too many JSON values: more than {limit} (server.max_json_values)")


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> Any:
    raise _NotJson(constant)  # NaN, Infinity and -Infinity: Python reads them, Go's JSON does not


class _TooLarge(ValueError):
    pass


def _go_int(text: str) -> int | float:
    """A JSON integer: beyond int64 a float64, as Go reads numbers it does not know the type of
    (Python would build an integer of any size, or refuse one of over 4300 digits)."""
    return int(text) if len(text) <= 19 else _go_float(text)


def _go_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _TooLarge(text if len(text) <= 30 else text[:30] + "...")
    return value


def checked_model_name(name: str, *, empty_status: int) -> str:
    """A request's model name: empty is Ollama's 404 ``model '' not found`` or 400 ``model is
    required``, depending on the endpoint; unparsable is ``invalid model name``."""
    if not name:
        if empty_status == 404:
            raise ModelNotFound("", "model '' not found")
        raise InvalidRequest("model is required")
    try:
        parse_reference(name)
    except InvalidName:
        raise InvalidRequest("invalid model name") from None
    return name


class Fields:
    """Typed access to a request object, with Go's unmarshal errors for wrong types."""

    def __init__(self, body: Mapping[str, Any], struct: str) -> None:
        self.body = body
        self.struct = struct

    def _get(self, name: str, kinds: tuple[type, ...], go_type: str) -> Any:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            raise InvalidRequest(
                f"json: cannot unmarshal {_JSON_KIND.get(type(value), 'value')} into Go struct field "
                f"{self.struct}.{name} of type {go_type}"
            )
        return value

    def string(self, name: str, default: str = "") -> str:
        value = self._get(name, (str,), "string")
        return default if value is None else value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self._get(name, (bool,), "bool")
        return default if value is None else value

    def obj(self, name: str) -> dict[str, Any] | None:
        return self._get(name, (dict,), "map[string]interface {}")

    def model(self) -> str:
        """``model``, or the deprecated ``name`` that older clients send."""
        return self.string("model") or self.string("name")


def rfc3339(moment: dt.datetime) -> str:
    """RFC 3339 with a zone, as Go prints time.Time in JSON (``Z`` for UTC)."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_seconds: list[Any] = [None, ""]  # the last whole second formatted, reused within that second


def now_utc() -> str:
    """``created_at``: the current UTC time as Go's RFC3339Nano prints it. Called per streamed
    chunk, so the date and time part is formatted once a second."""
    now = time.time()
    whole = int(now)
    if _seconds[0] != whole:
        _seconds[0], _seconds[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    fraction = f"{int((now - whole) * 1_000_000):06d}".rstrip("0")
    return f"{_seconds[1]}.{fraction}Z" if fraction else f"{_seconds[1]}Z"


async def ndjson_stream(items: AsyncGenerator[Mapping[str, Any], None]) -> Response:
    """Stream objects as NDJSON. An error before the first object is a normal error response with
    its status; an error after it is one more ``{"error": ...}`` line, as Ollama does. ``items``
    is closed when the stream ends, however it ends."""
    try:
        first = await items.__anext__()
    except StopAsyncIteration:
        return Response(b"", content_type=NDJSON_TYPE)
    except BaseException:
        await items.aclose()
        raise
    return ndjson_lines(items, first=first)


def ndjson_lines(items: AsyncGenerator[Any, None], *, first: Any,
                 line: Callable[[Any], bytes] | None = None) -> Response:
    """An NDJSON stream of ``first`` and then ``items``, each turned into one line by ``line``
    (default: the object as Go's JSON); a late error is one more ``{"error": ...}`` line."""
    return counted_stream(items, first=first, frame=line or _ndjson_line, failure_frame=_ndjson_line,
                          failure=lambda message, _status: {"error": message}, content_type=NDJSON_TYPE)


def _ndjson_line(value: Any) -> bytes:
    return (gojson.dumps(value) + "\n").encode()


def counted_stream(items: AsyncGenerator[Any, None], *, frame: Callable[[Any], bytes],
                   failure: Callable[[str, int], Any], content_type: str, first: Any = None,
                   end: bytes = b"", failure_frame: Callable[[Any], bytes] | None = None) -> Response:
    """A streamed response that the server's shutdown waits for (``OpenStreams``): each item
    becomes ``frame(item)``, and shutdown or a late error ends it with ``failure_frame(failure(
    message, status))`` (``failure_frame`` defaults to ``frame``), since the status line has gone
    out already. ``end`` closes a complete stream."""
    streams: OpenStreams = current_app.extensions[STREAMS_KEY]
    frame_failure = failure_frame or frame

    async def body() -> AsyncIterator[bytes]:
        streams.count += 1
        try:
            if first is not None:
                yield frame(first)
            async for item in items:
                if streams.stopping:
                    yield frame_failure(failure("the server is shutting down", 500))
                    return
                yield frame(item)
            if end:
                yield end
        except CorralError as error:
            yield frame_failure(failure(error.message, error.status))
        except Exception as error:  # a fault mid-stream still ends the stream with a readable line
            log.exception("stream failed")
            yield frame_failure(failure(str(error) or type(error).__name__, 500))
        finally:
            streams.count -= 1
            await items.aclose()

    response = Response(body(), content_type=content_type)
    response.timeout = None  # a generation or pull may stream for far longer than Quart's 60 s
    return response


def progress_json(progress: Progress) -> dict[str, Any]:
    """Ollama's ProgressResponse: ``digest``, ``total`` and ``completed`` are omitted when empty."""
    data: dict[str, Any] = {"status": progress.status}
    if progress.digest:
        data["digest"] = progress.digest
    if progress.total:
        data["total"] = progress.total
    if progress.completed:
        data["completed"] = progress.completed
    return data


async def progress_response(progress: AsyncIterator[Progress], stream: bool) -> Response:
    """A pull, push or create: every status as NDJSON, or with ``stream: false`` only the last."""

    async def objects() -> AsyncGenerator[dict[str, Any], None]:
        try:
            async for item in progress:
                yield progress_json(item)
        finally:
            await progress.aclose()  # type: ignore[attr-defined]

    if stream:
        return await ndjson_stream(objects())
    last: dict[str, Any] = {}
    async for item in objects():
        last = item
    return json_response(last)


# -- OpenAI's shapes ---------------------------------------------------------------------------------


def openai_error(message: str, status: int) -> dict[str, Any]:
    """OpenAI's error object, with the type its clients expect for the status."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def openai_json_response(value: Any, status: int = 200) -> Response:
    """A JSON answer as Ollama's /v1 writes it (Go JSON, a final newline)."""
    return Response(gojson.dumps(value) + "\n", status=status, content_type=OPENAI_JSON_TYPE)


def sse_stream(events: AsyncGenerator[dict[str, Any], None]) -> Response:
    """Server-sent events ``data: {...}`` ending with ``data: [DONE]``, as OpenAI streams. Shutdown
    and late errors end the stream with an ``openai_error`` event, which OpenAI's clients raise."""
    return counted_stream(events, frame=lambda value: f"data: {gojson.dumps(value)}\n\n".encode(),
                          failure=openai_error, content_type=SSE_TYPE, end=b"data: [DONE]\n\n")
