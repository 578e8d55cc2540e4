"""``corral create`` (a model from a Modelfile, through the server) and ``corral quantize`` (a GGUF
file, locally)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from .model_commands import EPILOG, connect

CHUNK = 1 << 20
# A folder of weights: the files Ollama's CLI sends for it (parser.filesForModel), relative to it.
WEIGHT_PATTERNS = ("model*.safetensors", "*/model*.safetensors", "consolidated*.safetensors")
SIDE_PATTERNS = ("*.json", "*/*.json", "tokenizer.model", "*/tokenizer.model", "chat_template.jinja", "vocab.txt")


class StatusLines:
    """Progress as Ollama's CLI shows it: each status once, on its own line of stderr; a status
    with a total (an upload, a quantization) as a bar."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

        self.console = Console(stderr=True, highlight=False)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             DownloadColumn(), console=self.console)
        self.tasks: dict[tuple[str, str], Any] = {}
        self.last = ""

    def __enter__(self) -> StatusLines:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.tasks:
            self.bars.stop()

    def show(self, item: Mapping[str, Any]) -> None:
        status = str(item.get("status") or "")
        total = item.get("total")
        if total:
            key = (status, str(item.get("digest") or ""))
            if key not in self.tasks:
                if not self.tasks:
                    self.bars.start()
                self.tasks[key] = self.bars.add_task(status, total=total)
            self.bars.update(self.tasks[key], completed=item.get("completed") or 0)
        elif status and status != self.last:
            self.bars.console.print(status, markup=False, soft_wrap=True)
        self.last = status


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """The files of a model folder to send: its safetensors (or GGUF) weights and their configs."""
    weights = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})
    if not weights:
        weights = sorted(folder.glob("*.gguf"))
        if not weights:
            from corral import CorralError

            raise CorralError(f"no safetensors or GGUF weights found in {folder}")
        return weights
    return weights + sorted({p for pattern in SIDE_PATTERNS for p in folder.glob(pattern)})


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~", ".\\")) or value.lower().endswith((".gguf", ".safetensors"))


class Uploader:
    """Turns FROM/ADAPTER paths into blobs on the server, sending only what it lacks."""

    def __init__(self, client: Any, folder: Path, display: StatusLines) -> None:
        self.client = client
        self.folder = folder
        self.display = display

    def locate(self, instruction: Any) -> dict[str, str] | None:
        from corral import InvalidModelFile
        from corral.sdk.modelfile import blob_reference

        blob = blob_reference(instruction)
        if blob is not None:
            return blob
        path = Path(os.path.expanduser(instruction.value))
        if not path.is_absolute():
            path = self.folder / path
        if not path.exists():
            if instruction.name == "from" and not looks_like_path(instruction.value):
                return None  # a model name
            raise InvalidModelFile(f'(line {instruction.line}): {instruction.name.upper()} "{instruction.value}": '
                                   f"no such file or directory ({path})")
        files = weight_files(path) if path.is_dir() else [path]
        found = {}
        for file in files:
            name = file.relative_to(path).as_posix() if path.is_dir() else file.name
            found[name] = self.send(file)
        return found

    def send(self, file: Path) -> str:
        digest = sha256_of(file)
        if self.client.has_blob(digest):
            return digest
        total = file.stat().st_size
        status = f"copying file {digest}"
        sent = 0

        def chunks() -> Iterator[bytes]:
            nonlocal sent
            with file.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    sent += len(chunk)
                    self.display.show({"status": status, "digest": digest, "total": total, "completed": sent})
                    yield chunk

        self.display.show({"status": status, "digest": digest, "total": total, "completed": 0})
        self.client.upload_blob(digest, chunks())
        return digest


def request_body(request: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model}
    if request.from_:
        body["from"] = request.from_
    for key in ("files", "adapters", "parameters"):
        if getattr(request, key):
            body[key] = dict(getattr(request, key))
    for key in ("template", "system", "quantize"):
        if getattr(request, key) is not None:
            body[key] = getattr(request, key)
    if request.license:
        body["license"] = list(request.license)
    if request.messages:
        body["messages"] = [dict(message) for message in request.messages]
    return body


@click.command("create", epilog=EPILOG)
@click.argument("model")
@click.option("-f", "--file", "modelfile", metavar="PATH",
              help="The Modelfile to build from (default: ./Modelfile).")
@click.option("-q", "--quantize", metavar="TYPE",
              help="Quantize F16/F32 weights to TYPE: q4_0, q4_1, q5_0, q5_1, q8_0, q4_K_S, q4_K_M, q5_K_S, q5_K_M, q6_K.")
@click.pass_obj
def create_command(state: Any, model: str, modelfile: str | None, quantize: str | None) -> None:
    """Create a model from a Modelfile.

    FROM names an existing model, a GGUF file or a folder of safetensors weights; paths are
    relative to the Modelfile's folder. Local files are uploaded to the server unless it already
    has them.

    \b
    Example:
      printf 'FROM ./SmolLM2.gguf\\nSYSTEM You are Mario.\\nPARAMETER temperature 0.7\\n' > Modelfile
      corral create mario -f Modelfile --quantize q4_K_M
    """
    from corral import CorralError
    from corral.sdk.modelfile import modelfile_request, parse_modelfile

    path = Path(modelfile or "Modelfile")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        hint = "" if modelfile else " (use -f to name one)"
        raise CorralError(f"no Modelfile at {path}{hint}") from None
    except OSError as error:
        raise CorralError(f"cannot read {path}: {error.strerror}") from None
    instructions = parse_modelfile(text)
    with connect(state) as client, StatusLines() as display:
        display.show({"status": "gathering model components"})
        uploader = Uploader(client, path.resolve().parent, display)
        request = modelfile_request(instructions, model=model, quantize=quantize, locate=uploader.locate)
        for item in client.stream("POST", "/api/create", request_body(request)):
            display.show(item)


@click.command("quantize")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("type", metavar="TYPE")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.pass_obj
def quantize_command(state: Any, source: Path, output: Path, type: str, force: bool) -> None:
    """Quantize a GGUF file: write OUTPUT from the F32/F16/BF16 SOURCE with weights of TYPE.

    Runs here, without a server, as llama.cpp's quantize tool does. TYPE is one of q4_0, q4_1,
    q5_0, q5_1, q8_0, q4_K_S, q4_K_M, q5_K_S, q5_K_M, q6_K.

    \b
    Example:
      corral quantize model-f16.gguf model-q4_K_M.gguf q4_K_M
    """
    import anyio

    from corral import CorralError

    if not source.is_file():
        raise CorralError(f"{source}: no such file")
    if output.exists() and not force:
        raise CorralError(f"{output} already exists; use --force to overwrite it")
    if output.exists() and output.resolve() == source.resolve():
        raise CorralError("OUTPUT must be another file than SOURCE")
    if not output.resolve().parent.is_dir():
        raise CorralError(f"{output.parent}: no such folder")
    quantizer = state.kernel().quantizer_for(type)

    async def run() -> None:
        with StatusLines() as display:
            async for progress in quantizer.quantize(source, output, type.upper()):
                display.show({"status": progress.status, "digest": progress.digest, "total": progress.total,
                              "completed": progress.completed})

    anyio.run(run)
    from corral.sdk.gguf import read_gguf

    click.echo(f"wrote {output} ({read_gguf(output, skip_arrays_longer_than=0).file_type}, "
               f"{output.stat().st_size / 1e6:.1f} MB)")
