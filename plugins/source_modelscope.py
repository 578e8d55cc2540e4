"""Models from ModelScope: ``modelscope.cn/<user>/<repo>[:<quant>]``.

Spoken as the modelscope client speaks ModelScope's HTTP API: the file list from
``/api/v1/models/<id>/repo/files?Revision=master&Recursive=True``, each file from
``/api/v1/models/<id>/repo?Revision=master&FilePath=<path>``. Downloads resume with ``Range`` (also
after a failed pull: the partial file stays beside the store) and are verified against the sha256
the listing gives before they enter the store. MODELSCOPE_DOMAIN picks another site (a bare domain
means https), MODELSCOPE_API_TOKEN is sent as the client sends it (the ``m_session_id`` cookie).
"""

from __future__ import annotations

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
)
from corral.sdk import hub
from corral.sdk.hub import Outcome, Reporter

HOSTS = ("modelscope.cn", "www.modelscope.cn", "modelscope.ai", "www.modelscope.ai")
REVISION = "master"
RETRIES = 5
TIMEOUT = 60.0


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

        token = self.kernel.settings.environ.get("MODELSCOPE_API_TOKEN")
        return httpx.Client(timeout=TIMEOUT, follow_redirects=True,
                            cookies={"m_session_id": token} if token else None,
                            headers={"User-Agent": "corral"})

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

        folder = hub.downloads_dir(self.kernel, "modelscope", ref.namespace, ref.model)
        stored: dict[str, str] = {}
        for path in chosen:
            entry = files[path]
            partial = folder / (path.replace("/", "--") + ".partial")
            async for progress in hub.in_thread(self._download, ref.repository, entry, partial, name):
                yield progress
            yield Progress(status="verifying sha256 digest")
            expected = f"sha256:{entry.sha256}" if entry.sha256 else None
            try:
                stored[PurePosixPath(path).name if is_gguf else path] = await hub.add_file(self.kernel, partial, expected)
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
        try:
            with self._client() as client:
                response = client.get(url, params={"Revision": REVISION, "Recursive": "True"})
        except httpx.HTTPError as error:
            raise PullError(f"{name}: cannot reach {self.endpoint}: {error}") from None
        if response.status_code == 404:
            raise ModelNotFound(name, f'pull model manifest: file does not exist: no model "{model_id}" on {self.endpoint}')
        if response.status_code in (401, 403):
            raise PullError(f"{name}: {self.endpoint} refused access to {model_id} ({response.status_code}); "
                            "a private model needs MODELSCOPE_API_TOKEN")
        if response.status_code != 200:
            raise PullError(f"{name}: {self.endpoint} answered {response.status_code} listing {model_id}")
        try:
            body = response.json()
            if body.get("Code") != 200:
                raise PullError(f"{name}: {self.endpoint} could not list {model_id}: {body.get('Message') or body.get('Code')}")
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
            raise PullError(f"{name}: {self.endpoint} sent a file list that makes no sense ({error})") from None

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
                headers = {"Range": f"bytes={have}-"} if have else {}
                try:
                    with client.stream("GET", url, params=params, headers=headers) as response:
                        if response.status_code == 404:
                            raise ModelNotFound(name, f"{name}: {entry.path} is listed but not found on {self.endpoint}")
                        if response.status_code not in (200, 206):
                            raise PullError(f"{name}: {self.endpoint} answered {response.status_code} for {entry.path}")
                        mode = "ab" if response.status_code == 206 and have else "wb"
                        completed = have if mode == "ab" else 0
                        with partial.open(mode) as out:
                            for chunk in response.iter_bytes():  # as it arrives: a drop loses nothing
                                out.write(chunk)
                                completed += len(chunk)
                                if completed > entry.size:
                                    raise PullError(f"{name}: {entry.path} is larger than the {entry.size} bytes listed")
                                report(Progress(status=status, digest=digest, total=entry.size, completed=completed))
                except httpx.HTTPError as error:
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
