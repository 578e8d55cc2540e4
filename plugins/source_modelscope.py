"""Models from ModelScope: ``modelscope.cn/<user>/<repo>[:<quant>]``.

Spoken as the modelscope client speaks ModelScope's HTTP API: the file list from
``/api/v1/models/<id>/repo/files?Revision=master&Recursive=True``, each file from
``/api/v1/models/<id>/repo?Revision=master&FilePath=<path>``. Downloads resume with ``Range`` (also
after a failed pull: the partial file stays beside the store, and a resumed answer must start where
it left off) and are verified against the sha256 the listing gives before they enter the store (a
file the listing gives no sha256 for is refused). MODELSCOPE_DOMAIN picks another site (a bare domain
means https), MODELSCOPE_API_TOKEN is sent as the client sends it (the ``m_session_id`` cookie), to
that site only: never along a redirect to another host (see plugins/outbound.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from corral import (
    DigestMismatch,
    InvalidRequest,
    ModelNotFound,
    ModelRef,
    Progress,
    PullError,
    SettingSpec,
    SourceSpec,
    hookimpl,
    in_use,
)
from corral.sdk import hub, outbound
from corral.sdk.hub import Outcome, Reporter

HOSTS = ("modelscope.cn", "www.modelscope.cn", "modelscope.ai", "www.modelscope.ai")
REVISION = "master"
RETRIES = 5
TIMEOUT = 60.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _endpoint(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not text:
        raise ValueError("must be a domain or an http(s):// URL")
    return text if text.startswith(("http://", "https://")) else f"https://{text}"


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(key="modelscope.endpoint", default="https://www.modelscope.cn", env="MODELSCOPE_DOMAIN",
                        converter=_endpoint, help="the ModelScope site modelscope.cn/... references pull from")]


@hookimpl
def register_sources(settings: Any) -> list[SourceSpec]:
    return [SourceSpec(name="modelscope", factory=ModelScopeSource.for_kernel,
                       description="GGUF (or safetensors) models from ModelScope: modelscope.cn/<user>/<repo>[:<quant>]")]


@hookimpl
def resolve_reference(reference: str, settings: Any) -> str | None:
    return "modelscope" if hub.reference_host(reference) in HOSTS else None


@attrs.frozen(kw_only=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None


@attrs.define(eq=False)
class ModelScopeSource:
    kernel: Any = attrs.field(repr=False)
    name: str = "modelscope"

    @classmethod
    def for_kernel(cls, kernel: Any) -> ModelScopeSource:
        return cls(kernel=kernel)

    @property
    def endpoint(self) -> str:
        return self.kernel.settings.plugin["modelscope.endpoint"]

    def _client(self) -> Any:
        import httpx

        # no cookie jar: the session cookie goes as a header on requests to the endpoint, and httpx
        # drops that header on every redirect
        return httpx.Client(timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": "corral"},
                            transport=outbound.transport(outbound.Policy.of(self.kernel)),
                            event_hooks={"response": [outbound.redirect_hook]})

    def _credentials(self) -> dict[str, str]:
        token = self.kernel.settings.environ.get("MODELSCOPE_API_TOKEN")
        return {"Cookie": f"m_session_id={token}"} if token else {}

    async def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        name = ref.display
        if ref.digest:
            raise InvalidRequest(f"{name}: ModelScope references cannot pin a digest")
        yield Progress(status="pulling manifest")
        listing = Outcome()
        async for progress in hub.in_thread(self._list, ref.repository, name, outcome=listing):
            yield progress
        files: dict[str, RepoFile] = {entry.path: entry for entry in listing.value}
        chosen, is_gguf = hub.repository_files(ref, files, name)

        for path in chosen:
            if files[path].sha256 is None:
                raise PullError(f"{name}: {self.endpoint} lists no sha256 for {path}, so it cannot be verified: refused")
        folder = hub.downloads_dir(self.kernel, "modelscope", ref.namespace, ref.model)
        partials = [folder / (path.replace("/", "--") + ".partial") for path in chosen]
        await self.kernel.store.check_space({f"sha256:{files[path].sha256}": files[path].size for path in chosen},
                                            name, copies=2, already=sum(p.stat().st_size for p in partials if p.exists()))
        with in_use(folder):
            async with self.kernel.store.holding() as hold:  # the blobs stay until the model names them
                stored: dict[str, str] = {}
                for path, partial in zip(chosen, partials, strict=True):
                    entry = files[path]
                    async for progress in hub.in_thread(self._download, ref.repository, entry, partial, name):
                        yield progress
                    yield Progress(status="verifying sha256 digest")
                    expected = f"sha256:{entry.sha256}"
                    try:
                        stored[PurePosixPath(path).name if is_gguf else path] = await hub.add_file(self.kernel, partial, expected, hold)
                    except DigestMismatch as error:
                        raise DigestMismatch(f"{name}: {path}: {error}") from None
                    finally:
                        partial.unlink(missing_ok=True)  # in the store now, or corrupt: never resumed from
                async for progress in hub.create_from(self.kernel, str(ref), stored):
                    yield progress

    async def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        raise InvalidRequest(f"{ref.display}: pushing to ModelScope is not supported")
        yield  # pragma: no cover - makes this an async generator like pull

    # -- in a worker thread -------------------------------------------------------------------

    def _list(self, report: Reporter, model_id: str, name: str) -> list[RepoFile]:
        import httpx

        url = f"{self.endpoint}/api/v1/models/{model_id}/repo/files"
        limit = outbound.Policy.of(self.kernel).max_metadata_bytes
        try:
            with self._client() as client, client.stream(
                    "GET", url, params={"Revision": REVISION, "Recursive": "True"}, headers=self._credentials()) as response:
                if response.status_code == 404:
                    raise ModelNotFound(name, f'pull model manifest: file does not exist: no model "{model_id}" on {self.endpoint}')
                if response.status_code in (401, 403):
                    raise PullError(f"{name}: {self.endpoint} refused access to {model_id} ({response.status_code}); "
                                    "a private model needs MODELSCOPE_API_TOKEN")
                if response.status_code != 200:
                    raise PullError(f"{name}: {self.endpoint} answered {response.status_code} listing {model_id}")
                raw = outbound.read_bounded(response, limit, f"{name}: the file list of {model_id}")
        except httpx.HTTPError as error:
            raise PullError(f"{name}: cannot reach {self.endpoint}: {outbound.summary(str(error))}") from None
        try:
            body = json.loads(raw)
            if body.get("Code") != 200:
                said = outbound.summary(str(body.get("Message") or body.get("Code")))
                raise PullError(f"{name}: {self.endpoint} could not list {model_id}: {said}")
            found = []
            for item in body["Data"]["Files"] or ():
                if item.get("Type") == "tree" or not hub.safe_repo_path(item["Path"]):
                    continue
                sha256 = item.get("Sha256") or None
                if sha256 is not None and not (len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)):
                    raise ValueError(f"Sha256 {sha256!r} of {item['Path']}")
                found.append(RepoFile(path=item["Path"], size=int(item["Size"]), sha256=sha256))
            return found
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PullError(f"{name}: {self.endpoint} sent a file list that makes no sense "
                            f"({outbound.summary(str(error), 100)})") from None

    def _download(self, report: Reporter, model_id: str, entry: RepoFile, partial: Path, name: str) -> None:
        """Fetch ``entry`` into ``partial``, continuing what an earlier attempt left there."""
        import httpx

        url = f"{self.endpoint}/api/v1/models/{model_id}/repo"
        params = {"Revision": REVISION, "FilePath": entry.path}
        status = f"pulling {entry.sha256[:12]}" if entry.sha256 else f"pulling {entry.path}"
        digest = f"sha256:{entry.sha256}" if entry.sha256 else None
        failures = 0
        with self._client() as client:
            while True:
                have = partial.stat().st_size if partial.exists() else 0
                if have > entry.size:
                    partial.unlink()
                    have = 0
                report(Progress(status=status, digest=digest, total=entry.size, completed=have), force=True)
                if have == entry.size:
                    return
                headers = {**self._credentials(), "Accept-Encoding": "identity"}
                if have:
                    headers["Range"] = f"bytes={have}-"
                try:
                    with client.stream("GET", url, params=params, headers=headers) as response:
                        if response.status_code == 404:
                            raise ModelNotFound(name, f"{name}: {entry.path} is listed but not found on {self.endpoint}")
                        if response.status_code not in (200, 206):
                            raise PullError(f"{name}: {self.endpoint} answered {response.status_code} for {entry.path}")
                        if response.headers.get("content-encoding", "identity").lower() != "identity":
                            raise PullError(f"{name}: {self.endpoint} sent {entry.path} encoded, "
                                            "where the plain bytes were asked for")
                        mode = "ab" if response.status_code == 206 and have else "wb"
                        if mode == "ab" and not _resumes_at(response, have, entry.size):
                            partial.unlink()  # the answer is not the rest of this file: start over
                            failures += 1
                            if failures > RETRIES:
                                raise PullError(f"{name}: {self.endpoint} keeps answering {entry.path}'s range "
                                                "with other bytes")
                            continue
                        completed = have if mode == "ab" else 0
                        with partial.open(mode) as out:
                            for chunk in response.iter_raw():  # as it arrives: a drop loses nothing
                                out.write(chunk)
                                completed += len(chunk)
                                if completed > entry.size:
                                    raise PullError(f"{name}: {entry.path} is larger than the {entry.size} bytes listed")
                                report(Progress(status=status, digest=digest, total=entry.size, completed=completed))
                except httpx.HTTPError as error:
                    if outbound.hopeless(error):
                        raise PullError(f"{name}: downloading {entry.path} from {self.endpoint} failed: "
                                        f"{outbound.summary(str(error))}") from None
                    # an attempt that got further than the last one starts the count of failures again
                    failures = 1 if partial.exists() and partial.stat().st_size > have else failures + 1
                    if failures > RETRIES:
                        raise PullError(f"{name}: downloading {entry.path} from {self.endpoint} failed "
                                        f"{failures} times: {error}") from None
                    time.sleep(min(2 ** failures * 0.25, 2))
                    continue
                if partial.stat().st_size < entry.size:
                    failures += 1
                    if failures > RETRIES:
                        raise PullError(f"{name}: {entry.path} keeps ending early on {self.endpoint}")


def _resumes_at(response: Any, offset: int, size: int) -> bool:
    """Whether a 206 answer is this file's bytes from ``offset`` on (its Content-Range says so)."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    return match is not None and int(match.group(1)) == offset and match.group(3) in (str(size), "*")
