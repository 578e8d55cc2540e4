"""The Llama family (Llama, Mistral, SmolLM: arch "llama") and Qwen2 (arch "qwen2", with q/k/v
biases), converted as llama.cpp's LlamaModel and Qwen2Model do."""

from __future__ import annotations

import math
from collections.abc import Iterator

import gguf
import numpy as np

from corral.errors import ConversionError

from .checkpoint import Checkpoint
from .plan import OutputTensor, map_tensor, rope_parameters, write_pooling_type, write_text_parameters
from .vocab import write_bpe_vocab

SKIPPED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")
MULTIMODAL_PARTS = ("vision_tower", "vision_model", "audio_tower", "multi_modal_projector", "model.connector")


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Undo Hugging Face's rotary permutation of q/k rows (llama.cpp's LlamaModel.permute)."""
    rows = weights.shape[0]
    if n_head <= 0 or rows % (n_head * 2):
        raise ConversionError(f"config.json: {rows} attention rows cannot be split into {n_head} heads")
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


class LlamaFamily:
    arch = gguf.MODEL_ARCH.LLAMA
    undo_permute = True

    def write_parameters(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> None:
        write_text_parameters(writer, checkpoint, ftype)
        writer.add_vocab_size(checkpoint.hparam("vocab_size"))
        writer.add_rope_dimension_count(self._head_dim(checkpoint))

    def write_vocab(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None:
        write_bpe_vocab(writer, checkpoint)
        if checkpoint.config.get("vocab_size") == 49152:
            writer.add_add_bos_token(False)  # llama.cpp: "granite small models" (and SmolLM) add no BOS

    @staticmethod
    def _head_dim(checkpoint: Checkpoint) -> int:
        head_dim = checkpoint.config.get("head_dim")
        return head_dim if head_dim is not None else (
            checkpoint.hparam("hidden_size") // checkpoint.hparam("num_attention_heads"))

    def tensors(self, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> Iterator[OutputTensor]:
        yield from self._rope_freqs(checkpoint)
        n_head = checkpoint.hparam("num_attention_heads", "n_heads")
        n_kv_head = checkpoint.hparam("num_key_value_heads", "n_kv_heads", default=n_head)
        for stored_name, stored in checkpoint.tensors.items():
            if stored_name.endswith(SKIPPED_SUFFIXES) or any(p in stored_name for p in MULTIMODAL_PARTS):
                continue
            name = self._hf_name(checkpoint, stored_name)
            if "block_sparse_moe" in name or ".mlp.experts." in name:
                raise ConversionError(f"{stored.file.name}: mixture-of-experts tensor {stored_name!r} "
                                      "is not supported")
            transform = None
            if self.undo_permute and name.endswith(("q_proj.weight", "q_proj.bias")):
                transform = lambda w, n=n_head: permute(w, n)  # noqa: E731
            elif self.undo_permute and name.endswith(("k_proj.weight", "k_proj.bias")):
                transform = lambda w, n=n_kv_head: permute(w, n)  # noqa: E731
            yield map_tensor(self.arch, checkpoint, stored, name, ftype, transform)

    def _hf_name(self, checkpoint: Checkpoint, name: str) -> str:
        if checkpoint.architecture == "LlamaModel":
            return "model." + name
        if name.startswith("model.text_model"):
            return name.replace("text_model.", "")
        if name.startswith("language_model."):
            return name.replace("language_model.", "")
        return name

    def _rope_freqs(self, checkpoint: Checkpoint) -> Iterator[OutputTensor]:
        """Llama 3.1's frequency factors, as llama.cpp generates them."""
        rope = rope_parameters(checkpoint)
        if str(rope.get("rope_type", "")).lower() != "llama3":
            return
        base = rope.get("rope_theta", 10000.0)
        dim = self._head_dim(checkpoint)
        factor = rope.get("factor", 8.0)
        low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
        old_context = checkpoint.config.get("original_max_position_embeddings", 8192)
        freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
        factors = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < old_context / high:
                factors.append(1.0)
            elif wavelen > old_context / low:
                factors.append(factor)
            else:
                smooth = (old_context / wavelen - low) / (high - low)
                factors.append(1 / ((1 - smooth) / factor + smooth))
        values = np.array(factors, dtype=np.float32)
        yield OutputTensor(name=gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                           shape=values.shape, load=lambda: values)


class Qwen2Family(LlamaFamily):
    arch = gguf.MODEL_ARCH.QWEN2
    undo_permute = False  # qwen2 uses NeoX-style rope on the weights as stored

    def write_parameters(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> None:
        write_text_parameters(writer, checkpoint, ftype)
        write_pooling_type(writer, checkpoint)

    def write_vocab(self, writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None:
        write_bpe_vocab(writer, checkpoint)

    def _hf_name(self, checkpoint: Checkpoint, name: str) -> str:
        if checkpoint.architecture == "Qwen2Model":
            return "model." + name
        return name.replace("language_model.", "")

    def _rope_freqs(self, checkpoint: Checkpoint) -> Iterator[OutputTensor]:
        return iter(())
