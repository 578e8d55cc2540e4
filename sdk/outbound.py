"""What the server fetches on a user's behalf, and how far it trusts the answers: the outbound
policy every model source shares (docs/security.md, "Outbound policy").

- Where connections may go: never to a link-local address (169.254.0.0/16, fe80::/10: cloud
  metadata services live there), and with ``sources.block_private_addresses`` to no address that
  is not global (loopback, private, unique-local, shared, reserved). Checked on the addresses a
  name resolves to, at connect time, so every redirect and every reconnect is checked again and
  a name cannot resolve one way for the check and another for the connection.
- Which redirects are followed: to http(s) URLs only, and never from https back to plain http.
- How much of an answer that is not model data is read (listings, tokens, error bodies): at most
  ``sources.max_metadata_bytes`` after decompression; and a remote's words reach a client only as
  a short, cleaned summary.

The settings are declared by the bundled ``outbound`` plugin. httpx is imported only by the
functions that need it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import attrs

from corral import InvalidRequest, PullError

ERROR_BODY_LIMIT = 64 * 1024
"""The most of an error answer read (its summary is what a client sees)."""
SUMMARY_LENGTH = 200
_METADATA_SERVICES = (ipaddress.ip_address("fd00:ec2::254"),)  # AWS's metadata service over IPv6 (not link-local)
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")  # terminal escape sequences
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]+")


@attrs.frozen(kw_only=True)
class Policy:
    """The outbound policy of one kernel (its ``sources.*`` settings)."""

    block_private: bool = False
    max_metadata_bytes: int = 16 * 1024 * 1024

    @classmethod
    def of(cls, kernel: Any) -> Policy:
        plugin = kernel.settings.plugin
        return cls(block_private=plugin.get("sources.block_private_addresses", False),
                   max_metadata_bytes=plugin.get("sources.max_metadata_bytes", cls.max_metadata_bytes))


class AddressRefused(InvalidRequest):
    """A connection the outbound policy forbids (HTTP 400: the name or redirect came from a user
    or a remote, never from the server's own configuration)."""


class RedirectRefused(InvalidRequest):
    """A redirect to a scheme other than http(s), or from https down to http."""


class BodyTooLarge(PullError):
    """A remote answer larger than the limit for its kind."""


# -- where connections may go --------------------------------------------------------------------


def refusal(address: str, *, block_private: bool) -> str | None:
    """Why a connection to ``address`` (an IP literal) is refused, or None."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip in _METADATA_SERVICES:
        return "a link-local address (cloud metadata services live there)"
    if not block_private or ip.is_global:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if ip.is_private:
        return "a private address"
    return "not a global address"


def check_host(netloc: str, name: str) -> None:
    """A 400 for a host (``host[:port]`` from a model name) no connection can be made to: a port
    out of range, a label that is empty or too long for DNS."""
    host, port = netloc, None
    if not netloc.startswith("[") and netloc.count(":") == 1:
        host, _, port = netloc.partition(":")
    elif netloc.startswith("[") and "]:" in netloc:
        host, _, port = netloc.rpartition(":")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise InvalidRequest(f'invalid model name "{name}": port {summary(port, 20)!r} is not 1-65535')
    if not host.startswith("["):
        try:
            host.encode("idna")
        except UnicodeError:
            raise InvalidRequest(f'invalid model name "{name}": "{summary(host, 80)}" is not a valid host name') from None


def check_address(host: str, address: str, *, block_private: bool) -> None:
    why = refusal(address, block_private=block_private)
    if why is not None:
        shown = host if host == address else f"{host} ({address})"
        hint = "; sources.block_private_addresses is on" if block_private and "link-local" not in why else ""
        raise AddressRefused(f"refusing to connect to {shown}: {why}{hint}")


def guarded_backend(base: type, policy: Policy) -> Any:
    """A network backend (httpcore's SyncBackend or a fork's) that resolves the host itself,
    checks every address it resolves to, and connects to a checked address."""

    class GuardedBackend(base):  # type: ignore[misc, valid-type]
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                return super().connect_tcp(host, port, timeout, local_address, socket_options)  # its own error
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
            for address in addresses:
                check_address(host, address, block_private=policy.block_private)
            failure: BaseException | None = None
            for address in addresses:
                try:
                    return super().connect_tcp(address, port, timeout, local_address, socket_options)
                except Exception as error:  # the next address, as create_connection would
                    failure = error
            assert failure is not None
            raise failure

    return GuardedBackend()


def guard_transport(transport: Any, policy: Policy) -> Any:
    """Make an httpx (or httpx2) HTTPTransport connect through :func:`guarded_backend`. A
    transport through a proxy is left alone: the proxy resolves names, not corral."""
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version's transport cannot take a network backend")
    if type(pool).__name__ != "ConnectionPool":
        return transport
    pool._network_backend = guarded_backend(type(pool._network_backend), policy)
    return transport


def transport(policy: Policy, **options: Any) -> Any:
    import httpx

    return guard_transport(httpx.HTTPTransport(**options), policy)


def hub_transport(module: Any, policy: Policy, *, credentials_host: str, bounded: Any) -> Any:
    """A transport for a client a library drives (huggingface-hub's httpx2 client), enforcing the
    policy whatever the library does: guarded connections, plain (uncompressed) answers, answers
    for which ``bounded(request)`` is true (listings) and redirect bodies capped at
    ``policy.max_metadata_bytes``, and no Authorization header to any host but ``credentials_host``."""
    inner = guard_transport(module.HTTPTransport(), policy)
    limit = policy.max_metadata_bytes

    class Capped(module.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, stream: Any, what: str) -> None:
            self.stream, self.what = stream, what

        def __iter__(self) -> Iterator[bytes]:
            seen = 0
            for chunk in self.stream:
                seen += len(chunk)
                if seen > limit:
                    raise BodyTooLarge(f"{self.what}: the answer is larger than {limit} bytes")
                yield chunk

        def close(self) -> None:
            self.stream.close()

    class HubTransport(module.BaseTransport):  # type: ignore[misc, name-defined]
        def handle_request(self, request: Any) -> Any:
            if (request.url.host or "").lower() != credentials_host.lower():
                request.headers.pop("Authorization", None)
                request.headers.pop("Cookie", None)
            request.headers["Accept-Encoding"] = "identity"
            response = inner.handle_request(request)
            encoding = response.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                response.close()
                raise BodyTooLarge(f"{request.url.host} sent a {summary(encoding, 40)}-encoded answer "
                                   "where a plain one was asked for")
            if bounded(request) or 300 <= response.status_code < 400:
                response.stream = Capped(response.stream, f"{request.url.host}{request.url.path}")
            return response

        def close(self) -> None:
            inner.close()

    return HubTransport()


# -- which redirects are followed ----------------------------------------------------------------


def check_redirect(current: str, target: str) -> None:
    """Raise RedirectRefused unless following ``current`` -> ``target`` is allowed."""
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise RedirectRefused(f"refusing a redirect to a {scheme or 'relative'}: URL (only http and https are followed)")
    if urlsplit(current).scheme.lower() == "https" and scheme == "http":
        raise RedirectRefused(f"refusing a redirect from https down to plain http ({summary(target, 100)})")


def hopeless(error: BaseException) -> bool:
    """A transport failure no retry can mend: a name that does not resolve, a scheme the client
    cannot speak, a URL it cannot parse."""
    if type(error).__name__ in ("UnsupportedProtocol", "InvalidURL"):
        return True
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def redirect_hook(response: Any) -> None:
    """An httpx response event hook: check a redirect before the client follows it."""
    if response.has_redirect_location:
        target = response.url.join(response.headers["location"])
        check_redirect(str(response.url), str(target))


# -- how much of an answer is read ---------------------------------------------------------------


def read_bounded(response: Any, limit: int, what: str, *, truncate: bool = False) -> bytes:
    """The body of a streamed httpx response, decompressed here with at most ``limit`` bytes of
    output (a gzip bomb stops at the limit instead of filling memory); beyond it, BodyTooLarge,
    or with ``truncate`` the first ``limit`` bytes."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    body = bytearray()
    try:
        for piece in _decoded(response.iter_raw(), encoding, limit + 1):
            body += piece
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                raise BodyTooLarge(f"{what}: the answer is larger than {limit} bytes")
    finally:
        response.close()
    return bytes(body)


def _decoded(raw: Iterator[bytes], encoding: str, limit: int) -> Iterator[bytes]:
    if encoding in ("", "identity"):
        yield from raw
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyTooLarge(f"unsupported content encoding {summary(encoding, 40)!r}")
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, told apart by the header
    produced = 0
    for chunk in raw:
        data = chunk
        while data and produced < limit:
            try:
                out = decoder.decompress(data, limit - produced)
            except zlib.error as error:
                raise BodyTooLarge(f"the answer does not decompress: {error}") from None
            produced += len(out)
            yield out
            data = decoder.unconsumed_tail
        if produced >= limit:
            return


def json_bounded(response: Any, limit: int, what: str) -> Any:
    return json.loads(read_bounded(response, limit, what))


def error_summary(response: Any) -> str:
    """What an error answer says, short and clean: its JSON error message when it has one."""
    try:
        raw = read_bounded(response, ERROR_BODY_LIMIT, "error", truncate=True)
    except Exception:  # an error answer that cannot even be read says no more than its status
        raw = b""
    text = raw.decode("utf-8", "replace")
    try:
        text = _error_message(json.loads(text)) or text
    except ValueError:
        pass
    return summary(text) or response.reason_phrase


def _error_message(data: Any) -> str | None:
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            found = [str(error.get("message") or error.get("code") or "") for error in errors[:3]]
            return "; ".join(part for part in found if part) or None
        for key in ("error", "message", "Message", "detail"):
            if isinstance(data.get(key), str):
                return data[key]
    return None


def summary(text: str, length: int = SUMMARY_LENGTH) -> str:
    """A remote's words as a client may see them: control characters out (no forged lines or
    terminal escapes), whitespace collapsed, at most ``length`` characters."""
    text = " ".join(_CONTROL.sub(" ", _ESCAPE.sub("", text)).split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"
