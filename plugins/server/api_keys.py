"""API keys: who may call the server, as one ASGI middleware.

With any key set (``server.api_keys``, ``server.inference_keys``, their ``_file`` variants), every
request needs ``Authorization: Bearer <key>``, except on views declared ``@access(OPEN)`` (``GET /``
and ``HEAD /``, the web UI's files) and on binds declared ``Bind(..., requires_key=False)``. A full
key may call everything; an inference key only views declared ``@access(INFERENCE)`` (running,
listing and showing models, /v1). A missing or unknown key is 401 with ``WWW-Authenticate:
Bearer``; an inference key on a full-access view is 403. Paths no view serves need a full key, so
an inference key learns nothing from them. Bodies are Ollama's ``{"error": ...}``, OpenAI's
``{"error": {"message", "type", "param", "code"}}`` under /v1.

Keys are kept as SHA-256 digests and every presented key is compared with all of them through
``hmac.compare_digest``, so the time taken does not tell how much of a key matched. The
``Authorization`` header is removed before the request goes on, so nothing further in can log or
echo it.

A refusal reads (and drops) a small request body before answering: Hypercorn closes a kept-alive
connection when the answer goes out before the body was read, and a client that reuses the
connection then fails its next request. A body too big or too slow to drain gets
``Connection: close`` instead, which tells the client not to reuse the connection.

The server's own ``asgi_wrapper`` puts this middleware inside CORS and the request log: refusals
are logged, preflights (``OPTIONS`` from another origin) are answered by CORS without a key, and
CORS headers reach the 401 so that a page on an allowed origin can read it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import attrs

from corral import ConfigError, parse_key
from corral.sdk.http import FULL, INFERENCE, OPEN, access_of, go_json

log = logging.getLogger("corral.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_BYTES = 1024 * 1024
"""A refused request's body up to this size is read and dropped, so the connection stays usable."""
DRAIN_SECONDS = 5.0
"""How long a refused request may take to send that body."""
MAX_KEYS_FILE_BYTES = 1024 * 1024

MISSING = "unauthorized: this server needs an API key in the Authorization header (Bearer KEY)"
INVALID = "unauthorized: invalid API key"
INFERENCE_ONLY = "forbidden: this API key may only run, list and show models"


@attrs.frozen
class KeyRing:
    """The SHA-256 digests of the full and the inference keys."""

    full: tuple[bytes, ...]
    inference: tuple[bytes, ...]

    def grant(self, presented: bytes) -> str | None:
        """FULL, INFERENCE or None, comparing the presented key with every known one."""
        digest = hashlib.sha256(presented).digest()
        full = inference = False
        for known in self.full:
            full |= hmac.compare_digest(known, digest)
        for known in self.inference:
            inference |= hmac.compare_digest(known, digest)
        return FULL if full else INFERENCE if inference else None


def _digest(entry: str) -> bytes:
    if entry.startswith("sha256:"):
        return bytes.fromhex(entry[7:])
    return hashlib.sha256(entry.encode("ascii")).digest()


def read_keys_file(path: Path, setting: str) -> list[str]:
    """The keys of a keys file: one per line, plain or ``sha256:<hex>``; blank lines and lines
    starting with ``#`` are skipped. Errors name the file and line, never the key. A file of plain
    keys that other users may read is worth a warning."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEYS_FILE_BYTES + 1)
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_KEYS_FILE_BYTES:
        raise ConfigError(f"{setting}: {path} is larger than {MAX_KEYS_FILE_BYTES} bytes")
    keys = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            keys.append(parse_key(text))
        except ValueError as error:
            raise ConfigError(f"{setting}: {path} line {number}: {error}") from None
    if not keys:
        raise ConfigError(f"{setting}: {path} holds no key")
    if mode & 0o077 and any(not key.startswith("sha256:") for key in keys):
        log.warning("%s: %s holds plain keys and other users may read it (chmod 600 it, or store "
                    "sha256:<hex> of each key)", setting, path)
    return keys


def load_keys(settings: Any) -> KeyRing | None:
    """The keys from the settings and the keys files; None when no key is set."""
    full = list(settings.api_keys)
    inference = list(settings.inference_keys)
    if settings.api_keys_file is not None:
        full += read_keys_file(settings.api_keys_file, "server.api_keys_file")
    if settings.inference_keys_file is not None:
        inference += read_keys_file(settings.inference_keys_file, "server.inference_keys_file")
    if not full and not inference:
        return None
    ring = KeyRing(full=tuple(dict.fromkeys(map(_digest, full))),
                   inference=tuple(dict.fromkeys(map(_digest, inference))))
    if set(ring.full) & set(ring.inference):
        raise ConfigError("a key is both a full key and an inference key: list it in one place only")
    return ring


class RouteAccess:
    """The access level each request needs, from the view the app's URL map sends it to.

    Matching costs tens of microseconds, so the last answers are kept (the paths clients use are few).
    """

    def __init__(self, quart_app: Any) -> None:
        self.quart_app = quart_app
        self.required = functools.lru_cache(maxsize=1024)(self._match)

    def _match(self, method: str, path: str) -> str:
        from werkzeug.exceptions import HTTPException
        from werkzeug.routing import RequestRedirect

        try:
            endpoint, _args = self.quart_app.url_map.bind("").match(path, method)
        except (HTTPException, RequestRedirect):
            return FULL  # no view: 404, 405 or a redirect, for full keys only
        view = self.quart_app.view_functions.get(endpoint)
        return FULL if view is None else access_of(view)


class ApiKeyGuard:
    """The middleware: see the module's documentation."""

    def __init__(self, app: ASGIApp, *, keys: KeyRing, routes: RouteAccess,
                 keyless_ports: frozenset[int] = frozenset()) -> None:
        self.app = app
        self.keys = keys
        self.routes = routes
        self.keyless_ports = keyless_ports

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        server = scope.get("server") or ()
        if len(server) > 1 and server[1] in self.keyless_ports:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        needed = self.routes.required(scope.get("method", "GET") if kind == "http" else "GET", path)
        if needed == OPEN:
            await self.app(scope, receive, send)
            return
        token = None
        others = []
        for name, value in scope.get("headers") or ():
            if name != b"authorization":
                others.append((name, value))
            elif token is None:
                scheme, _, rest = bytes(value).partition(b" ")
                token = rest.strip() if scheme.lower() == b"bearer" else b""
        granted = self.keys.grant(token) if token else None
        if granted is None:
            await refuse(scope, receive, send, 401, INVALID if token else MISSING)
            return
        if needed == FULL and granted != FULL:
            await refuse(scope, receive, send, 403, INFERENCE_ONLY)
            return
        await self.app({**scope, "headers": others}, receive, send)


def _body(path: str, status: int, message: str) -> bytes:
    if path == "/v1" or path.startswith("/v1/"):
        kind, code = (("invalid_request_error", "invalid_api_key") if status == 401
                      else ("permission_error", "insufficient_permissions"))
        return go_json({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    return go_json({"error": message}).encode()


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    """Answer 401 or 403 in the route's error shape, leaving the connection usable."""
    body = _body(scope.get("path", ""), status, message)
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if scope["type"] == "websocket":
        if (await receive()).get("type") != "websocket.connect":
            return
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    if not await drained(scope, receive) and scope.get("http_version") in ("1.0", "1.1"):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def drained(scope: Scope, receive: Receive) -> bool:
    """Read and drop the request body; False when it is too big, too slow or cut off."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length" and (not value.isdigit() or int(value) > DRAIN_BYTES):
            return False
    size = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            size += len(message.get("body", b""))
            if size > DRAIN_BYTES:
                return False
            if not message.get("more_body", False):
                return True
    return False
