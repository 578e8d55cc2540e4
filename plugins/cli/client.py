"""A small synchronous client of the server's HTTP API, for the CLI's model commands.

It connects to ``settings.host.url`` (OLLAMA_HOST) and, like Ollama's CLI, first checks that a
server answers there (``HEAD /``). When nothing answers at a local address it starts
``corral serve`` in the background and waits for it, so models stay loaded between commands;
at a non-local address it never starts anything and fails with a clear message.

Errors become :class:`corral.errors.CorralError` with the server's own message, which ``main()``
prints as ``Error: ...`` with exit code 1. httpx is imported only when a request is made:
``corral --help`` must not import it.
"""

from __future__ import annotations

import ipaddress
import json
import os
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
                 environ: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.local = local
        self.overrides = dict(overrides or {})
        self.environ = dict(os.environ if environ is None else environ)
        self._http: Any = None

    @classmethod
    def for_state(cls, state: Any) -> Client:
        """The client for a CLI invocation: OLLAMA_HOST, the config file and ``--set`` overrides."""
        from corral import Settings

        settings = Settings.load(overrides=state.overrides)
        host = settings.host
        return cls(host.url, local=host.scheme == "http" and is_local_host(host.host),
                   overrides=state.overrides, environ=settings.environ)

    # HTTP

    def _client(self) -> Any:
        if self._http is None:
            try:
                import httpx
            except ImportError:
                raise CorralError("the command line needs httpx: pip install httpx") from None
            # Like Go's http client, never send loopback traffic through a proxy.
            self._http = httpx.Client(
                base_url=self.url,
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
                trust_env=not self.local,
                headers={"User-Agent": f"corral/{_version()} ({sys.platform}) Python/{sys.version.split()[0]}"},
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
            return client.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise ConnectionFailed(self._unreachable(error)) from None
        except httpx.TransportError as error:
            raise CorralError(f"lost the connection to the server at {self.url}: {failure_reason(error)}") from None

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
            raise ConnectionFailed(self._unreachable(error)) from None
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

    def _unreachable(self, error: Exception) -> str:
        return (f"could not connect to corral server at {self.url} ({failure_reason(error)}), "
                f"run 'corral serve' to start it")

    def _start_server(self) -> None:
        log = log_path(self.environ)
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-c", "from corral.plugins.cli import main; main()"]
        for key, value in self.overrides.items():
            command += ["--set", f"{key}={value}"]
        command.append("serve")
        with open(log, "ab") as output:
            output.write(f"\n--- {datetime.now().astimezone().isoformat(timespec='seconds')} "
                         f"started by '{' '.join(_argv())}' for {self.url}\n".encode())
            output.flush()
            process = subprocess.Popen(
                command, env=self.environ, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
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
