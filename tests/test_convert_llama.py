"""Llama-family checkpoints made by the test (random weights, GQA, SmolLM2's real BPE tokenizer)
converted to GGUF: llama.cpp's logits match a numpy forward pass, and the tokenizer is encoded
exactly as llama.cpp's converter encoded SmolLM2's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from convert_reference import causal_lm_logits, from_bf16_bits, probe, to_bf16_bits, write_safetensors

from corral.convert import convert_checkpoint

TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                  "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                  "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                  "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template")
PROMPT_IDS = [1, 4093, 198, 10576, 28, 638, 314, 260, 6124, 3444, 47, 2, 198, 1, 520, 9531, 198]
TEXTS = ["Hello world", "<|im_start|>user\nWhy is the sky blue? 12345<|im_end|>",
         "  spaces\tand\nnewlines  ", "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001f999", "x=3.14159; y = x**2"]


def smollm2_fields(smollm2_gguf: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(smollm2_gguf)
    return {key: reader.fields[key].contents() for key in TOKENIZER_KEYS if key in reader.fields}


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_gguf: Path) -> dict[str, Any]:
    return smollm2_fields(smollm2_gguf)


def write_tokenizer(folder: Path, fields: dict[str, Any]) -> None:
    """SmolLM2's tokenizer.json and tokenizer_config.json, rebuilt from its GGUF (the GGUF's
    tokens, merges and types are what llama.cpp's converter read from them)."""
    tokens = fields["tokenizer.ggml.tokens"]
    control = [i for i, kind in enumerate(fields["tokenizer.ggml.token_type"]) if kind == gguf.TokenType.CONTROL]
    tokenizer = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i in control],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {token: i for i, token in enumerate(tokens)},
                  "merges": list(fields["tokenizer.ggml.merges"])},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    config = {"add_prefix_space": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
              "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>", "model_max_length": 8192,
              "tokenizer_class": "GPT2Tokenizer", "chat_template": fields["tokenizer.chat_template"],
              "added_tokens_decoder": {str(i): {"content": tokens[i], "special": True} for i in control}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def random_checkpoint(folder: Path, fields: dict[str, Any], *, qwen2: bool = False) -> dict[str, np.ndarray]:
    """A small random Llama (tied embeddings, F32, one file) or Qwen2 (q/k/v biases, separate
    lm_head, BF16 in two shards with an index) checkpoint; returns its weights as float32."""
    folder.mkdir()
    rng = np.random.default_rng(7 if qwen2 else 3)
    hidden, ff, heads, kv_heads, layers, vocab = 64, 128, 4, 2, 2, 49152
    head_dim = hidden // heads
    config = {"architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
              "model_type": "qwen2" if qwen2 else "llama", "hidden_size": hidden, "intermediate_size": ff,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "num_hidden_layers": layers,
              "vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0 if qwen2 else 100000.0, "tie_word_embeddings": not qwen2,
              "hidden_act": "silu", "torch_dtype": "bfloat16" if qwen2 else "float32",
              "bos_token_id": 1, "eos_token_id": 2}
    (folder / "config.json").write_text(json.dumps(config))
    write_tokenizer(folder, fields)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0, 1 / np.sqrt(cols), (rows, cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1 + rng.normal(0, 0.1, hidden)).astype(np.float32)

    weights = {"model.embed_tokens.weight": rng.normal(0, 0.5, (vocab, hidden)).astype(np.float32),
               "model.norm.weight": norm()}
    if qwen2:
        weights["lm_head.weight"] = rng.normal(0, 0.5, (vocab, hidden)).astype(np.float32)
    for i in range(layers):
        p = f"model.layers.{i}."
        weights |= {p + "input_layernorm.weight": norm(), p + "post_attention_layernorm.weight": norm(),
                    p + "self_attn.q_proj.weight": matrix(heads * head_dim, hidden),
                    p + "self_attn.k_proj.weight": matrix(kv_heads * head_dim, hidden),
                    p + "self_attn.v_proj.weight": matrix(kv_heads * head_dim, hidden),
                    p + "self_attn.o_proj.weight": matrix(hidden, heads * head_dim),
                    p + "mlp.gate_proj.weight": matrix(ff, hidden), p + "mlp.up_proj.weight": matrix(ff, hidden),
                    p + "mlp.down_proj.weight": matrix(hidden, ff)}
        if qwen2:
            weights |= {p + "self_attn.q_proj.bias": rng.normal(0, 0.5, heads * head_dim).astype(np.float32),
                        p + "self_attn.k_proj.bias": rng.normal(0, 0.5, kv_heads * head_dim).astype(np.float32),
                        p + "self_attn.v_proj.bias": rng.normal(0, 0.5, kv_heads * head_dim).astype(np.float32)}
    if not qwen2:
        write_safetensors(folder / "model.safetensors", weights)
        return weights
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, shard_names in shards.items():
        write_safetensors(folder / shard, {n: weights[n] for n in shard_names}, bf16=True)
    index = {"metadata": {}, "weight_map": {n: shard for shard, ns in shards.items() for n in ns}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return {n: from_bf16_bits(to_bf16_bits(w)) for n, w in weights.items()}


def assert_logits_close(model: Path, weights: dict[str, np.ndarray], folder: Path, tolerance: float) -> None:
    config = json.loads((folder / "config.json").read_text())
    expected = causal_lm_logits(weights, config, PROMPT_IDS)
    got = np.asarray(probe("logits", model, PROMPT_IDS)["logits"])
    assert got.shape == expected.shape
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error <= tolerance, error
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


@pytest.mark.slow
def test_llama_logits_and_tokenizer_match(tmp_path: Path, smollm2_gguf: Path,
                                          smollm2_tokenizer: dict[str, Any]) -> None:
    folder = tmp_path / "tiny-llama"
    weights = random_checkpoint(folder, smollm2_tokenizer)
    out = tmp_path / "tiny-llama-f32.gguf"
    convert_checkpoint(folder, out, outtype="f32")

    reader = gguf.GGUFReader(out)
    kv = {key: field.contents() for key, field in reader.fields.items()}
    assert kv["general.architecture"] == "llama"
    assert (kv["llama.attention.head_count"], kv["llama.attention.head_count_kv"]) == (4, 2)
    assert kv["llama.rope.dimension_count"] == 16 and kv["llama.rope.freq_base"] == 100000.0
    assert kv["llama.vocab_size"] == 49152
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and "token_embd.weight" in names  # tied embeddings
    assert {key: kv.get(key) for key in TOKENIZER_KEYS} == smollm2_tokenizer

    texts = TEXTS
    assert probe("tokenize", out, texts) == probe("tokenize", smollm2_gguf, texts)
    assert_logits_close(out, weights, folder, tolerance=3e-3)  # the KV cache is F16


@pytest.mark.slow
def test_qwen2_with_biases_sharded_bf16_to_f16(tmp_path: Path, smollm2_tokenizer: dict[str, Any]) -> None:
    folder = tmp_path / "tiny-qwen2"
    weights = random_checkpoint(folder, smollm2_tokenizer, qwen2=True)
    out = tmp_path / "tiny-qwen2.gguf"
    convert_checkpoint(folder, out)
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "qwen2"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.1.attn_k.bias"] == "F32" and types["blk.1.attn_k.weight"] == "F16"
    assert types["output.weight"] == "F16"
    assert_logits_close(out, weights, folder, tolerance=2e-2)
