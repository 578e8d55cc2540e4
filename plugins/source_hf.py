"""Models from the Hugging Face Hub: ``hf.co/<user>/<repo>[:<quant>]``, also ``huggingface.co/...``.

The repository's GGUF files are listed, the one the tag names is picked (``Q4_K_M`` without a tag,
as Ollama's integration does), downloaded with huggingface-hub (HF_ENDPOINT, HF_TOKEN and the
user's Hugging Face cache all apply), verified against the sha256 the Hub lists, and stored as an
Ollama model with its template and parameters. A repository with only safetensors weights goes
through the converter. huggingface-hub is imported only when a pull starts, and its client is
built to the outbound policy (plugins/outbound.py): the token goes to the endpoint's host only,
listings are read up to ``sources.max_metadata_bytes``, redirects only to http(s).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import attrs

from corral import (
    CorralError,
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

HOSTS = ("hf.co", "huggingface.co")
REVISION = "main"
MAX_LISTED_FILES = 100_000
"""A repository listing longer than this is refused (the Hub pages listings: each page is capped
by ``sources.max_metadata_bytes``, this bounds how many pages are read)."""
_hub_client: list[Any] = [None]  # the (policy, endpoint) huggingface-hub's shared client was built for


def _endpoint(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return text


@hookimpl
def register_settings() -> list[SettingSpec]:
    return [SettingSpec(key="huggingface.endpoint", default="https://huggingface.co", env="HF_ENDPOINT",
                        converter=_endpoint, help="the Hugging Face Hub (or a mirror) hf.co/... references pull from")]


@hookimpl
def register_sources(settings: Any) -> list[SourceSpec]:
    return [SourceSpec(name="huggingface", factory=HuggingFaceSource.for_kernel,
                       description="GGUF (or safetensors) models from the Hugging Face Hub: hf.co/<user>/<repo>[:<quant>]")]


@hookimpl
def resolve_reference(reference: str, settings: Any) -> str | None:
    return "huggingface" if hub.reference_host(reference) in HOSTS else None


@attrs.frozen(kw_only=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None
    """The LFS sha256 the Hub lists, or None for a file kept in git itself."""
    oid: str


@attrs.define(eq=False)
class HuggingFaceSource:
    kernel: Any = attrs.field(repr=False)
    name: str = "huggingface"

    @classmethod
    def for_kernel(cls, kernel: Any) -> HuggingFaceSource:
        return cls(kernel=kernel)

    @property
    def endpoint(self) -> str:
        return self.kernel.settings.plugin["huggingface.endpoint"]

    @property
    def token(self) -> str | None:
        # None lets huggingface-hub find the token itself (its login file)
        return self.kernel.settings.environ.get("HF_TOKEN") or None

    async def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        name = ref.display
        repo_id = ref.repository
        if ref.digest:
            raise InvalidRequest(f"{name}: Hugging Face references cannot pin a digest")
        yield Progress(status="pulling manifest")
        listing = Outcome()
        async for progress in hub.in_thread(self._list, repo_id, name, outcome=listing):
            yield progress
        files: dict[str, RepoFile] = {entry.path: entry for entry in listing.value}
        chosen, is_gguf = hub.repository_files(ref, files, name)

        folder = hub.downloads_dir(self.kernel, "huggingface", ref.namespace, ref.model)
        await self.kernel.store.check_space(
            {f"sha256:{files[path].sha256}": files[path].size for path in chosen if files[path].sha256}, name,
            copies=2, already=sum(found.stat().st_size for found in folder.rglob("*") if found.is_file()))
        with in_use(folder):
            async with self.kernel.store.holding() as hold:  # the blobs stay until the model names them
                stored: dict[str, str] = {}
                for path in chosen:
                    entry = files[path]
                    local = Outcome()
                    async for progress in hub.in_thread(self._download, repo_id, entry, folder, name, outcome=local):
                        yield progress
                    yield Progress(status="verifying sha256 digest")
                    expected = f"sha256:{entry.sha256}" if entry.sha256 else None
                    try:
                        stored[PurePosixPath(path).name if is_gguf else path] = await hub.add_file(self.kernel, local.value, expected, hold)
                    except DigestMismatch as error:
                        _forget(folder, path)
                        raise DigestMismatch(f"{name}: {path}: {error}") from None
                    _forget(folder, path)
                async for progress in hub.create_from(self.kernel, str(ref), stored):
                    yield progress
        shutil.rmtree(folder, ignore_errors=True)

    async def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        raise InvalidRequest(f"{ref.display}: pushing to Hugging Face is not supported")
        yield  # pragma: no cover - makes this an async generator like pull

    # -- in a worker thread -------------------------------------------------------------------

    def _use_policy(self) -> None:
        """Make huggingface-hub's shared client follow this kernel's outbound policy (it is one
        client per process: rebuilt when the policy or the endpoint changes)."""
        import httpx2
        import huggingface_hub

        policy = outbound.Policy.of(self.kernel)
        if _hub_client[0] == (policy, self.endpoint):
            return
        host = urlsplit(self.endpoint).hostname or ""
        try:
            from huggingface_hub.utils._http import hf_request_event_hook
            request_hooks = [hf_request_event_hook]
        except ImportError:  # pragma: no cover - a huggingface-hub that moved it
            request_hooks = []

        def factory() -> Any:
            return httpx2.Client(
                follow_redirects=True, timeout=None,
                event_hooks={"request": request_hooks, "response": [outbound.redirect_hook]},
                transport=outbound.hub_transport(httpx2, policy, credentials_host=host,
                                                 bounded=lambda request: request.url.path.startswith("/api/")))

        huggingface_hub.set_client_factory(factory)
        _hub_client[0] = (policy, self.endpoint)

    def _list(self, report: Reporter, repo_id: str, name: str) -> list[RepoFile]:
        from huggingface_hub import HfApi

        with self._errors(name, repo_id):
            self._use_policy()
            api = HfApi(endpoint=self.endpoint, token=self.token)
            entries = api.list_repo_tree(repo_id, recursive=True, revision=REVISION)
            found = []
            for entry in entries:
                if len(found) >= MAX_LISTED_FILES:
                    raise PullError(f"{name}: {repo_id} lists more than {MAX_LISTED_FILES} files")
                lfs = getattr(entry, "lfs", None)
                if not hasattr(entry, "blob_id") or not hub.safe_repo_path(entry.path):
                    continue
                found.append(RepoFile(path=entry.path, size=entry.size, oid=entry.blob_id,
                                      sha256=(lfs.sha256 if lfs is not None else None)))
            return found

    def _download(self, report: Reporter, repo_id: str, entry: RepoFile, folder: Path, name: str) -> Path:
        from huggingface_hub import hf_hub_download

        digest = f"sha256:{entry.sha256}" if entry.sha256 else None
        status = f"pulling {entry.sha256[:12]}" if entry.sha256 else f"pulling {entry.path}"
        report(Progress(status=status, digest=digest, total=entry.size, completed=0), force=True)

        class Bar:
            """What huggingface-hub drives as its progress bar, turned into Progress records."""

            def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any) -> None:
                self.n = initial
                self.total = total or entry.size

            def update(self, n: float | None = 1) -> None:
                self.n += int(n or 0)
                report(Progress(status=status, digest=digest, total=self.total, completed=min(self.n, self.total)))

            def __enter__(self) -> Bar:
                return self

            def __exit__(self, *exc: object) -> None:
                self.close()

            def close(self) -> None:
                pass

            def set_description(self, *args: Any, **kwargs: Any) -> None:
                pass

            def refresh(self, *args: Any, **kwargs: Any) -> None:
                pass

        with self._errors(name, repo_id):
            self._use_policy()
            local = Path(hf_hub_download(repo_id, entry.path, revision=REVISION, local_dir=folder,
                                         endpoint=self.endpoint, token=self.token, tqdm_class=Bar))
        if local.stat().st_size != entry.size:
            _forget(folder, entry.path)
            raise PullError(f"{name}: {entry.path} arrived with {local.stat().st_size} bytes, the Hub lists {entry.size}")
        if entry.sha256 is None and hub.git_blob_sha1(local) != entry.oid:
            _forget(folder, entry.path)
            raise DigestMismatch(f"{name}: {entry.path} does not match the object id the Hub lists")
        report(Progress(status=status, digest=digest, total=entry.size, completed=entry.size), force=True)
        return local

    @contextmanager
    def _errors(self, name: str, repo_id: str) -> Iterator[None]:
        """huggingface-hub's exceptions, as corral errors a user can act on."""
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            yield
        except (CorralError, hub.Abandoned):
            raise
        except GatedRepoError:
            raise PullError(f"{name}: {repo_id} is gated on {self.endpoint}: accept its terms there and set HF_TOKEN") from None
        except RepositoryNotFoundError:
            raise ModelNotFound(name, f'pull model manifest: file does not exist: no repository "{repo_id}" on '
                                      f"{self.endpoint} (a private one needs HF_TOKEN)") from None
        except RevisionNotFoundError:
            raise ModelNotFound(name, f'pull model manifest: file does not exist: {repo_id} has no "{REVISION}" branch') from None
        except LocalEntryNotFoundError as error:
            cause = error.__cause__ or error.__context__ or error
            raise PullError(f"{name}: cannot download from {self.endpoint}: {_first_line(cause)}") from None
        except EntryNotFoundError as error:
            raise ModelNotFound(name, f"{name}: {_first_line(error)}") from None
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else "an error"
            raise PullError(f"{name}: {self.endpoint} answered {status}: {_first_line(error)}") from None
        except Exception as error:  # network failures and anything else huggingface-hub raises
            raise PullError(f"{name}: download from {self.endpoint} failed: {type(error).__name__}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    """What the Hub (or huggingface-hub about it) said, as a short clean summary."""
    text = str(error).strip()
    return outbound.summary(text.splitlines()[0]) if text else type(error).__name__


def _forget(folder: Path, path: str) -> None:
    """Drop a downloaded file and huggingface-hub's note of it, so the next pull fetches it again."""
    (folder / path).unlink(missing_ok=True)
    (folder / ".cache" / "huggingface" / "download" / f"{path}.metadata").unlink(missing_ok=True)
