"""What every architecture family shares: the planned output tensors, llama.cpp's choice of
output type per tensor, the common hyperparameters and the sentence-transformers pooling type."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import gguf
import numpy as np

from corral.errors import ConversionError

from .checkpoint import Checkpoint, read_json
from .safetensors import StoredTensor

OUTTYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
}
_QTYPE_OF = {
    gguf.LlamaFileType.ALL_F32: gguf.GGMLQuantizationType.F32,
    gguf.LlamaFileType.MOSTLY_F16: gguf.GGMLQuantizationType.F16,
    gguf.LlamaFileType.MOSTLY_BF16: gguf.GGMLQuantizationType.BF16,
}
# Tensors llama.cpp keeps in float32 whatever the output type (besides 1-D ones and norms).
_ALWAYS_F32 = (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES, gguf.MODEL_TENSOR.FFN_GATE_INP)


@attrs.frozen(kw_only=True)
class OutputTensor:
    """One GGUF tensor: its name, logical shape (numpy order) and how to compute its float data."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]
    qtype: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * (4 if self.qtype == gguf.GGMLQuantizationType.F32 else 2)

    def data(self) -> np.ndarray:
        array = np.ascontiguousarray(self.load())
        if array.dtype not in (np.float16, np.float32):
            array = array.astype(np.float32)
        return gguf.quants.quantize(array, self.qtype)

    def add_info(self, writer: gguf.GGUFWriter) -> None:
        if self.qtype == gguf.GGMLQuantizationType.BF16:
            shape = (*self.shape[:-1], self.shape[-1] * 2)
            writer.add_tensor_info(self.name, shape, np.dtype(np.uint8), self.nbytes, raw_dtype=self.qtype)
        else:
            dtype = np.dtype(np.float32 if self.qtype == gguf.GGMLQuantizationType.F32 else np.float16)
            writer.add_tensor_info(self.name, self.shape, dtype, self.nbytes, raw_dtype=self.qtype)


def output_qtype(arch: gguf.MODEL_ARCH, name: str, shape: tuple[int, ...],
                 ftype: gguf.LlamaFileType) -> gguf.GGMLQuantizationType:
    """llama.cpp's rule: 1-D tensors, norms, biases and a few embeddings stay F32."""
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    if any(name == gguf.TENSOR_NAMES[key] + ".weight" for key in _ALWAYS_F32 if key in gguf.MODEL_TENSORS[arch]):
        return gguf.GGMLQuantizationType.F32
    return _QTYPE_OF[ftype]


def map_tensor(arch: gguf.MODEL_ARCH, checkpoint: Checkpoint, stored: StoredTensor, hf_name: str,
               ftype: gguf.LlamaFileType,
               transform: Callable[[np.ndarray], np.ndarray] | None = None) -> OutputTensor:
    """The output tensor for a stored one, named as llama.cpp's tensor map names it."""
    block_count = checkpoint.hparam("num_hidden_layers", "n_layers", "n_layer", "num_layers")
    name = gguf.get_tensor_name_map(arch, block_count).get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ConversionError(f"{stored.file.name}: cannot map tensor {stored.name!r} to a "
                              f"{gguf.MODEL_ARCH_NAMES[arch]} GGUF tensor")
    if stored.dtype not in ("F64", "F32", "F16", "BF16"):
        raise ConversionError(f"{stored.file.name}: tensor {stored.name!r} has dtype {stored.dtype}; "
                              "quantized or integer checkpoints are not supported")

    def load() -> np.ndarray:
        data = stored.read()
        return transform(data) if transform else data

    return OutputTensor(name=name, shape=stored.shape, load=load,
                        qtype=output_qtype(arch, name, stored.shape, ftype))


def write_text_parameters(writer: gguf.GGUFWriter, checkpoint: Checkpoint, ftype: gguf.LlamaFileType) -> None:
    """llama.cpp's TextModel.set_gguf_parameters for the keys dense models use."""
    hp = checkpoint.hparam
    writer.add_block_count(hp("num_hidden_layers", "n_layers", "n_layer", "num_layers"))
    if (n_ctx := hp("max_position_embeddings", "n_ctx", "n_positions", "max_length", default=None)) is not None:
        writer.add_context_length(n_ctx)
    if (n_embd := hp("hidden_size", "n_embd", "dim", default=None)) is not None:
        writer.add_embedding_length(n_embd)
    if (n_ff := hp("intermediate_size", "n_inner", "hidden_dim", default=None)) is not None:
        writer.add_feed_forward_length(n_ff)
    if (n_head := hp("num_attention_heads", "n_head", "n_heads", default=None)) is not None:
        writer.add_head_count(n_head)
    if (n_head_kv := hp("num_key_value_heads", "n_kv_heads", default=None)) is not None:
        writer.add_head_count_kv(n_head_kv)
    if checkpoint.config.get("is_causal") is False:
        writer.add_causal_attention(False)
    rope = rope_parameters(checkpoint)
    rope_type = rope.get("rope_type")
    factor = rope.get("factor")
    if rope_type == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(factor)
    elif rope_type == "yarn" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(factor)
        if "original_max_position_embeddings" not in rope:
            raise ConversionError("config.json: yarn rope scaling without original_max_position_embeddings")
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        for key, add in (("extrapolation_factor", writer.add_rope_scaling_yarn_ext_factor),
                         ("beta_fast", writer.add_rope_scaling_yarn_beta_fast),
                         ("beta_slow", writer.add_rope_scaling_yarn_beta_slow)):
            if rope.get(key) is not None:
                add(rope[key])
        if (attn := rope.get("attention_factor", rope.get("attn_factor"))) is not None:
            writer.add_rope_scaling_yarn_attn_factor(attn)
    elif rope_type in ("su", "longrope"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
    if (theta := rope.get("rope_theta")) is not None:
        writer.add_rope_freq_base(theta)
    if (rms_eps := hp("rms_norm_eps", "norm_eps", default=None)) is not None:
        writer.add_layer_norm_rms_eps(rms_eps)
    if (norm_eps := hp("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", default=None)) is not None:
        writer.add_layer_norm_eps(norm_eps)
    if (head_dim := checkpoint.config.get("head_dim")) is not None:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(ftype)


def rope_parameters(checkpoint: Checkpoint) -> dict[str, Any]:
    """config.json's rope settings in one dict (rope_parameters or rope_scaling, plus rope_theta)."""
    config = checkpoint.config
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    if "rope_theta" not in rope and (theta := checkpoint.hparam("rope_theta", "rotary_emb_base", default=None)):
        rope["rope_theta"] = theta
    if "rope_type" not in rope and "type" in rope:
        rope["rope_type"] = rope["type"]
    return rope


def write_pooling_type(writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None:
    """The sentence-transformers pooling of the folder (modules.json -> 1_Pooling/config.json)."""
    modules = read_json(checkpoint.folder / "modules.json", required=False)
    if not isinstance(modules, list):
        return
    path = next((m.get("path") for m in modules if isinstance(m, dict)
                 and str(m.get("type", "")).endswith("Pooling")), None)
    if not isinstance(path, str) or ".." in path.split("/"):
        return
    pooling = read_json(checkpoint.folder / path / "config.json")
    modes = {"mean": gguf.PoolingType.MEAN, "cls": gguf.PoolingType.CLS, "lasttoken": gguf.PoolingType.LAST}
    if pooling.get("pooling_mode_mean_tokens"):
        kind = gguf.PoolingType.MEAN
    elif pooling.get("pooling_mode_cls_token"):
        kind = gguf.PoolingType.CLS
    elif pooling.get("pooling_mode_lasttoken"):
        kind = gguf.PoolingType.LAST
    elif pooling.get("pooling_mode") in modes:
        kind = modes[pooling["pooling_mode"]]
    else:
        raise ConversionError(f"{path}/config.json: only mean, cls and last-token pooling are supported")
    writer.add_pooling_type(kind)
