"""Independent references for the converter tests: a safetensors writer and reader, a WordPiece
tokenizer, numpy forward passes of BERT (sentence-transformers mean pooling) and of Llama/Qwen2,
and a helper that runs llama.cpp on a GGUF in a subprocess (tests/gguf_probe.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

PROBE = Path(__file__).with_name("gguf_probe.py")


def probe(mode: str, model: Path, request: Any) -> dict[str, Any]:
    result = subprocess.run([sys.executable, str(PROBE), mode, str(model)], input=json.dumps(request),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


# -- safetensors --------------------------------------------------------------------------------

def to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounding to nearest even."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], *, bf16: bool = False) -> None:
    """float32 arrays, stored as F32 (or as BF16 when ``bf16``)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        data = to_bf16_bits(array) if bf16 else array.astype("<f4")
        raw = data.tobytes()
        header[name] = {"dtype": "BF16" if bf16 else "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"".join(chunks))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    kinds = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8"}
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        data = np.frombuffer(raw[8 + length + begin:8 + length + end], dtype=kinds[entry["dtype"]])
        if entry["dtype"] == "BF16":
            data = from_bf16_bits(data)
        out[name] = data.reshape(entry["shape"]).astype(np.float32)
    return out


# -- WordPiece (BERT uncased) -------------------------------------------------------------------

def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """BertTokenizer (lower case, accents stripped) + WordPiece, with [CLS] ... [SEP]."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for ch in chunk:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                words.append(ch)
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    ids = [vocab["[CLS]"]]
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            start = end
        ids.extend(pieces)
    return ids + [vocab["[SEP]"]]


# -- forward passes -----------------------------------------------------------------------------

def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.vectorize(math.erf)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def bert_sentence_embedding(w: dict[str, np.ndarray], config: dict[str, Any], ids: list[int]) -> np.ndarray:
    """BertModel forward + mean pooling + L2 normalisation (sentence-transformers)."""
    n = len(ids)
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def linear(name: str, h: np.ndarray) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (linear(f"attention.self.{t}", x).reshape(n, heads, -1).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))
        scores = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1]))
        context = (scores @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(x + linear("attention.output.dense", context),
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = linear("intermediate.dense", x)
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
        x = _layer_norm(x + linear("output.dense", h),
                        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def _rotate_half(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def causal_lm_logits(w: dict[str, np.ndarray], config: dict[str, Any], ids: list[int]) -> np.ndarray:
    """Hugging Face LlamaForCausalLM / Qwen2ForCausalLM forward (rotate-half RoPE, GQA, optional
    q/k/v biases, tied or separate output), float64 for a clean reference."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    n = len(ids)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config["hidden_size"] // heads
    eps = config["rms_norm_eps"]
    inv_freq = 1.0 / (config["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim))
    angles = np.outer(np.arange(n), inv_freq)
    cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
    x = w["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name: str, h: np.ndarray) -> np.ndarray:
            out = h @ w[p + name + ".weight"].T
            return out + w[p + name + ".bias"] if p + name + ".bias" in w else out

        h = _rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = proj("self_attn.q_proj", h).reshape(n, heads, head_dim).transpose(1, 0, 2)
        k = proj("self_attn.k_proj", h).reshape(n, kv_heads, head_dim).transpose(1, 0, 2)
        v = proj("self_attn.v_proj", h).reshape(n, kv_heads, head_dim).transpose(1, 0, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k, v = np.repeat(k, heads // kv_heads, axis=0), np.repeat(v, heads // kv_heads, axis=0)
        scores = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(head_dim) + mask)
        x = x + proj("self_attn.o_proj", (scores @ v).transpose(1, 0, 2).reshape(n, -1))
        h = _rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = proj("mlp.gate_proj", h)
        x = x + proj("mlp.down_proj", gate / (1 + np.exp(-gate)) * proj("mlp.up_proj", h))
    x = _rms_norm(x, w["model.norm.weight"], eps)
    return x @ w.get("lm_head.weight", w["model.embed_tokens.weight"]).T
