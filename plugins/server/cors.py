"""CORS and the DNS-rebinding host check, as Ollama does them, as one pure ASGI middleware.

Ollama (server/routes.go ``GenerateRoutes``) runs gin-contrib/cors v1.7.2 with ``AllowWildcard``,
``AllowBrowserExtensions``, ``AllowOrigins = envconfig.AllowedOrigins()`` and its own
``AllowHeaders``, followed by ``allowedHostsMiddleware``. :class:`CorsAndHostGuard` reproduces both,
in that order:

CORS (gin-contrib/cors ``applyCors``)
    * No ``Origin``, or ``Origin`` equal to ``http://<Host>`` or ``https://<Host>`` (the Host header
      as sent, port included): not a CORS request, nothing is added.
    * An origin that is not allowed: ``403`` with an empty body, whatever the method.
    * An allowed origin with method ``OPTIONS`` (any OPTIONS request, whether or not it carries
      ``Access-Control-Request-Method``; gin does not look): ``204`` with the preflight headers, on
      every path. The host check does not run for it (gin aborts the chain there).
    * An allowed origin otherwise: the request goes on, and the response gains
      ``Access-Control-Allow-Origin: <origin>`` and ``Vary: Origin`` (``*`` and no Vary when the
      origins contain ``*``).
    * Matching: an exact match against the origins trimmed and lowercased, or a wildcard rule
      ``prefix*suffix`` (one ``*`` at most, matched on the origins as given, so case-sensitively);
      ``*`` alone allows every origin. Browser extensions are allowed only when listed.

Host check (``allowedHostsMiddleware``), only when the server listens on a loopback address
    The Host header, port and IPv6 brackets removed, must be an IP address that is loopback,
    private (RFC 1918, ``fc00::/7``), unspecified or one of this machine's interface addresses, or
    one of the names ``""``, ``localhost``, this machine's host name, ``*.localhost``, ``*.local``,
    ``*.internal``. Anything else is ``403`` with an empty body. A request allowed by name with
    method OPTIONS is answered ``204`` there (Ollama does the same); one allowed by address goes on.

Only the headers of ``http.response.start`` (or ``websocket.accept`` /
``websocket.http.response.start``) are edited; bodies stream through untouched, and requests that
are not cross-origin reach the app with the server's own ``send``. ``lifespan`` and any other scope
type pass straight through. A refused WebSocket handshake is answered with an empty 403 through the
``websocket.http.response`` extension when the server offers it (Hypercorn does), else with
``websocket.close`` (which servers turn into a 403).

This module imports only the standard library, :mod:`corral.errors` and :mod:`corral.settings`.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from corral import ConfigError, is_loopback_host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: gin-contrib/cors ``DefaultConfig().AllowMethods``, which Ollama keeps.
ALLOW_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: Ollama's ``corsConfig.AllowHeaders`` as written in server/routes.go (gin sends them canonicalised).
ALLOW_HEADERS: tuple[str, ...] = (
    "Authorization",
    "Content-Type",
    "User-Agent",
    "Accept",
    "X-Requested-With",
    "OpenAI-Beta",
    "x-stainless-arch",
    "x-stainless-async",
    "x-stainless-custom-poll-interval",
    "x-stainless-helper-method",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-poll-helper",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
#: ``DefaultConfig().MaxAge``: 12 hours, in seconds.
MAX_AGE = 12 * 60 * 60

#: gin-contrib/cors ``Config.Validate``: an origin without ``*`` must start with one of these
#: (DefaultSchemas + ExtensionSchemas, since Ollama sets AllowBrowserExtensions).
ORIGIN_SCHEMES: tuple[str, ...] = (
    "http://",
    "https://",
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
)

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
_FORBIDDEN: list[tuple[bytes, bytes]] = [(b"content-length", b"0")]
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# --- configuration ----------------------------------------------------------------------------


def validate_origins(origins: Sequence[str]) -> None:
    """Check origins as gin-contrib/cors does when Ollama starts (where a bad one is a panic).

    Raises :class:`~corral.errors.ConfigError` for an empty list, an origin with more than one
    ``*``, or an origin with no ``*`` that does not start with one of :data:`ORIGIN_SCHEMES`.
    """
    if not origins:
        raise ConfigError("OLLAMA_ORIGINS: no allowed origins (conflict settings: all origins disabled)")
    for origin in origins:
        if "*" not in origin and not origin.startswith(ORIGIN_SCHEMES):
            raise ConfigError(
                f"OLLAMA_ORIGINS: bad origin {origin!r}: origins must contain '*' or start with "
                + ", ".join(ORIGIN_SCHEMES)
            )
        if origin.count("*") > 1:
            raise ConfigError(f"OLLAMA_ORIGINS: bad origin {origin!r}: only one * is allowed")


def canonical_header_key(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-stainless-os`` -> ``X-Stainless-Os``.

    A name with a character that is not an HTTP token character is returned unchanged, as in Go.
    """
    if not name or any(char not in _TOKEN for char in name):
        return name
    out, upper = [], True
    for char in name:
        if upper and "a" <= char <= "z":
            char = char.upper()
        elif not upper and "A" <= char <= "Z":
            char = char.lower()
        out.append(char)
        upper = char == "-"
    return "".join(out)


def _normalize(values: Iterable[str]) -> list[str]:
    """gin-contrib/cors ``normalize``: trim, lowercase, drop repeats, keep order."""
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value.strip().lower(), None)
    return list(seen)


def _wildcard_rules(origins: Iterable[str]) -> list[tuple[str, str]]:
    """gin-contrib/cors ``parseWildcardRules`` (on the origins as given, not normalised)."""
    rules = []
    for origin in origins:
        index = origin.find("*")
        if index < 0:
            continue
        if index == 0:
            rules.append(("*", origin[1:]))
        elif index == len(origin) - 1:
            rules.append((origin[:index], "*"))
        else:
            rules.append((origin[:index], origin[index + 1:]))
    return rules


# --- addresses --------------------------------------------------------------------------------


def _parse_ip(text: str) -> IPAddress | None:
    """Go's ``netip.ParseAddr`` for what a Host header can hold (IPv4, IPv6, IPv6 with a zone)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _unmap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_loopback(ip: IPAddress) -> bool:
    """Go's ``netip.Addr.IsLoopback``: 127.0.0.0/8 and ::1 (IPv4-mapped addresses unmapped)."""
    ip = _unmap(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.packed[0] == 127
    return int(ip) == 1


def _is_private(ip: IPAddress) -> bool:
    """Go's ``netip.Addr.IsPrivate``: 10/8, 172.16/12, 192.168/16, fc00::/7 and nothing else.

    (Python's ``is_private`` is much wider: link-local, documentation and reserved ranges.)
    """
    ip = _unmap(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        a, b = ip.packed[0], ip.packed[1]
        return a == 10 or (a == 172 and b & 0xF0 == 16) or (a == 192 and b == 168)
    return ip.packed[0] & 0xFE == 0xFC


def _is_unspecified(ip: IPAddress) -> bool:
    """Go's ``netip.Addr.IsUnspecified``: exactly 0.0.0.0 or :: (no zone, no mapping)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return False
    return int(ip) == 0


def split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: ``(host, port)``, or None where Go returns an error."""
    colon = hostport.rfind(":")
    if colon < 0:
        return None
    start, after = 0, 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != colon:
            return None
        host = hostport[1:end]
        start, after = 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            return None
    if "[" in hostport[start:] or "]" in hostport[after:]:
        return None
    return host, hostport[colon + 1:]


def request_host_name(host_header: str) -> str:
    """The host part of a Host header: port removed as Go's SplitHostPort does, then brackets.

    Ollama keeps the whole header when SplitHostPort fails, so ``[::1]`` (no port) stays
    bracketed there and is refused; here the brackets are removed and ``::1`` is allowed.
    """
    split = split_host_port(host_header)
    host = host_header if split is None else split[0]
    if len(host) > 1 and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


_INTERFACE_CACHE_SECONDS = 2.0
_interface_cache: tuple[float, frozenset[IPAddress]] | None = None


def local_interface_addresses() -> frozenset[IPAddress]:
    """This machine's interface addresses, best effort, with no DNS lookup (cached for 2 s).

    Go's ``net.Interfaces()`` lists every address of every interface; the standard library has no
    portable equivalent. On Linux this reads ``/proc/net/fib_trie`` (every local IPv4 address) and
    ``/proc/net/if_inet6`` (every IPv6 address). Elsewhere, or when those cannot be read, it finds
    the addresses the machine would use to reach the outside (a UDP ``connect``, which sends
    nothing), so an interface that no route uses may be missed: a Host naming such an address is
    then refused, unless it is loopback, private or unspecified anyway.
    """
    global _interface_cache
    now = time.monotonic()
    if _interface_cache is not None and now - _interface_cache[0] < _INTERFACE_CACHE_SECONDS:
        return _interface_cache[1]
    found = set(_proc_ipv4_addresses()) | set(_proc_ipv6_addresses())
    if not any(isinstance(ip, ipaddress.IPv4Address) for ip in found):
        found |= _routed_addresses(socket.AF_INET, "192.0.2.1")
    if not any(isinstance(ip, ipaddress.IPv6Address) for ip in found):
        found |= _routed_addresses(socket.AF_INET6, "2001:db8::1")
    addresses = frozenset(found)
    _interface_cache = (now, addresses)
    return addresses


def _proc_ipv4_addresses() -> list[IPAddress]:
    try:
        with open("/proc/net/fib_trie", encoding="ascii", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return []
    found, last = [], ""
    for line in lines:
        text = line.strip()
        if text.startswith("|-- "):
            last = text[4:]
        elif text.startswith("/32 host LOCAL") and last:
            ip = _parse_ip(last)
            if ip is not None:
                found.append(ip)
    return found


def _proc_ipv6_addresses() -> list[IPAddress]:
    try:
        with open("/proc/net/if_inet6", encoding="ascii", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                found.append(ipaddress.IPv6Address(int(fields[0], 16)))
            except ValueError:
                continue
    return found


def _routed_addresses(family: socket.AddressFamily, target: str) -> set[IPAddress]:
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            address = probe.getsockname()[0]
    except OSError:
        return set()
    ip = _parse_ip(address.partition("%")[0])
    return {ip} if ip is not None else set()


def allowed_host_address(ip: IPAddress) -> bool:
    """Ollama's address rule: loopback, private, unspecified, or one of this machine's."""
    return _is_loopback(ip) or _is_private(ip) or _is_unspecified(ip) or ip in local_interface_addresses()


def allowed_host_name(host: str) -> bool:
    """Ollama's ``allowedHost``: ``""``, ``localhost``, the host name, ``*.localhost|local|internal``."""
    host = host.lower()
    if host in ("", "localhost"):
        return True
    try:
        if host == socket.gethostname().lower():
            return True
    except OSError:
        pass
    return host.endswith(_LOCAL_SUFFIXES)


is_loopback_bind = is_loopback_host
"""Whether a listen address is loopback, so the host check applies (see ``corral.settings``)."""


# --- the middleware ---------------------------------------------------------------------------


class CorsAndHostGuard:
    """Ollama's CORS handling (gin-contrib/cors) followed by its DNS-rebinding host check.

    ``allowed_origins``: the origin patterns, e.g. ``Settings.allowed_origins`` (OLLAMA_ORIGINS
    then Ollama's defaults); checked by :func:`validate_origins` (``ConfigError`` when bad).
    ``loopback_only``: whether the server listens on a loopback address
    (see :func:`is_loopback_bind`); the host check runs only then.
    """

    def __init__(self, app: ASGIApp, *, allowed_origins: Sequence[str], loopback_only: bool) -> None:
        origins = tuple(allowed_origins)
        validate_origins(origins)
        self.app = app
        self.loopback_only = loopback_only
        self.allow_all = "*" in origins
        self._exact = frozenset(_normalize(origins))
        self._wildcards = _wildcard_rules(origins)
        methods = ",".join(method.upper() for method in _normalize(ALLOW_METHODS))
        headers = ",".join(canonical_header_key(name) for name in _normalize(ALLOW_HEADERS))
        self._preflight: list[tuple[bytes, bytes]] = [
            (b"access-control-allow-headers", headers.encode("latin-1")),
            (b"access-control-allow-methods", methods.encode("latin-1")),
            (b"access-control-max-age", str(MAX_AGE).encode()),
        ]
        if self.allow_all:
            self._preflight.append((b"access-control-allow-origin", b"*"))
        else:
            self._preflight += [
                (b"vary", b"Origin"),
                (b"vary", b"Access-Control-Request-Method"),
                (b"vary", b"Access-Control-Request-Headers"),
            ]

    @classmethod
    def from_settings(cls, app: ASGIApp, settings: Any) -> CorsAndHostGuard:
        """Built from ``corral.settings.Settings``: its origins, and its listen host."""
        return cls(app, allowed_origins=settings.allowed_origins,
                   loopback_only=is_loopback_bind(settings.host.host))

    def origin_allowed(self, origin: str) -> bool:
        """gin-contrib/cors ``validateOrigin`` with AllowWildcard."""
        if self.allow_all or origin in self._exact:
            return True
        for prefix, suffix in self._wildcards:
            if prefix == "*" and origin.endswith(suffix):
                return True
            if suffix == "*" and origin.startswith(prefix):
                return True
            if origin.startswith(prefix) and origin.endswith(suffix):
                return True
        return False

    def host_verdict(self, host_header: str, method: str) -> int | None:
        """The host check for one request: None to let it through, else the status to answer."""
        host = request_host_name(host_header)
        ip = _parse_ip(host)
        if ip is not None and allowed_host_address(ip):
            return None
        if allowed_host_name(host):
            return 204 if method == "OPTIONS" else None
        return 403

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        origin = host = None
        for name, value in scope.get("headers") or ():
            if name == b"origin":
                if origin is None:
                    origin = value.decode("latin-1")
            elif name == b"host":
                if host is None:
                    host = value.decode("latin-1")
        host = host or ""
        method = scope.get("method", "GET") if kind == "http" else "GET"

        extra: list[tuple[bytes, bytes]] = []
        if origin and origin != "http://" + host and origin != "https://" + host:
            if not self.origin_allowed(origin):
                await self._answer(scope, receive, send, 403, _FORBIDDEN)
                return
            if method == "OPTIONS":
                headers = self._preflight
                if not self.allow_all:
                    headers = [*headers, (b"access-control-allow-origin", origin.encode("latin-1"))]
                await self._answer(scope, receive, send, 204, sorted(headers, key=_name))
                return
            if self.allow_all:
                extra = [(b"access-control-allow-origin", b"*")]
            else:
                extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]

        if self.loopback_only:
            status = self.host_verdict(host, method)
            if status == 403:
                await self._answer(scope, receive, send, 403, [*extra, *_FORBIDDEN])
                return
            if status == 204:
                await self._answer(scope, receive, send, 204, extra)
                return

        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] in _START_MESSAGES:
                message = dict(message)
                message["headers"] = _merge_headers(message.get("headers") or [], extra)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send, status: int,
                      headers: list[tuple[bytes, bytes]]) -> None:
        """An empty response with ``status``; for a WebSocket, a refused handshake."""
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        message = await receive()
        if message.get("type") != "websocket.connect":
            return
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": b""})
        else:
            await send({"type": "websocket.close", "code": 1008})


_START_MESSAGES = frozenset({"http.response.start", "websocket.accept", "websocket.http.response.start"})


def _name(header: tuple[bytes, bytes]) -> bytes:
    return header[0]


def _merge_headers(headers: Iterable[Any], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's headers plus ours; the app's own value wins, and a Vary it has is not repeated."""
    merged = [(bytes(name), bytes(value)) for name, value in headers]
    present = {name.lower() for name, _ in merged}
    varies = {
        token.strip().lower()
        for name, value in merged if name.lower() == b"vary"
        for token in value.split(b",")
    }
    for name, value in extra:
        if name == b"vary":
            if value.lower() not in varies and b"*" not in varies:
                merged.append((name, value))
        elif name not in present:
            merged.append((name, value))
    return merged
