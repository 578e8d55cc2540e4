"""A small llama GGUF with random F32/F16 weights, written with the ``gguf`` package, that reuses
the real SmolLM2 tokenizer so that it tokenizes (and templates) like a real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EMBED, FFN, HEADS, KV_HEADS, BLOCKS, CONTEXT = 256, 512, 4, 2, 2, 512


def write_tiny_llama(path: Path, tokenizer_source: Path, *, dtype: str = "f16", seed: int = 0,
                     chat_template: str | None = None) -> Path:
    """Write the model to ``path``: 2D weights in ``dtype`` ("f16" or "f32"), norms in F32; the
    chat template is the source's unless ``chat_template`` is given."""
    import gguf

    reader = gguf.GGUFReader(str(tokenizer_source))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_block_count(BLOCKS)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model(reader.fields["tokenizer.ggml.model"].contents())
    writer.add_tokenizer_pre(reader.fields["tokenizer.ggml.pre"].contents())
    writer.add_token_list(tokens)
    writer.add_token_types(reader.fields["tokenizer.ggml.token_type"].contents())
    writer.add_token_merges(reader.fields["tokenizer.ggml.merges"].contents())
    for key in ("bos", "eos", "unknown", "padding"):
        value = reader.fields[f"tokenizer.ggml.{key}_token_id"].contents()
        getattr(writer, {"bos": "add_bos_token_id", "eos": "add_eos_token_id", "unknown": "add_unk_token_id",
                         "padding": "add_pad_token_id"}[key])(value)
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template or reader.fields["tokenizer.chat_template"].contents())

    rng = np.random.default_rng(seed)
    weight_type = np.float16 if dtype == "f16" else np.float32

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.05).astype(weight_type)

    def norm() -> np.ndarray:
        return np.ones(EMBED, dtype=np.float32)

    head_dim = EMBED // HEADS
    writer.add_tensor("token_embd.weight", matrix(vocab, EMBED))
    writer.add_tensor("output_norm.weight", norm())
    for block in range(BLOCKS):
        prefix = f"blk.{block}."
        writer.add_tensor(prefix + "attn_norm.weight", norm())
        writer.add_tensor(prefix + "attn_q.weight", matrix(EMBED, EMBED))
        writer.add_tensor(prefix + "attn_k.weight", matrix(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(prefix + "attn_v.weight", matrix(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(prefix + "attn_output.weight", matrix(EMBED, EMBED))
        writer.add_tensor(prefix + "ffn_norm.weight", norm())
        writer.add_tensor(prefix + "ffn_gate.weight", matrix(FFN, EMBED))
        writer.add_tensor(prefix + "ffn_up.weight", matrix(FFN, EMBED))
        writer.add_tensor(prefix + "ffn_down.weight", matrix(EMBED, FFN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_lora(path: Path, *, rank: int = 4, scale: float = 0.5, seed: int = 1) -> Path:
    """A LoRA adapter GGUF (llama.cpp's layout) for the attention queries and values of the tiny llama."""
    import gguf

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    head_dim = EMBED // HEADS
    outputs = {"attn_q": EMBED, "attn_v": KV_HEADS * head_dim}
    for block in range(BLOCKS):
        for name, rows in outputs.items():
            prefix = f"blk.{block}.{name}.weight"
            writer.add_tensor(prefix + ".lora_a", (rng.standard_normal((rank, EMBED)) * scale).astype(np.float32))
            writer.add_tensor(prefix + ".lora_b", (rng.standard_normal((rows, rank)) * scale).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
