"""``corral convert``: a Hugging Face safetensors folder to a GGUF file, locally (no server),
like llama.cpp's convert_hf_to_gguf.py."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click


@click.command("convert")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--outtype", type=click.Choice(["f16", "f32", "bf16"], case_sensitive=False), default="f16",
              show_default=True, help="Type of the weight matrices (norms and biases stay f32).")
@click.option("--outfile", type=click.Path(path_type=Path), metavar="PATH",
              help="Where to write the GGUF (a folder gets the default name). "
                   "Default: FOLDER/<Name>-<Size>-<TYPE>.gguf, named as llama.cpp names it.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def convert_command(folder: Path, outtype: str, outfile: Path | None, force: bool) -> None:
    """Convert a Hugging Face checkpoint (config.json, *.safetensors, tokenizer files) to GGUF.

    Supports Llama, Mistral, SmolLM and Qwen2 causal models (byte-level BPE or SentencePiece
    tokenizers) and BERT / sentence-transformers embedding models. See docs/convert.md.

    \b
    Example:
      corral convert ./Mistral-7B --outtype f16 --outfile m.gguf
      corral quantize m.gguf m-q4.gguf q4_0       # then FROM m-q4.gguf in a Modelfile
      corral convert ./all-MiniLM-L6-v2    # -> ./all-MiniLM-L6-v2/<Name>-<Size>-F16.gguf
    """
    from corral import ConversionError
    from corral.sdk.convert import convert_checkpoint, default_outfile

    outtype = outtype.lower()
    if outfile is None:
        out = default_outfile(folder, outtype)
    elif outfile.is_dir():
        out = outfile / default_outfile(folder, outtype).name
    else:
        out = outfile
    if out.exists() and not force:
        raise ConversionError(f"{out} already exists; use --force to overwrite it")
    _convert_with_progress(convert_checkpoint, folder, out, outtype)
    click.echo(f"Wrote {out}")


def _convert_with_progress(convert: Any, folder: Path, out: Path, outtype: str) -> None:
    """Run the conversion with a rich progress bar on stderr, shown from the first progress
    record on (so a checkpoint refused up front prints only its error)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with ExitStack() as stack:
        bar: Progress | None = None
        task = None

        def show(update: Any) -> None:
            nonlocal bar, task
            if bar is None:
                columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
                bar = stack.enter_context(Progress(*columns, console=Console(stderr=True)))
                task = bar.add_task(f"converting {folder.name}", total=update.total)
            bar.update(task, total=update.total, completed=update.completed or 0)

        convert(folder, out, outtype=outtype, progress=show)
