"""all-MiniLM-L6-v2 (a sentence-transformers BERT folder) converted to GGUF and run by llama.cpp:
tokens and sentence embeddings match an independent numpy BERT forward pass."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from convert_reference import bert_sentence_embedding, probe, read_safetensors, wordpiece

from corral.convert import convert_checkpoint, default_outfile
from corral.types import Progress

SENTENCES = [
    "why is the sky blue?",
    "The quick brown fox jumps over the lazy dog.",
    "Llamas are members of the camelid family, café!",
    "Embeddings turn sentences into vectors; similar meanings land close together.",
    "GPU 3090 costs $1,499.99 (approx.)",
]


@pytest.fixture(scope="module")
def minilm_gguf(minilm_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "minilm.gguf"
    seen: list[Progress] = []
    convert_checkpoint(minilm_folder, out, progress=seen.append)
    assert seen[0].completed == 0 and seen[-1].completed == seen[-1].total > 0
    assert all(p.status == "converting model" for p in seen)
    assert [p.completed for p in seen] == sorted(p.completed for p in seen)
    return out


def fields(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def test_metadata_is_llama_cpps_bert_layout(minilm_gguf: Path) -> None:
    kv = fields(minilm_gguf)
    assert kv["general.architecture"] == "bert"
    assert kv["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert kv["bert.block_count"] == 6 and kv["bert.embedding_length"] == 384
    assert kv["bert.attention.head_count"] == 12 and kv["bert.context_length"] == 512
    assert kv["bert.attention.causal"] is False
    assert kv["bert.pooling_type"] == gguf.PoolingType.MEAN
    assert kv["tokenizer.ggml.model"] == "bert" and kv["tokenizer.ggml.token_type_count"] == 2
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"]) == (101, 102)
    assert kv["tokenizer.ggml.add_bos_token"] is True and kv["tokenizer.ggml.add_eos_token"] is True
    tokens = kv["tokenizer.ggml.tokens"]
    assert len(tokens) == 30522 and tokens[101] == "[CLS]" and tokens[2003] == "\u2581is"
    assert tokens[2015] == "s"  # "##s": continuation pieces lose their prefix
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(minilm_gguf).tensors}
    assert types["token_embd.weight"] == "F16" and types["blk.0.attn_q.weight"] == "F16"
    assert types["position_embd.weight"] == "F32" and types["token_types.weight"] == "F32"
    assert types["blk.5.layer_output_norm.weight"] == "F32" and types["blk.0.attn_q.bias"] == "F32"
    assert len(types) == 5 + 6 * 16


@pytest.mark.slow
def test_tokens_and_embeddings_match_a_numpy_bert(minilm_folder: Path, minilm_gguf: Path) -> None:
    vocab = {line: i for i, line in enumerate((minilm_folder / "vocab.txt").read_text("utf-8").splitlines())}
    weights = read_safetensors(minilm_folder / "model.safetensors")
    config = json.loads((minilm_folder / "config.json").read_text())
    result = probe("embed", minilm_gguf, SENTENCES)
    for sentence, tokens, embedding in zip(SENTENCES, result["tokens"], result["embeddings"]):
        expected_tokens = wordpiece(sentence, vocab)
        assert tokens == expected_tokens, sentence
        reference = bert_sentence_embedding(weights, config, expected_tokens)
        got = np.asarray(embedding)
        cosine = float(got @ reference / np.linalg.norm(got))
        assert cosine >= 0.999, (sentence, cosine)


def test_default_outfile_is_named_like_llama_cpps(minilm_folder: Path) -> None:
    assert default_outfile(minilm_folder) == minilm_folder / "MiniLM-L6-H384-Uncased-23M-F16.gguf"
    assert default_outfile(minilm_folder, "bf16").name.endswith("-BF16.gguf")


def test_f32_and_bf16_output_types(minilm_folder: Path, tmp_path: Path) -> None:
    for outtype, ftype, kind in (("f32", gguf.LlamaFileType.ALL_F32, "F32"),
                                 ("bf16", gguf.LlamaFileType.MOSTLY_BF16, "BF16")):
        out = tmp_path / f"m-{outtype}.gguf"
        convert_checkpoint(minilm_folder, out, outtype=outtype)
        reader = gguf.GGUFReader(out)
        assert reader.fields["general.file_type"].contents() == ftype
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        assert types["blk.0.ffn_up.weight"] == kind and types["blk.0.ffn_up.bias"] == "F32"
