"""A small synchronous client of the server's HTTP API, for the CLI's model commands.

It connects to ``settings.host.url`` (OLLAMA_HOST) and, like Ollama's CLI, first checks that a
server answers there (``HEAD /``). When nothing answers at a local address it starts
``corral serve`` in the background and waits for it, so models stay loaded between commands;
at a non-local address it never starts anything and fails with a clear message.

Every request carries ``Authorization: Bearer <key>`` when a key is set (``CORRAL_API_KEY``, or
``client.api_key``, or for a server on this machine the first plain ``server.api_keys``). Over ``https://`` it trusts the
system's certificates plus those in ``SSL_CERT_FILE`` (or ``SSL_CERT_DIR``).

Errors become :class:`corral.errors.CorralError` with the server's own message, which ``main()``
prints as ``Error: ...`` with exit code 1. httpx is imported only when a request is made:
``corral --help`` must not import it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from corral import CorralError
from corral.sdk.transport import failure_reason

START_TIMEOUT = 30.0
"""Seconds to wait for an autostarted server to answer."""

CONNECT_TIMEOUT = 10.0

_started: list[subprocess.Popen[bytes]] = []
"""Servers this process started; kept referenced so that no warning fires when it exits."""


class ServerError(CorralError):
    """An error answer from the server: ``{"error": message}`` and its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ConnectionFailed(CorralError):
    """No server could be reached."""


def is_local_host(host: str) -> bool:
    """Ollama's ``isLocalhost``: ``localhost`` or a loopback or unspecified address (or empty,
    which means every interface of this machine)."""
    if host in ("", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def log_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where an autostarted server writes its output: ``~/.corral/logs/server.log``."""
    environ = os.environ if environ is None else environ
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".corral" / "logs" / "server.log"


def _message(response: Any) -> str:
    """The error message of an error response, as Ollama's client takes it: the ``error`` field
    of a JSON body, else the body text, else the status line."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]:
        return body["error"]
    return text or f"{response.status_code} {response.reason_phrase}".strip()


class Client:
    """One server, reached at ``url``. Use :meth:`for_state` in commands."""

    def __init__(self, url: str, *, local: bool, overrides: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None, api_key: str = "") -> None:
        self.url = url.rstrip("/")
        self.local = local
        self.overrides = dict(overrides or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.api_key = api_key
        self._http: Any = None

    @classmethod
    def for_state(cls, state: Any) -> Client:
        """The client for a CLI invocation: OLLAMA_HOST, the config file and ``--set`` overrides.

        A server at a local address may be started by the command: one at ``http://``, or at
        ``https://`` when the settings give it a certificate (``server.tls_cert``).
        """
        from corral import Settings

        settings = Settings.load(overrides=state.overrides)
        host = settings.host
        local = is_local_host(host.host)
        key = settings.client_api_key
        if not key and local:
            # The server on this machine, set up by the same config file: its first plain full key.
            # (Never sent elsewhere: another server's keys are its own.)
            key = next((entry for entry in settings.api_keys if not entry.startswith("sha256:")), "")
        startable = host.scheme == "http" or settings.tls_cert is not None
        return cls(host.url, local=startable and local, overrides=state.overrides, environ=settings.environ,
                   api_key=key)

    # HTTP

    def _client(self) -> Any:
        if self._http is None:
            try:
                import httpx
            except ImportError:
                raise CorralError("the command line needs httpx: pip install httpx") from None
            headers = {"User-Agent": f"corral/{_version()} ({sys.platform}) Python/{sys.version.split()[0]}"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            # Like Go's http client, never send loopback traffic through a proxy.
            self._http = httpx.Client(
                base_url=self.url,
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
                trust_env=not self.local,
                verify=trusted_certificates(self.environ) if self.url.startswith("https:") else True,
                headers=headers,
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, body: Any = None, *, stream: bool = False) -> Any:
        client = self._client()
        import httpx

        headers = {"Accept": "application/x-ndjson" if stream else "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            request = client.build_request(method, path, content=content, headers=headers)
            response = client.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise self._connect_failure(error) from None
        except httpx.TransportError as error:
            raise CorralError(f"lost the connection to the server at {self.url}: {failure_reason(error)}") from None
        if response.status_code == 401:
            response.read()
            response.close()
            hint = ("the key comes from CORRAL_API_KEY or client.api_key" if self.api_key
                    else f"set CORRAL_API_KEY to a key of the server at {self.url}")
            raise ServerError(f"{_message(response)}; {hint}", 401)
        return response

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; the decoded JSON answer, or None for an empty body."""
        response = self._send(method, path, body)
        if response.status_code >= 400:
            raise ServerError(_message(response), response.status_code)
        text = response.text
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise CorralError(f"the server at {self.url} sent something that is not JSON for {path}") from None

    def stream(self, method: str, path: str, body: Any = None) -> Iterator[dict[str, Any]]:
        """A streamed request: each NDJSON object; an ``{"error": ...}`` line raises."""
        response = self._send(method, path, body, stream=True)
        import httpx

        try:
            if response.status_code >= 400:
                response.read()
                raise ServerError(_message(response), response.status_code)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    raise CorralError(line.strip()) from None
                if isinstance(item, dict) and item.get("error"):
                    raise ServerError(str(item["error"]), response.status_code)
                yield item
        except httpx.TransportError as error:
            raise CorralError(f"lost the connection to the server at {self.url}: {failure_reason(error)}") from None
        finally:
            response.close()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def has_blob(self, digest: str) -> bool:
        """``HEAD /api/blobs/<digest>``: whether the server already holds the blob."""
        response = self._send("HEAD", f"/api/blobs/{digest}")
        if response.status_code >= 400 and response.status_code != 404:
            raise ServerError(f"{response.status_code} {response.reason_phrase}", response.status_code)
        return response.status_code < 400

    def upload_blob(self, digest: str, chunks: Iterator[bytes]) -> None:
        """``POST /api/blobs/<digest>`` with the streamed bytes."""
        import httpx

        try:
            response = self._client().post(f"/api/blobs/{digest}", content=chunks)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise self._connect_failure(error) from None
        except httpx.TransportError as error:
            raise CorralError(f"lost the connection to the server at {self.url}: {failure_reason(error)}") from None
        if response.status_code >= 400:
            raise ServerError(_message(response), response.status_code)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str, body: Any) -> Any:
        return self.request("DELETE", path, body)

    # The server's presence

    def heartbeat(self) -> None:
        """``HEAD /``: returns when a server answers; ConnectionFailed when nothing does."""
        response = self._send("HEAD", "/")
        if response.status_code >= 400:
            raise ServerError(f"the server at {self.url} answered {response.status_code} "
                              f"{response.reason_phrase} to HEAD / (is it a corral or Ollama server?)",
                              response.status_code)

    def ensure_server(self) -> None:
        """Make sure a server answers at the URL, starting ``corral serve`` when it is local."""
        try:
            self.heartbeat()
            return
        except ConnectionFailed:
            if not self.local:
                raise
        self._start_server()

    def _connect_failure(self, error: Exception) -> CorralError:
        """ConnectionFailed when nothing answers; a plain error when a server answered but its
        certificate is not trusted (starting another server would not help)."""
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return CorralError(f"the server at {self.url} presented a certificate this machine does not trust "
                               f"({cause.verify_message}): set SSL_CERT_FILE to the certificate of the "
                               "authority that signed it")
        if isinstance(cause, ssl.SSLError):
            return CorralError(f"TLS with the server at {self.url} failed ({cause.reason or cause}); "
                               "is it serving HTTPS?")
        return ConnectionFailed(f"could not connect to corral server at {self.url} ({failure_reason(error)}), "
                                f"run 'corral serve' to start it")

    def _start_server(self) -> None:
        log = log_path(self.environ)
        log.parent.mkdir(parents=True, exist_ok=True)
        from corral import Settings

        command = [sys.executable, "-c", "from corral.plugins.cli import main; main()"]
        environ = dict(self.environ)
        for key, value in self.overrides.items():
            variable = Settings.env_of(key)
            if Settings.is_secret(key) and variable:
                environ[variable] = value  # keys stay out of the process list (ps shows every argument)
            else:
                command += ["--set", f"{key}={value}"]
        command.append("serve")
        with open(log, "ab") as output:
            output.write(f"\n--- {datetime.now().astimezone().isoformat(timespec='seconds')} "
                         f"started by '{' '.join(_argv())}' for {self.url}\n".encode())
            output.flush()
            process = subprocess.Popen(
                command, env=environ, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True, close_fds=True,
            )
        _started.append(process)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.heartbeat()
                break
            except ConnectionFailed:
                pass
            code = process.poll()
            if code is not None:
                raise CorralError(f"corral serve exited with code {code} before answering at {self.url}"
                                  f"{_last_line(log)}; see {log}")
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise CorralError(f"corral serve did not answer at {self.url} within {START_TIMEOUT:.0f}s"
                                  f"{_last_line(log)}; see {log}")
            time.sleep(0.1)
        print(f"Started corral server at {self.url} (pid {process.pid}, log {log})", file=sys.stderr)


def trusted_certificates(environ: Mapping[str, str]) -> ssl.SSLContext:
    """A TLS context trusting the system's certificates plus SSL_CERT_FILE and SSL_CERT_DIR.

    (OpenSSL alone uses SSL_CERT_FILE instead of the system's certificates, not beside them.)
    """
    context = ssl.create_default_context()
    defaults = ssl.get_default_verify_paths()
    for name, cafile, capath in (("", defaults.openssl_cafile, defaults.openssl_capath),
                                 ("SSL_CERT_FILE", environ.get("SSL_CERT_FILE"), None),
                                 ("SSL_CERT_DIR", None, environ.get("SSL_CERT_DIR"))):
        try:
            if cafile and (name or os.path.isfile(cafile)):
                context.load_verify_locations(cafile=cafile)
            if capath and (name or os.path.isdir(capath)):
                context.load_verify_locations(capath=capath)
        except (OSError, ssl.SSLError) as error:
            raise CorralError(f"{name}={cafile or capath}: cannot load certificates: "
                              f"{getattr(error, 'strerror', None) or error}") from None
    return context


def _argv() -> list[str]:
    return ["corral", *sys.argv[1:]]


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 65536))
            lines = [line for line in file.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f" (last log line: {lines[-1].strip()})" if lines and not lines[-1].startswith("--- ") else ""


def _version() -> str:
    from corral import __version__

    return __version__
