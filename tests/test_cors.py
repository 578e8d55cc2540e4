"""CORS and the DNS-rebinding host check (Ollama's gin-contrib/cors setup + allowedHostsMiddleware)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.errors import ConfigError
from corral.plugins.server import cors
from corral.plugins.server.cors import CorsAndHostGuard, canonical_header_key, is_loopback_bind
from corral.settings import DEFAULT_ORIGINS, Settings

PREFLIGHT_ALLOW_HEADERS = (
    "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,Openai-Beta,X-Stainless-Arch,"
    "X-Stainless-Async,X-Stainless-Custom-Poll-Interval,X-Stainless-Helper-Method,X-Stainless-Lang,"
    "X-Stainless-Os,X-Stainless-Package-Version,X-Stainless-Poll-Helper,X-Stainless-Retry-Count,"
    "X-Stainless-Runtime,X-Stainless-Runtime-Version,X-Stainless-Timeout"
)
PREFLIGHT_ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-methods",
                "access-control-allow-headers", "access-control-max-age", "vary")


class EchoApp:
    """A tiny ASGI app: 200 ``ok`` (text/plain), and a record of the requests that reached it."""

    def __init__(self, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.calls: list[dict[str, Any]] = []
        self.headers = list(headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append(scope)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), *self.headers]})
        await send({"type": "http.response.body", "body": b"ok"})


def guard(origins: Iterable[str] = DEFAULT_ORIGINS, *, loopback_only: bool = True,
          app: Any = None) -> CorsAndHostGuard:
    return CorsAndHostGuard(app or EchoApp(), allowed_origins=tuple(origins), loopback_only=loopback_only)


def call(app: Any, method: str = "GET", path: str = "/api/tags", *, origin: str | None = None,
         host: str | None = "127.0.0.1:11434", **headers: str) -> httpx.Response:
    """One request through httpx's ASGI transport (which sends the Host header we give)."""
    sent = {key.replace("_", "-"): value for key, value in headers.items()}
    if origin is not None:
        sent["Origin"] = origin
    if host is not None:
        sent["Host"] = host

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:11434") as client:
            return await client.request(method, path, headers=sent)

    return asyncio.run(go())


def cors_headers(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.multi_items() if k in CORS_HEADERS)


def reached(middleware: CorsAndHostGuard) -> int:
    return len(middleware.app.calls)


def load(tmp_path: Path, origins: str) -> Settings:
    return Settings.load({"HOME": str(tmp_path), "OLLAMA_ORIGINS": origins})


# --- origins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [
    "http://localhost", "https://localhost", "http://localhost:3000", "https://localhost:8443",
    "http://127.0.0.1", "http://127.0.0.1:5173", "https://127.0.0.1:1", "http://0.0.0.0",
    "http://0.0.0.0:8080", "app://obsidian.md", "file://", "tauri://localhost",
    "vscode-webview://1a2b3c", "vscode-file://vscode-app",
])
def test_default_origins_are_allowed_and_echoed(origin: str) -> None:
    middleware = guard()
    response = call(middleware, origin=origin)
    assert response.status_code == 200
    assert response.text == "ok"
    assert cors_headers(response) == [("access-control-allow-origin", origin), ("vary", "Origin")]
    assert reached(middleware) == 1


@pytest.mark.parametrize("origin", [
    "http://evil.com", "http://localhost.evil.com", "https://127.0.0.1.nip.io", "null",
    "chrome-extension://abcdefghijklmnop", "moz-extension://1234", "safari-web-extension://x",
    "HTTP://LOCALHOST", "http://[::1]:3000",
])
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_disallowed_origin_is_403_with_an_empty_body(origin: str, method: str) -> None:
    middleware = guard()
    response = call(middleware, method, origin=origin, Access_Control_Request_Method="POST")
    assert response.status_code == 403
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert "content-type" not in response.headers
    assert cors_headers(response) == []
    assert reached(middleware) == 0


def test_ollama_origins_with_wildcards(tmp_path: Path) -> None:
    settings = load(tmp_path, "https://*.example.com, http://app.test:*,*.trusted.org,https://Exact.ORG")
    assert settings.allowed_origins[4:] == DEFAULT_ORIGINS
    middleware = CorsAndHostGuard.from_settings(EchoApp(), settings)
    assert middleware.loopback_only is True
    for origin in ("https://a.example.com", "https://a.b.example.com", "http://app.test:1234",
                   "https://x.trusted.org", "http://trusted.org.evil.trusted.org", "https://exact.org",
                   "http://localhost:3000"):
        response = call(middleware, origin=origin)
        assert response.status_code == 200, origin
        assert response.headers["access-control-allow-origin"] == origin
    for origin in ("https://example.com", "http://a.example.com", "https://a.example.com.evil",
                   "http://app.test", "https://trusted.org", "https://Exact.ORG", "http://evil.com"):
        assert call(middleware, origin=origin).status_code == 403, origin


def test_wildcard_rules_match_like_gin() -> None:
    middleware = guard(["http://a*a"])
    # gin checks prefix and suffix independently, so they may overlap.
    assert middleware.origin_allowed("http://a")
    assert middleware.origin_allowed("http://abca")
    assert not middleware.origin_allowed("http://ab")
    # Exact origins are compared lowercased; wildcard rules keep their case.
    assert guard(["http://UPPER.test"]).origin_allowed("http://upper.test")
    assert not guard(["http://*.UPPER.test"]).origin_allowed("http://x.upper.test")


def test_star_allows_every_origin_with_a_star_header(tmp_path: Path) -> None:
    middleware = CorsAndHostGuard.from_settings(EchoApp(), load(tmp_path, "*"))
    for origin in ("http://evil.com", "chrome-extension://abc", "null"):
        response = call(middleware, origin=origin)
        assert response.status_code == 200
        assert cors_headers(response) == [("access-control-allow-origin", "*")]
    response = call(middleware, "OPTIONS", origin="http://evil.com", Access_Control_Request_Method="POST")
    assert response.status_code == 204
    assert cors_headers(response) == sorted([
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", PREFLIGHT_ALLOW_METHODS),
        ("access-control-allow-headers", PREFLIGHT_ALLOW_HEADERS),
        ("access-control-max-age", "43200"),
    ])


def test_browser_extensions_only_when_listed(tmp_path: Path) -> None:
    assert call(guard(), origin="chrome-extension://abc").status_code == 403
    listed = load(tmp_path, "chrome-extension://*,moz-extension://1234,safari-web-extension://*")
    middleware = CorsAndHostGuard.from_settings(EchoApp(), listed)
    for origin in ("chrome-extension://abc", "moz-extension://1234", "safari-web-extension://x"):
        response = call(middleware, origin=origin)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
    assert call(middleware, origin="moz-extension://5678").status_code == 403


def test_same_origin_is_not_cors() -> None:
    middleware = guard()
    for origin in ("http://127.0.0.1:11434", "https://127.0.0.1:11434"):
        response = call(middleware, origin=origin, host="127.0.0.1:11434")
        assert response.status_code == 200
        assert cors_headers(response) == []
    # Not a listed origin, but the same as the Host: passes when the host check is off...
    open_guard = guard(loopback_only=False)
    response = call(open_guard, origin="http://evil.com:11434", host="evil.com:11434")
    assert response.status_code == 200
    assert cors_headers(response) == []
    # ...and that is exactly DNS rebinding, which the host check stops on a loopback server.
    assert call(guard(), origin="http://evil.com:11434", host="evil.com:11434").status_code == 403
    # The comparison is with the Host header as sent, port included.
    assert call(guard(), origin="http://evil.com", host="evil.com:11434").status_code == 403


@pytest.mark.parametrize("path", ["/api/tags", "/api/chat", "/", "/no/such/path"])
def test_preflight_is_204_with_ollamas_headers_on_any_path(path: str) -> None:
    middleware = guard()
    response = call(middleware, "OPTIONS", path, origin="http://localhost:3000",
                    Access_Control_Request_Method="POST",
                    Access_Control_Request_Headers="content-type,x-stainless-os")
    assert response.status_code == 204
    assert response.content == b""
    assert cors_headers(response) == sorted([
        ("access-control-allow-origin", "http://localhost:3000"),
        ("access-control-allow-methods", PREFLIGHT_ALLOW_METHODS),
        ("access-control-allow-headers", PREFLIGHT_ALLOW_HEADERS),
        ("access-control-max-age", "43200"),
        ("vary", "Origin"),
        ("vary", "Access-Control-Request-Method"),
        ("vary", "Access-Control-Request-Headers"),
    ])
    assert reached(middleware) == 0


def test_any_cross_origin_options_is_a_preflight_like_gin() -> None:
    response = call(guard(), "OPTIONS", origin="http://localhost:3000")
    assert response.status_code == 204
    assert response.headers["access-control-max-age"] == "43200"


def test_preflight_skips_the_host_check_like_gin() -> None:
    # gin-contrib/cors aborts the chain on a preflight, so allowedHostsMiddleware never sees it.
    response = call(guard(), "OPTIONS", origin="http://localhost:3000", host="evil.com",
                    Access_Control_Request_Method="GET")
    assert response.status_code == 204


def test_app_headers_win_and_vary_is_merged() -> None:
    app = EchoApp([(b"vary", b"Accept-Encoding"), (b"access-control-allow-origin", b"https://app.set")])
    response = call(guard(app=app), origin="http://localhost:3000")
    assert response.headers.get_list("vary") == ["Accept-Encoding", "Origin"]
    assert response.headers.get_list("access-control-allow-origin") == ["https://app.set"]
    app = EchoApp([(b"Vary", b"origin, accept")])
    assert call(guard(app=app), origin="http://localhost:3000").headers.get_list("vary") == ["origin, accept"]


def test_bad_origin_settings_are_config_errors() -> None:
    for origins in ([], ["localhost:3000"], ["http://*.a.*"], [" http://a"], ["ws://x"]):
        with pytest.raises(ConfigError, match="OLLAMA_ORIGINS"):
            guard(origins)
    guard(["moz-extension://abc", "*.local", "custom://*", "*"])


def test_canonical_header_key_is_gos() -> None:
    assert canonical_header_key("openai-beta") == "Openai-Beta"
    assert canonical_header_key("x-stainless-os") == "X-Stainless-Os"
    assert canonical_header_key("CONTENT-TYPE") == "Content-Type"
    assert canonical_header_key("bad header") == "bad header"


# --- host check -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [
    "localhost", "localhost:11434", "LOCALHOST:11434", "foo.localhost", "foo.localhost:11434",
    "x.local", "printer.local:631", "metadata.google.internal", "[::1]:11434", "[::1]", "::1",
    "127.0.0.1", "127.0.0.2:8080", "192.168.1.5", "192.168.1.5:11434", "10.0.0.1", "172.16.0.1",
    "172.31.255.255", "0.0.0.0:11434", "[::]:11434", "[fd00::1]:11434", "[::ffff:127.0.0.1]:1",
    socket.gethostname(), socket.gethostname().upper() + ":11434",
])
def test_local_hosts_are_allowed_on_a_loopback_server(host: str) -> None:
    middleware = guard()
    response = call(middleware, host=host)
    assert response.status_code == 200, host
    assert reached(middleware) == 1


@pytest.mark.parametrize("host", [
    "evil.com", "evil.com:11434", "localhost.evil.com", "local", "internal", "evillocalhost",
    "x.local.evil.com", "8.8.8.8", "8.8.8.8:11434", "172.32.0.1", "169.254.169.254", "100.64.0.1",
    "[2001:4860:4860::8888]:11434", "[fe80::1%25eth0]:11434", "localhost.", "127.0.0.1.nip.io",
])
def test_other_hosts_are_refused_on_a_loopback_server(host: str) -> None:
    middleware = guard()
    response = call(middleware, host=host)
    assert response.status_code == 403, host
    assert response.content == b""
    assert reached(middleware) == 0


@pytest.mark.parametrize("host", ["evil.com", "8.8.8.8:11434", "169.254.169.254"])
def test_every_host_is_allowed_when_not_bound_to_loopback(host: str) -> None:
    assert call(guard(loopback_only=False), host=host).status_code == 200


def test_the_machines_own_addresses_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    own = cors.ipaddress.ip_address("203.0.113.7")
    monkeypatch.setattr(cors, "local_interface_addresses", lambda: frozenset({own}))
    assert call(guard(), host="203.0.113.7:11434").status_code == 200
    assert call(guard(), host="203.0.113.8:11434").status_code == 403


def test_interface_addresses_include_loopback() -> None:
    addresses = cors.local_interface_addresses()
    assert all(isinstance(ip, (cors.ipaddress.IPv4Address, cors.ipaddress.IPv6Address)) for ip in addresses)
    if Path("/proc/net/fib_trie").exists():
        assert cors.ipaddress.ip_address("127.0.0.1") in addresses


def test_options_on_an_allowed_name_is_204_and_on_an_address_goes_on() -> None:
    middleware = guard()
    response = call(middleware, "OPTIONS", host="localhost:11434")
    assert (response.status_code, response.content, reached(middleware)) == (204, b"", 0)
    response = call(middleware, "OPTIONS", host="127.0.0.1:11434")
    assert (response.status_code, reached(middleware)) == (200, 1)


def test_cors_then_host_check() -> None:
    # An allowed origin does not get past the host check; the 403 keeps the CORS headers (as gin).
    response = call(guard(), origin="http://localhost:3000", host="evil.com")
    assert response.status_code == 403
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    # A disallowed origin is refused by CORS even on a good host.
    assert call(guard(), origin="http://evil.com", host="localhost").status_code == 403


def test_empty_and_missing_host_are_allowed() -> None:
    for headers in ([(b"host", b"")], []):
        messages = run_asgi(guard(), {"type": "http", "method": "GET", "path": "/", "headers": headers})
        assert messages[0]["status"] == 200


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LocalHost", True), ("app.localhost", True), ("0.0.0.0", False), ("", False), ("::", False),
    ("192.168.1.5", False), ("10.0.0.1", False), ("8.8.8.8", False), ("no-such-host.invalid", False),
])
def test_is_loopback_bind(host: str, expected: bool) -> None:
    assert is_loopback_bind(host) is expected


def test_from_settings_follows_ollama_host(tmp_path: Path) -> None:
    for value, expected in (("0.0.0.0", False), ("127.0.0.1:8080", True), (":11434", False), ("[::1]", True)):
        settings = Settings.load({"HOME": str(tmp_path), "OLLAMA_HOST": value})
        assert CorsAndHostGuard.from_settings(EchoApp(), settings).loopback_only is expected, value


# --- the ASGI protocol: streaming, lifespan, WebSocket ----------------------------------------


def run_asgi(app: Any, scope: dict[str, Any], incoming: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    queue = list(incoming) or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


CHUNKS = [b'{"n":%d}\n' % i for i in range(5)]


class StreamingApp:
    def __init__(self) -> None:
        self.body_messages: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")]})
        for chunk in CHUNKS:
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            self.body_messages.append(message)
            await send(message)
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_streaming_bodies_pass_through_one_message_at_a_time() -> None:
    app = StreamingApp()
    scope = {"type": "http", "method": "POST", "path": "/api/generate",
             "headers": [(b"host", b"127.0.0.1:11434"), (b"origin", b"http://localhost:3000")]}
    sent = run_asgi(guard(app=app), scope)
    assert sent[0]["type"] == "http.response.start"
    assert (b"access-control-allow-origin", b"http://localhost:3000") in sent[0]["headers"]
    assert (b"content-type", b"application/x-ndjson") in sent[0]["headers"]
    # Every body message is the app's own object, forwarded as it was sent.
    assert all(a is b for a, b in zip(sent[1:], app.body_messages, strict=False))
    assert len(sent) == 1 + len(CHUNKS) + 1
    # Through httpx too, the stream arrives intact.
    response = call(guard(app=StreamingApp()), "POST", "/api/generate", origin="http://localhost:3000")
    assert response.content == b"".join(CHUNKS)


def test_lifespan_and_unknown_scopes_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        pass

    middleware = guard(app=app)
    for kind in ("lifespan", "something-else"):
        scope = {"type": kind}
        asyncio.run(middleware(scope, receive, send))
        assert seen[-1] == (scope, receive, send)


def websocket_scope(origin: str | None, host: str = "127.0.0.1:11434", *,
                    extension: bool = True) -> dict[str, Any]:
    headers = [(b"host", host.encode())]
    if origin:
        headers.append((b"origin", origin.encode()))
    scope: dict[str, Any] = {"type": "websocket", "path": "/ws", "headers": headers}
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


async def websocket_app(scope: Any, receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})


def test_websocket_origin_and_host_checks() -> None:
    connect = [{"type": "websocket.connect"}]
    middleware = guard(app=websocket_app)
    sent = run_asgi(middleware, websocket_scope("http://evil.com"), connect)
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 403 and sent[1]["body"] == b""
    sent = run_asgi(middleware, websocket_scope("http://evil.com", extension=False), connect)
    assert [m["type"] for m in sent] == ["websocket.close"]
    sent = run_asgi(middleware, websocket_scope(None, host="evil.com"), connect)
    assert sent[0]["status"] == 403
    sent = run_asgi(middleware, websocket_scope("http://localhost:3000"), connect)
    assert sent[0]["type"] == "websocket.accept"
    assert sent[0]["headers"] == [(b"x-app", b"1"), (b"access-control-allow-origin", b"http://localhost:3000"),
                                  (b"vary", b"Origin")]
    sent = run_asgi(middleware, websocket_scope(None), connect)
    assert sent == [{"type": "websocket.accept", "headers": [(b"x-app", b"1")]}]


# --- on the wire, with Hypercorn --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_on_a_real_hypercorn_server() -> None:
    pytest.importorskip("hypercorn")
    import hypercorn.asyncio
    import hypercorn.config

    release = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await websocket_app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")]})
        await send({"type": "http.response.body", "body": CHUNKS[0], "more_body": True})
        # The second chunk is only sent once the client has read the first one: a middleware
        # that buffered the body would hang here.
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.body", "body": CHUNKS[1], "more_body": False})

    port = free_port()
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = config.errorlog = None
    stop: dict[str, Any] = {}
    started = threading.Event()

    async def serve() -> None:
        stop["event"] = asyncio.Event()
        stop["loop"] = asyncio.get_running_loop()
        started.set()
        middleware = CorsAndHostGuard(app, allowed_origins=DEFAULT_ORIGINS, loopback_only=True)
        await hypercorn.asyncio.serve(middleware, config, shutdown_trigger=stop["event"].wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(100):
                try:
                    client.options("/", headers={"Origin": "http://localhost:1"})
                    break
                except httpx.ConnectError:
                    threading.Event().wait(0.05)
            response = client.options("/api/tags", headers={"Origin": "http://localhost:3000",
                                                            "Access-Control-Request-Method": "GET"})
            assert response.status_code == 204
            assert response.headers["access-control-allow-headers"] == PREFLIGHT_ALLOW_HEADERS
            assert response.headers.get_list("vary") == [
                "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]
            for headers in ({"Origin": "chrome-extension://abc"}, {"Host": "evil.com"}):
                response = client.get("/api/tags", headers=headers)
                assert (response.status_code, response.content) == (403, b"")
                assert response.headers["content-length"] == "0"
            with client.stream("POST", "/api/generate", headers={"Origin": "http://localhost:3000"}) as stream:
                assert stream.headers["access-control-allow-origin"] == "http://localhost:3000"
                chunks = stream.iter_raw()
                assert next(chunks) == CHUNKS[0]
                release.set()
                assert b"".join(chunks) == CHUNKS[1]
        # A WebSocket handshake from a disallowed origin is refused with a plain 403.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Origin: http://evil.com\r\n\r\n")
            assert raw.recv(1024).startswith(b"HTTP/1.1 403")
    finally:
        release.set()
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)
