"""The registry v2 protocol as Ollama's client speaks it (server/images.go, server/auth.go).

Synchronous httpx: transfers run in worker threads, one per byte range, which is how Python keeps
up with a fast link. Every request carries the token once one is obtained; a 401 answers with a
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge, and the token comes from
the realm (which must be on the registry's own host, as Ollama insists). corral asks anonymously:
it has no Ollama account key to sign with, so private models need a registry that grants them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import attrs
import httpx

from corral import MEDIA_TYPE_MANIFEST, CorralError, InvalidRequest, ModelNotFound, ModelRef, PullError, __version__
from corral.sdk import outbound
from corral.sdk.transport import failure_reason

log = logging.getLogger("corral.registry")

T = TypeVar("T")

MANIFEST_LIMIT = 4 * 1024 * 1024
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(PullError):
    """The registry answered with an error status (``"<code>: <body>"``, as Ollama words it)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = status

    @property
    def retryable(self) -> bool:
        return self.http_status is None or self.http_status >= 500 or self.http_status in (408, 429)


class NotInRegistry(ModelNotFound):
    """A 404 from the registry: Go's os.ErrNotExist, "file does not exist"."""

    def __init__(self, what: str) -> None:
        super().__init__(what, f"{what}: file does not exist")


class Cancelled(Exception):
    """The transfer was cancelled (its request went away); not an error anyone sees."""


@attrs.frozen(kw_only=True)
class TransferSettings:
    """How hard to try. From the ``registry.*`` settings."""

    stall_timeout: float = 30.0
    retries: int = 6
    backoff: float = 1.0
    min_part_size: int = 100_000_000
    max_part_size: int = 1_000_000_000
    max_parts: int = 16
    connect_timeout: float = 30.0
    policy: outbound.Policy = outbound.Policy()


def http_client(settings: TransferSettings) -> httpx.Client:
    """The client registries share: no redirects followed (a blob GET's redirect is read, not
    followed), a read timeout that is the stall timeout, room for every part of a blob."""
    connections = settings.max_parts * 2 + 4
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    policy = settings.policy
    # Proxies from the environment apply, except to this machine (as Go's ProxyFromEnvironment).
    direct = {f"all://{host}": outbound.transport(policy, limits=limits) for host in ("127.0.0.1", "localhost", "[::1]")}
    return httpx.Client(
        timeout=httpx.Timeout(settings.stall_timeout, connect=settings.connect_timeout),
        follow_redirects=False, headers={"User-Agent": user_agent()}, mounts=direct,
        transport=outbound.transport(policy, limits=limits),
    )


def user_agent() -> str:
    return f"ollama/{__version__} (corral; {sys.platform}) Python/{sys.version.split()[0]}"


def parse_challenge(header: str) -> dict[str, str]:
    """``Bearer realm="...",service="...",scope="..."`` -> its values (Ollama scans key="value")."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    return {key.lower(): value for key, value in _CHALLENGE.findall(rest)}


class Registry:
    """One registry and one repository, as a model reference names them."""

    def __init__(self, ref: ModelRef, *, insecure: bool, settings: TransferSettings, http: httpx.Client,
                 tokens: dict[str, str], cancel: threading.Event | None = None) -> None:
        if ref.scheme == "http" and not insecure:
            raise InvalidRequest("insecure protocol http")
        outbound.check_host(ref.host, ref.display)
        scheme = "http" if insecure else ref.scheme
        self.ref = ref
        self.base = f"{scheme}://{ref.host}"
        self.host = urlsplit(self.base).netloc
        self.settings = settings
        self.cancel = cancel or threading.Event()
        self.http = http
        self._tokens = tokens  # shared by the registries of one source: base/repository -> token
        self._token_key = f"{self.base}/{ref.repository}"
        self._token_lock = threading.Lock()

    @property
    def token(self) -> str | None:
        return self._tokens.get(self._token_key)

    @token.setter
    def token(self, value: str) -> None:
        self._tokens[self._token_key] = value

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.ref.repository}/{path}"

    def _headers(self, url: str, headers: dict[str, str] | None) -> dict[str, str]:
        headers = dict(headers or {})
        if self.token and urlsplit(url).netloc == self.host:  # never hand the token to another host
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    # -- one request, with the token dance ---------------------------------------------------

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None, content: Any = None,
             stream: bool = False, what: str = "") -> httpx.Response:
        """One request: a 401 fetches a token and tries once more; 404 is NotInRegistry; any other
        status >= 400 a RegistryError. ``content`` may be a callable returning a fresh body."""
        for _attempt in range(2):
            body = content() if callable(content) else content
            request = self.http.build_request(method, url, headers=self._headers(url, headers), content=body)
            response = self.http.send(request, stream=stream)
            if response.status_code == 401:
                challenge = response.headers.get("www-authenticate", "")
                response.close()
                self._authorize(challenge)
                continue
            if response.status_code == 404:
                response.close()
                raise NotInRegistry(what or f"{method} {url}")
            if response.status_code >= 400:
                body_text = outbound.error_summary(response)
                raise RegistryError(f"{what + ': ' if what else ''}{response.status_code}: {body_text}",
                                    response.status_code)
            return response
        raise RegistryError(f"{what + ': ' if what else ''}unauthorized: access denied", 401)

    def _authorize(self, header: str) -> None:
        challenge = parse_challenge(header)
        realm = challenge.get("realm")
        if not realm:
            raise RegistryError("unauthorized: the registry asked for credentials without a Bearer realm", 401)
        split = urlsplit(realm)
        if split.netloc != self.host:
            raise RegistryError(f'realm host "{split.netloc}" does not match original host "{self.host}"', 401)
        query = [("service", challenge.get("service", ""))]
        query += [("scope", scope) for scope in challenge.get("scope", "").split(" ") if scope]
        query += [("ts", str(int(time.time()))),
                  ("nonce", base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))]
        url = realm + ("&" if split.query else "?") + urlencode(query)
        with self._token_lock:
            try:
                response = self.http.send(self.http.build_request("GET", url), stream=True)
                if response.status_code >= 400:
                    raise RegistryError(f"{response.status_code}: {outbound.error_summary(response)}",
                                        response.status_code)
                answer = outbound.json_bounded(response, self.settings.policy.max_metadata_bytes,
                                               "the registry's token service")
            except httpx.TransportError as error:
                raise RegistryError(f"getting a registry token: {failure_reason(error)}") from None
            except ValueError:
                answer = None
            token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise RegistryError("the registry's token service sent no token")
            self.token = token

    # -- retries -----------------------------------------------------------------------------

    def retrying(self, what: str, attempt: Callable[[], T], *, progress: Callable[[], int] | None = None,
                 retries: int | None = None) -> T:
        """Run ``attempt`` until it succeeds; transport errors, stalls and 5xx are retried with
        backoff (1, 2, 4 ... times ``backoff`` seconds), ``retries`` times in a row (an attempt that
        moved ``progress`` forward starts the count again); other errors fail at once."""
        failures = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            before = progress() if progress is not None else 0
            try:
                return attempt()
            except (httpx.TransportError, RegistryError, Retry) as error:
                if isinstance(error, RegistryError) and not error.retryable:
                    raise
                if isinstance(error, httpx.TransportError) and outbound.hopeless(error):
                    raise PullError(f"{what}: {failure_reason(error)}") from None
                if progress is not None and progress() > before:
                    failures = 0
                failures += 1
                text = error.message if isinstance(error, CorralError) else failure_reason(error)
                limit = self.settings.retries if retries is None else retries
                if failures > limit:
                    raise PullError(f"{what}: max retries exceeded: {text}") from None
                delay = self.settings.backoff * 2 ** (failures - 1)
                log.info("%s failed (%s); retry %d of %d in %.1fs", what, text, failures, limit, delay)
                if self.cancel.wait(delay):
                    raise Cancelled() from None

    # -- the protocol ------------------------------------------------------------------------

    def manifest(self) -> bytes:
        """The manifest bytes for the reference's tag (or digest), verbatim."""
        reference = self.ref.digest or self.ref.tag

        def fetch() -> bytes:
            response = self.send("GET", self.url(f"manifests/{reference}"), headers={"Accept": MEDIA_TYPE_MANIFEST},
                                 stream=True, what="pull model manifest")
            try:
                body = outbound.read_bounded(response, MANIFEST_LIMIT, "pull model manifest")
            except outbound.BodyTooLarge:
                raise PullError(f"pull model manifest: the registry sent more than {MANIFEST_LIMIT} bytes") from None
            if self.ref.digest and "sha256:" + hashlib.sha256(body).hexdigest() != self.ref.digest:
                raise PullError(f"pull model manifest: the registry's manifest is not {self.ref.digest}")
            return bytes(body)

        try:
            return self.retrying("pull model manifest", fetch, retries=min(2, self.settings.retries))
        except httpx.TransportError as error:  # pragma: no cover - retrying wraps these
            raise PullError(f"pull model manifest: {failure_reason(error)}") from None

    def blob_location(self, digest: str) -> str:
        """Where the blob's bytes are: the registry answers a blob GET with a redirect to its CDN
        (Ollama takes the Location and fetches ranges from there without the token)."""
        url = self.url(f"blobs/{digest}")

        def resolve() -> str:
            current = url
            for _hop in range(10):
                response = self.send("GET", current, stream=True, what=f"pull blob {digest[7:19]}")
                response.close()
                if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("location"):
                    target = urljoin(current, response.headers["location"])
                    outbound.check_redirect(current, target)
                    if urlsplit(target).netloc != self.host:
                        return target
                    current = target
                    continue
                return current
            raise RegistryError("maximum redirects exceeded (10) for the blob's URL")

        return self.retrying(f"pull blob {digest[7:19]}", resolve)

    def has_blob(self, digest: str) -> bool:
        def head() -> bool:
            try:
                self.send("HEAD", self.url(f"blobs/{digest}"), what=f"check blob {digest[7:19]}").close()
                return True
            except NotInRegistry:
                return False

        return self.retrying(f"check blob {digest[7:19]}", head)

    def put_manifest(self, tag: str, raw: bytes) -> None:
        self.retrying("push manifest", lambda: self.send(
            "PUT", self.url(f"manifests/{tag}"), headers={"Content-Type": MEDIA_TYPE_MANIFEST}, content=raw,
            what="push manifest").close())


class Retry(Exception):
    """A failed attempt worth repeating (a stall, a short read, a dropped connection)."""
