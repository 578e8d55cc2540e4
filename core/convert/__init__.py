"""Hugging Face safetensors checkpoints to GGUF, with the tensor names, metadata keys and
tokenizer encoding of llama.cpp's convert_hf_to_gguf.py (see docs/convert.md).

``convert_checkpoint`` is synchronous and CPU-bound: callers run it in a worker thread."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import gguf
import yaml

from corral.errors import ConversionError
from corral.types import Progress

from .bert import BertFamily
from .checkpoint import Checkpoint, open_checkpoint
from .llama import LlamaFamily, Qwen2Family
from .plan import OUTTYPES, OutputTensor

__all__ = ["ARCHITECTURES", "OUTTYPES", "convert_checkpoint", "default_outfile"]


class Family(Protocol):
    arch: gguf.MODEL_ARCH

    def write_parameters(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint,
                         ftype: gguf.LlamaFileType) -> None: ...

    def write_vocab(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None: ...

    def tensors(self, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> object: ...


ARCHITECTURES: dict[str, Family] = {
    **dict.fromkeys(("LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM", "LlamaModel"), LlamaFamily()),
    **dict.fromkeys(("Qwen2ForCausalLM", "Qwen2Model"), Qwen2Family()),
    **dict.fromkeys(("BertModel", "BertForMaskedLM"), BertFamily()),
}

STATUS = "converting model"


def convert_checkpoint(folder: Path, out: Path, *, outtype: str = "f16",
                       progress: Callable[[Progress], None] | None = None) -> None:
    """Write the GGUF of the checkpoint in ``folder`` to ``out`` (atomically: a temporary file
    beside it, renamed when complete). Raises ConversionError naming the file and the problem;
    nothing is left at ``out`` on failure."""
    folder, out = Path(folder), Path(out)
    ftype = _ftype(outtype)
    checkpoint, family, planned = _plan(folder, ftype)
    if not out.parent.is_dir():
        raise ConversionError(f"{out.parent}: output folder does not exist")
    total = sum(t.nbytes for t in planned)
    notify = progress or (lambda _: None)
    notify(Progress(status=STATUS, total=total, completed=0))
    fd, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        writer = _writer_with_metadata(checkpoint, family, planned, ftype)
        writer.write_header_to_file(path=temp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        done = 0
        for tensor in planned:
            data = tensor.data()
            writer.write_tensor_data(data)
            done += tensor.nbytes
            notify(Progress(status=STATUS, total=total, completed=done))
        writer.close()
        os.replace(temp, out)
    except OSError as e:
        raise ConversionError(f"{out.name}: cannot write ({e.strerror or e})") from e
    finally:
        temp.unlink(missing_ok=True)


def default_outfile(folder: Path, outtype: str = "f16") -> Path:
    """llama.cpp's default output path: ``<folder>/<Name>-<Size>-<Type>.gguf`` from the model card."""
    ftype = _ftype(outtype)
    checkpoint, family, planned = _plan(Path(folder), ftype)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[family.arch])
    for tensor in planned:
        tensor.add_info(writer)
    metadata = _metadata(checkpoint, writer)
    name = gguf.naming_convention(metadata.name, metadata.basename, metadata.finetune, metadata.version,
                                  metadata.size_label, ftype.name.partition("_")[2])
    return Path(folder) / f"{name}.gguf"


def _ftype(outtype: str) -> gguf.LlamaFileType:
    if outtype.lower() not in OUTTYPES:
        raise ConversionError(f'unsupported output type "{outtype}" (use {", ".join(OUTTYPES)})')
    return OUTTYPES[outtype.lower()]


def _plan(folder: Path, ftype: gguf.LlamaFileType) -> tuple[Checkpoint, Family, list[OutputTensor]]:
    _quiet_gguf()
    checkpoint = open_checkpoint(folder)
    architecture = checkpoint.architecture
    family = ARCHITECTURES.get(architecture)
    if family is None:
        raise ConversionError(f'config.json: unsupported architecture "{architecture}" '
                              f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    planned = list(family.tensors(checkpoint, ftype))
    names = [t.name for t in planned]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ConversionError(f"{folder.name}: two tensors map to {duplicate!r}")
    if not planned:
        raise ConversionError(f"{folder.name}: no model tensors found")
    return checkpoint, family, planned


def _quiet_gguf() -> None:
    # gguf logs its progress and skipped special-token kinds as warnings; corral reports its own.
    for name in ("gguf.metadata", "gguf.gguf_writer", "gguf.vocab"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _metadata(checkpoint: Checkpoint, writer: gguf.GGUFWriter) -> gguf.Metadata:
    counts = writer.get_total_parameter_count()
    try:
        metadata = gguf.Metadata.load(None, checkpoint.folder, None, counts[0])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as e:
        raise ConversionError(f"README.md: cannot read the model card metadata ({e})") from e
    if metadata.name is None:
        metadata.name = checkpoint.folder.name
    if metadata.size_label is None and counts[0] > 0:
        metadata.size_label = gguf.size_label(*counts)
    return metadata


def _writer_with_metadata(checkpoint: Checkpoint, family: Family, planned: list[OutputTensor],
                          ftype: gguf.LlamaFileType) -> gguf.GGUFWriter:
    """A writer holding the tensor infos and every key, in the order llama.cpp's converter adds them."""
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[family.arch])
    for tensor in planned:
        tensor.add_info(writer)
    writer.add_type(gguf.GGUFType.MODEL)
    _metadata(checkpoint, writer).set_gguf_meta_model(writer)
    family.write_parameters(writer, checkpoint, ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    family.write_vocab(writer, checkpoint)
    return writer
