"""BERT encoders (BertModel and sentence-transformers folders such as all-MiniLM-L6-v2),
converted as llama.cpp's BertModel does: non-causal attention, token types, pooling type."""

from __future__ import annotations

from collections.abc import Iterator

import gguf

from .checkpoint import Checkpoint
from .plan import OutputTensor, map_tensor, write_pooling_type, write_text_parameters
from .vocab import write_wordpiece_vocab

UNUSED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


class BertFamily:
    arch = gguf.MODEL_ARCH.BERT

    def write_parameters(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> None:
        write_text_parameters(writer, checkpoint, ftype)
        writer.add_causal_attention(False)
        write_pooling_type(writer, checkpoint)

    def write_vocab(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None:
        write_wordpiece_vocab(writer, checkpoint)

    def tensors(self, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> Iterator[OutputTensor]:
        for stored_name, stored in checkpoint.tensors.items():
            name = stored_name.removeprefix("bert.")
            if name.endswith(".gamma"):
                name = name.removesuffix(".gamma") + ".weight"
            elif name.endswith(".beta"):
                name = name.removesuffix(".beta") + ".bias"
            if name in UNUSED or name.startswith(("cls.predictions", "cls.seq_relationship")):
                continue
            yield map_tensor(self.arch, checkpoint, stored, name, ftype)
