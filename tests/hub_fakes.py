"""Local stand-ins for the model hubs, speaking their real HTTP protocols, able to misbehave.

- FakeHuggingFace: the endpoints huggingface-hub calls (tree listing, HEAD/GET ``resolve`` with
  X-Repo-Commit, ETag, X-Linked-Etag/X-Linked-Size, a redirect of LFS files to another host, Range).
- FakeModelScope: ModelScope's ``/api/v1/models/<id>/repo/files`` and ``/repo?FilePath=`` API.
- package_index: a folder served as a PEP 503 simple index, for pip.

Each records the requests it saw (``log``) and has knobs to answer 500, drop the connection in
the middle of a file, announce a wrong sha256 (or none), answer a range with the wrong bytes,
redirect elsewhere, or send a gzip bomb.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@attrs.define(eq=False)
class HubFile:
    """A file in a fake repository: its bytes come from ``source`` or ``data``."""

    data: bytes | None = None
    source: Path | None = None
    lfs: bool = True
    _cache: dict[str, Any] = attrs.field(factory=dict)

    def read(self) -> bytes:
        if "data" not in self._cache:
            self._cache["data"] = self.data if self.data is not None else self.source.read_bytes()
        return self._cache["data"]

    @property
    def size(self) -> int:
        return len(self.read())

    def sha256(self) -> str:
        if "sha256" not in self._cache:
            self._cache["sha256"] = hashlib.sha256(self.read()).hexdigest()
        return self._cache["sha256"]

    def git_oid(self) -> str:
        if "oid" not in self._cache:
            data = self.read()
            self._cache["oid"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return self._cache["oid"]


@attrs.define(eq=False)
class Faults:
    """How a fake misbehaves. Counters count down: ``drop_times=1`` drops one transfer only."""

    status: int | None = None  # answer every request with this status
    status_times: int = 1_000_000
    file_status: int | None = None  # answer file downloads (not listings) with this status
    drop_after: int | None = None  # close the connection after this many body bytes of a file
    drop_times: int = 0
    status_after_drop: int | None = None  # once a transfer was dropped, answer files with this status
    wrong_sha256: bool = False  # announce a sha256 that is not the file's
    ignore_range: bool = False
    garbage: bool = False  # answer listings with 200 and a body that is not the API's JSON
    no_sha256: bool = False  # list files without their sha256
    wrong_range: bool = False  # answer a Range request with 206 and the file from its start
    bomb: int = 0  # answer listings with a gzip bomb of this many bytes (sent whatever was asked)
    redirect: str | None = None  # redirect files (ModelScope) or listings (Hugging Face) here; {url} and {path}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], state: Any) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), handler)
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def state(self) -> Any:
        return self.server.state  # type: ignore[attr-defined]

    def send_json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, item in (headers or {}).items():
            self.send_header(key, item)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_bomb(self) -> None:
        from fake_registry import gzip_bomb

        body = gzip_bomb(self.state.faults.bomb)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def fault_status(self, *, file: bool) -> int | None:
        faults: Faults = self.state.faults
        if faults.status is not None and faults.status_times > 0:
            faults.status_times -= 1
            return faults.status
        if file and faults.file_status is not None:
            return faults.file_status
        return None

    def send_file(self, data: bytes, headers: dict[str, str]) -> None:
        """Send ``data`` honouring Range, dropping the connection when the faults say so."""
        faults: Faults = self.state.faults
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes=") and not faults.ignore_range:
            first, _, last = header[len("bytes="):].partition("-")
            start = 0 if faults.wrong_range else int(first)
            end = int(last) + 1 if last else len(data)
            body = data[start:end]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if faults.drop_after is not None and faults.drop_times > 0 and len(body) > faults.drop_after:
            faults.drop_times -= 1
            if faults.status_after_drop is not None:
                faults.file_status = faults.status_after_drop
            self.wfile.write(body[: faults.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


# -- Hugging Face ----------------------------------------------------------------------------------


@attrs.define(eq=False)
class FakeHuggingFace:
    repos: dict[str, dict[str, HubFile]] = attrs.field(factory=dict)
    private: dict[str, str] = attrs.field(factory=dict)  # repo -> the token it needs
    faults: Faults = attrs.field(factory=Faults)
    log: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)
    url: str = ""

    @contextmanager
    def running(self) -> Iterator[FakeHuggingFace]:
        with serving(_HfHandler, self) as url:
            self.url = url
            yield self

    def announced_sha256(self, file: HubFile) -> str:
        return "f" * 64 if self.faults.wrong_sha256 else file.sha256()

    def gets(self, fragment: str) -> list[str]:
        return [path for method, path, _ in self.log if method == "GET" and fragment in path]


class _HfHandler(_Handler):
    def do_HEAD(self) -> None:
        self.handle_request()

    def do_GET(self) -> None:
        self.handle_request()

    def handle_request(self) -> None:
        hub: FakeHuggingFace = self.state
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        hub.log.append((self.command, self.path, dict(self.headers)))
        if path.startswith("/cdn/"):
            return self.cdn(path.removeprefix("/cdn/"))
        status = self.fault_status(file="/resolve/" in path)
        if status is not None:
            return self.send_json(status, {"error": "Internal Error"})
        if path.startswith("/api/models/"):
            if hub.faults.bomb:
                return self.send_bomb()
            if hub.faults.redirect and self.headers.get("Host", "").startswith("127.0.0.1"):
                return self.send_redirect(hub.faults.redirect.format(url=hub.url, path=self.path))
            return self.tree(path.removeprefix("/api/models/"), parse_qs(parts.query))
        if "/resolve/" in path:
            repo, _, rest = path.lstrip("/").partition("/resolve/")
            _revision, _, filename = rest.partition("/")
            return self.resolve(repo, filename)
        self.send_json(404, {"error": "Not Found"})

    def repo(self, repo_id: str) -> dict[str, HubFile] | None:
        hub: FakeHuggingFace = self.state
        files = hub.repos.get(repo_id)
        needed = hub.private.get(repo_id)
        if files is None or (needed and self.headers.get("Authorization") != f"Bearer {needed}"):
            self.send_json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        return files

    def tree(self, rest: str, query: dict[str, list[str]]) -> None:
        repo_id, _, _revision = rest.partition("/tree/")
        files = self.repo(repo_id)
        if files is None:
            return
        hub: FakeHuggingFace = self.state
        entries = []
        for name, file in sorted(files.items()):
            entry: dict[str, Any] = {"type": "file", "oid": file.git_oid(), "size": file.size, "path": name}
            if file.lfs:
                entry["lfs"] = {"oid": hub.announced_sha256(file), "size": file.size, "pointerSize": 134}
            entries.append(entry)
        self.send_json(200, entries)

    def resolve(self, repo_id: str, filename: str) -> None:
        files = self.repo(repo_id)
        if files is None:
            return
        hub: FakeHuggingFace = self.state
        file = files.get(filename)
        if file is None:
            return self.send_json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        if file.lfs:
            sha = hub.announced_sha256(file)
            # LFS files live on another host (the CDN): here "localhost" instead of "127.0.0.1"
            location = hub.url.replace("127.0.0.1", "localhost") + f"/cdn/{file.sha256()}"
            self.send_response(302)
            for key, value in {"Location": location, "X-Repo-Commit": COMMIT, "ETag": f'"{sha}"',
                               "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(file.size),
                               "Content-Length": "0"}.items():
                self.send_header(key, value)
            self.end_headers()
            return
        self.send_file(file.read(), {"X-Repo-Commit": COMMIT, "ETag": f'"{file.git_oid()}"'})

    def cdn(self, sha256: str) -> None:
        hub: FakeHuggingFace = self.state
        if "Authorization" in self.headers:
            return self.send_json(400, {"error": "the CDN must not receive the Hub token"})
        status = self.fault_status(file=True)
        if status is not None:
            return self.send_json(status, {"error": "Internal Error"})
        for files in hub.repos.values():
            for file in files.values():
                if file.lfs and file.sha256() == sha256:
                    return self.send_file(file.read(), {"ETag": f'"{sha256}"'})
        self.send_json(404, {"error": "Not Found"})


# -- ModelScope --------------------------------------------------------------------------------------


@attrs.define(eq=False)
class FakeModelScope:
    repos: dict[str, dict[str, HubFile]] = attrs.field(factory=dict)
    faults: Faults = attrs.field(factory=Faults)
    log: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)
    url: str = ""

    @contextmanager
    def running(self) -> Iterator[FakeModelScope]:
        with serving(_ModelScopeHandler, self) as url:
            self.url = url
            yield self

    def gets(self, fragment: str) -> list[tuple[str, dict[str, str]]]:
        return [(path, headers) for method, path, headers in self.log if method == "GET" and fragment in path]


class _ModelScopeHandler(_Handler):
    def do_GET(self) -> None:
        hub: FakeModelScope = self.state
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        hub.log.append((self.command, self.path, dict(self.headers)))
        path = unquote(parts.path)
        if path.startswith("/cdn/"):  # where files are redirected to (another host name: localhost)
            model_id, _, file_path = path.removeprefix("/cdn/").rpartition("/files/")
            file = hub.repos.get(model_id, {}).get(file_path)
            if file is None:
                return self.send_json(404, {"Code": 404, "Message": "file not found", "Success": False})
            return self.send_file(file.read(), {"Content-Type": "application/octet-stream"})
        if not path.startswith("/api/v1/models/"):
            return self.send_json(404, {"Code": 404, "Message": "not found"})
        rest = path.removeprefix("/api/v1/models/")
        listing = rest.endswith("/repo/files")
        model_id = rest.removesuffix("/repo/files").removesuffix("/repo")
        status = self.fault_status(file=not listing)
        if status is not None:
            return self.send_json(status, {"Code": status, "Message": "Internal Error", "Success": False})
        files = hub.repos.get(model_id)
        if files is None:
            return self.send_json(404, {"Code": 10010205001, "Message": f"model {model_id} not found", "Success": False})
        if listing and hub.faults.bomb:
            return self.send_bomb()
        if listing and hub.faults.garbage:
            return self.send_json(200, {"Code": 200, "Data": {"Files": [{"Path": "m.gguf", "Size": "big"}]}})
        if listing:
            entries = [{"Name": name.rpartition("/")[2], "Path": name, "Type": "blob", "Size": file.size,
                        "Sha256": "f" * 64 if hub.faults.wrong_sha256 else file.sha256(), "Revision": COMMIT}
                       for name, file in sorted(files.items())]
            if hub.faults.no_sha256:
                for entry in entries:
                    del entry["Sha256"]
            return self.send_json(200, {"Code": 200, "Data": {"Files": entries}, "Message": "success", "Success": True})
        file = files.get(query.get("FilePath", ""))
        if file is None:
            return self.send_json(404, {"Code": 404, "Message": "file not found", "Success": False})
        if hub.faults.redirect:
            target = f"/cdn/{model_id}/files/{query['FilePath']}"
            return self.send_redirect(hub.faults.redirect.format(url=hub.url, path=target))
        self.send_file(file.read(), {"Content-Type": "application/octet-stream"})


# -- a package index for pip ---------------------------------------------------------------------------


@contextmanager
def package_index(root: Path, wheels: list[Path], *, wrong_hash: bool = False) -> Iterator[str]:
    """Serve ``wheels`` as a PEP 503 simple index; yield the index URL for PIP_INDEX_URL."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        target = files / wheel.name
        if not target.exists():
            target.write_bytes(wheel.read_bytes())
        project = wheel.name.split("-")[0].lower().replace("_", "-")
        projects.setdefault(project, []).append(target)
    for project, paths in projects.items():
        links = []
        for path in paths:
            digest = "0" * 64 if wrong_hash else hashlib.sha256(path.read_bytes()).hexdigest()
            links.append(f'<a href="../../files/{html.escape(path.name)}#sha256={digest}">{html.escape(path.name)}</a>')
        folder = root / "simple" / project
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler, None) as url:
        yield f"{url}/simple/"


# -- driving a pull through the kernel ------------------------------------------------------------------


def pull(kernel: Any, reference: str) -> list[Any]:
    """Pull ``reference`` with the source that owns it, as /api/pull does; return its progress."""
    import anyio

    from corral import parse_reference

    async def run() -> list[Any]:
        source = kernel.source_for(reference)
        return [progress async for progress in source.pull(parse_reference(reference))]

    return anyio.run(run)


def store_files(models: Path) -> set[str]:
    """Every blob and manifest in a store (downloads in progress beside it excluded)."""
    return {str(path.relative_to(models)) for folder in ("blobs", "manifests")
            for path in (models / folder).rglob("*") if path.is_file()}
