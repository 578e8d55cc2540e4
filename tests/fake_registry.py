"""A registry v2 server for tests, speaking the protocol Ollama's client expects, on two ports.

The registry port answers ``/v2/...`` behind a bearer-token challenge (``WWW-Authenticate: Bearer
realm=.../token,service=...,scope=repository:<repo>:pull``); a blob GET is a 307 redirect to the
"CDN" port, which serves bytes with ``Range``/206 and no token. Uploads follow the distribution
spec (POST an upload session, PATCH with Content-Range, PUT ``?digest=``; cross-repository mounts).

It misbehaves on demand, once per queued fault, on the next CDN blob GET: ``drop`` the connection
after some bytes, send ``corrupt`` bytes, answer ``500``, or ``stall`` for a while. It counts every
byte the CDN sends, per digest, and logs every request. Other knobs make it hostile for good: a
gzip ``bomb`` as the answer to the manifest, the token or an error, blob redirects to any URL, a
``throttle`` on the CDN's bytes per second, and ``lie`` about a blob's size.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_REPO = r"(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@functools.cache
def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzipped (about a thousandth of that), made without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


@attrs.define(kw_only=True)
class Fault:
    """One misbehaviour, used by the next CDN GET of ``digest`` (any blob when None)."""

    kind: str  # "drop", "corrupt", "500", "stall"
    after: int = 0  # bytes sent before it happens (drop, stall, corrupt)
    seconds: float = 0.0  # how long a stall lasts
    then_drop: bool = False  # a stall that ends with the connection dropped
    digest: str | None = None


@attrs.define(eq=False)
class FakeRegistry:
    root: Path
    manifests: dict[tuple[str, str], bytes] = attrs.field(factory=dict)
    faults: list[Fault] = attrs.field(factory=list)
    served: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))
    """digest -> bytes the CDN sent"""
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    tokens: set[str] = attrs.field(factory=set)
    require_token: bool = True
    ignore_ranges: bool = False
    """answer ranged blob requests with the whole blob (200), as some plain HTTP servers do"""
    uploads: dict[str, bytearray] = attrs.field(factory=dict)
    bomb: str | None = None
    """"manifest", "token" or "error" (the manifest GET answers 400): that answer is a gzip bomb"""
    bomb_size: int = 256 * 1024 * 1024
    error_text: str | None = None
    """when set, the manifest GET answers 400 with this body"""
    redirect_to: str | None = None
    """where blob GETs are redirected instead of the CDN (``{cdn}`` is the CDN's address)"""
    throttle: float | None = None
    """bytes per second each CDN response sends at most"""
    lie: dict[str, int] = attrs.field(factory=dict)
    """digest -> the total size the CDN claims in Content-Range"""
    tls: object | None = None
    """an ``ssl.SSLContext``: the registry port speaks https (the CDN stays plain http)"""
    port: int = 0
    cdn_port: int = 0
    _servers: list[ThreadingHTTPServer] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    # -- content ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_file(self, digest: str) -> Path:
        assert _DIGEST.fullmatch(digest), digest
        return self.root / digest.replace(":", "-")

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.root.mkdir(parents=True, exist_ok=True)
        self.blob_file(digest).write_bytes(data)
        return digest

    def add_blob_file(self, path: Path) -> str:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                hasher.update(chunk)
        digest = "sha256:" + hasher.hexdigest()
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.blob_file(digest)
        if not target.exists():
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        return digest

    def publish_store(self, store: Path, parts: tuple[str, str, str, str], repo: str, tag: str) -> bytes:
        """Publish a model from an Ollama store folder: its manifest bytes and blobs."""
        raw = store.joinpath("manifests", *parts).read_bytes()
        manifest = json.loads(raw)
        for layer in [manifest["config"], *manifest["layers"]]:
            self.add_blob_file(store / "blobs" / layer["digest"].replace(":", "-"))
        self.manifests[(repo, tag)] = raw
        return raw

    def bytes_served(self) -> int:
        return sum(self.served.values())

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> FakeRegistry:
        registry = self
        self.root.mkdir(parents=True, exist_ok=True)

        class Registry(_Handler):
            fake = registry
            cdn = False

        class Cdn(_Handler):
            fake = registry
            cdn = True

        for handler, attr in ((Registry, "port"), (Cdn, "cdn_port")):
            server = ThreadingHTTPServer(("127.0.0.1", getattr(self, attr)), handler)
            if self.tls is not None and attr == "port":
                server.socket = self.tls.wrap_socket(server.socket, server_side=True)  # type: ignore[attr-defined]
            server.daemon_threads = True
            setattr(self, attr, server.server_address[1])
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> FakeRegistry:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def take_fault(self, digest: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.digest in (None, digest):
                    self.faults.remove(fault)
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRegistry
    cdn: bool
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: Any) -> None:
        pass

    # -- helpers ------------------------------------------------------------------------------

    def _log(self) -> None:
        self.fake.requests.append({"method": self.command, "path": self.path, "cdn": self.cdn,
                                   "range": self.headers.get("Range"), "accept": self.headers.get("Accept"),
                                   "authorization": self.headers.get("Authorization")})

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body or "Content-Length" not in (headers or {}):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, json.dumps({"errors": [{"code": code, "message": message}]}).encode())

    def _bomb(self, status: int) -> None:
        self._send(status, gzip_bomb(self.fake.bomb_size), {"Content-Encoding": "gzip"})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self, repo: str, action: str) -> bool:
        if not self.fake.require_token:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and header[7:] in self.fake.tokens:
            return True
        realm = f"{'https' if self.fake.tls else 'http'}://{self.fake.host}/token"
        self._send(401, json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode(),
                   {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake-registry",'
                                        f'scope="repository:{repo}:{action}"'})
        return False

    # -- routes -------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._log()
        self._route()

    def do_GET(self) -> None:
        self._log()
        self._route()

    def do_POST(self) -> None:
        self._log()
        self._route()

    def do_PATCH(self) -> None:
        self._log()
        self._route()

    def do_PUT(self) -> None:
        self._log()
        self._route()

    def _route(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        if self.cdn:
            match = re.fullmatch(r"/blobs/(sha256:[0-9a-f]{64})", path)
            return self._cdn_blob(match.group(1)) if match else self._error(404, "NOT_FOUND", "no such path")
        if path == "/token":
            if self.fake.bomb == "token":
                return self._bomb(200)
            token = uuid.uuid4().hex
            self.fake.tokens.add(token)
            return self._send(200, json.dumps({"token": token}).encode())
        if path == "/v2/":
            return self._send(200, b"{}")
        if match := re.fullmatch(rf"/v2/{_REPO}/manifests/(?P<ref>[A-Za-z0-9_.:-]+)", path):
            return self._manifest(match.group("repo"), match.group("ref"))
        if match := re.fullmatch(rf"/v2/{_REPO}/blobs/(?P<digest>sha256:[0-9a-f]{{64}})", path):
            return self._blob(match.group("repo"), match.group("digest"))
        if match := re.fullmatch(rf"/v2/{_REPO}/blobs/uploads/(?P<id>[0-9a-f]*)", path):
            return self._upload(match.group("repo"), match.group("id"), query)
        return self._error(404, "NOT_FOUND", "no such path")

    def _manifest(self, repo: str, ref: str) -> None:
        action = "push" if self.command == "PUT" else "pull"
        if not self._authorized(repo, action):
            return
        if self.command == "PUT":
            raw = self._body()
            manifest = json.loads(raw)
            for layer in [manifest["config"], *manifest["layers"]]:
                if not self.fake.blob_file(layer["digest"]).exists():
                    return self._error(400, "BLOB_UNKNOWN", f"blob {layer['digest']} unknown")
            self.fake.manifests[(repo, ref)] = raw
            return self._send(201, b"", {"Content-Length": "0"})
        if self.fake.error_text is not None:
            return self._send(400, self.fake.error_text.encode())
        if self.fake.bomb in ("manifest", "error"):
            return self._bomb(200 if self.fake.bomb == "manifest" else 400)
        if MANIFEST_TYPE not in (self.headers.get("Accept") or ""):
            return self._error(406, "MANIFEST_UNKNOWN", "no manifest of an accepted media type")
        raw = self.fake.manifests.get((repo, ref))
        if raw is None:
            return self._error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo}:{ref}")
        self._send(200, raw, {"Docker-Content-Digest": "sha256:" + hashlib.sha256(raw).hexdigest()},
                   content_type=MANIFEST_TYPE)

    def _blob(self, repo: str, digest: str) -> None:
        if not self._authorized(repo, "pull"):
            return
        file = self.fake.blob_file(digest)
        if not file.exists():
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if self.command == "HEAD":
            return self._send(200, b"", {"Content-Length": str(file.stat().st_size),
                                         "Docker-Content-Digest": digest})
        location = f"http://127.0.0.1:{self.fake.cdn_port}/blobs/{digest}?expires={int(time.time()) + 3600}"
        if self.fake.redirect_to is not None:
            location = self.fake.redirect_to.format(cdn=f"127.0.0.1:{self.fake.cdn_port}", digest=digest)
        self._send(307, b"", {"Location": location, "Content-Length": "0"})

    def _cdn_blob(self, digest: str) -> None:
        file = self.fake.blob_file(digest)
        if not file.exists():
            return self._error(404, "NOT_FOUND", "no such blob")
        size = file.stat().st_size
        start, end = 0, size - 1
        ranged = None if self.fake.ignore_ranges else self.headers.get("Range")
        if ranged:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", ranged.strip())
            if not match:
                return self._error(416, "RANGE_INVALID", ranged)
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            if start > end:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}", "Content-Length": "0"})
        fault = self.fake.take_fault(digest)
        if fault is not None and fault.kind == "500":
            return self._error(500, "INTERNAL", "the CDN is having a bad day")
        length = end - start + 1
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{self.fake.lie.get(digest, size)}")
        self.end_headers()
        self.wfile.flush()
        with file.open("rb") as handle:
            if fault is None:
                self._sendfile(handle, digest, start, length)
                return
            first = min(fault.after, length)
            self._sendfile(handle, digest, start, first)
            if fault.kind == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault.kind == "stall":
                time.sleep(fault.seconds)
                if fault.then_drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self._sendfile(handle, digest, start + first, length - first)
                return
            if fault.kind == "corrupt":
                handle.seek(start + first)
                rest = bytearray(handle.read(length - first))
                for index in range(0, len(rest), 4096):
                    rest[index] ^= 0xFF
                self.wfile.write(bytes(rest))
                self.fake.served[digest] += len(rest)

    def _sendfile(self, handle: Any, digest: str, offset: int, count: int) -> None:
        sent = 0
        step = 8 << 20 if self.fake.throttle is None else max(1, int(self.fake.throttle / 20))
        try:
            while sent < count:
                if self.fake.throttle is not None:
                    time.sleep(0.05)
                done = self.connection.sendfile(handle, offset + sent, min(count - sent, step))
                if not done:
                    break
                sent += done
                self.fake.served[digest] += done
        except OSError:
            self.close_connection = True

    def _upload(self, repo: str, upload_id: str, query: dict[str, list[str]]) -> None:
        if not self._authorized(repo, "push"):
            return
        fake = self.fake
        if self.command == "POST" and not upload_id:
            mount = (query.get("mount") or [None])[0]
            if mount and _DIGEST.fullmatch(mount) and fake.blob_file(mount).exists():
                return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{mount}", "Content-Length": "0"})
            new = uuid.uuid4().hex
            fake.uploads[new] = bytearray()
            return self._send(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{new}", "Range": "0-0",
                                         "Docker-Upload-UUID": new, "Content-Length": "0"})
        if upload_id not in fake.uploads:
            return self._error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        data = fake.uploads[upload_id]
        body = self._body()
        if self.command == "PATCH":
            content_range = self.headers.get("Content-Range")
            if content_range:
                start = int(content_range.split("-")[0])
                if start != len(data):
                    return self._send(416, b"", {"Range": f"0-{len(data) - 1}", "Content-Length": "0"})
            data += body
            return self._send(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{upload_id}",
                                         "Range": f"0-{len(data) - 1}", "Content-Length": "0"})
        if self.command == "PUT":
            data += body
            digest = (query.get("digest") or [""])[0]
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return self._error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            fake.blob_file(digest).write_bytes(bytes(data))
            del fake.uploads[upload_id]
            return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{digest}", "Content-Length": "0"})
        return self._error(405, "UNSUPPORTED", "method not allowed")
