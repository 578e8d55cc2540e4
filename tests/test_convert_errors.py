"""Every way a checkpoint can be unusable gives a ConversionError naming the file and the
problem, and leaves nothing at the output path (an existing file there is kept)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from convert_reference import write_safetensors

from corral.convert import convert_checkpoint
from corral.errors import ConversionError, InvalidRequest

LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
                "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1, "vocab_size": 4,
                "rms_norm_eps": 1e-5, "max_position_embeddings": 32}


def tiny_folder(tmp_path: Path, config: dict | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config or LLAMA_CONFIG))
    write_safetensors(folder / "model.safetensors", {"model.embed_tokens.weight": np.ones((4, 8), np.float32),
                                                     "model.norm.weight": np.ones(8, np.float32)})
    tokenizer = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]},
                 "added_tokens": [{"id": 3, "content": "<s>", "special": True}], "pre_tokenizer": None}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


def header_file(folder: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(raw) if length is None else length
    (folder / "model.safetensors").write_bytes(size.to_bytes(8, "little") + raw + data)


def assert_fails(folder: Path, out: Path, *words: str, outtype: str = "f16") -> None:
    with pytest.raises(ConversionError) as caught:
        convert_checkpoint(folder, out, outtype=outtype)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert not out.exists() or out.read_bytes() == b"keep me"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def test_conversion_error_is_a_400(tmp_path: Path) -> None:
    assert issubclass(ConversionError, InvalidRequest) and ConversionError.status == 400


def test_the_tiny_folder_converts(tmp_path: Path) -> None:
    out = tmp_path / "out.gguf"
    convert_checkpoint(tiny_folder(tmp_path), out)
    assert out.stat().st_size > 0


def test_unsupported_architecture(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path, {**LLAMA_CONFIG, "architectures": ["GPT2LMHeadModel"]})
    assert_fails(folder, tmp_path / "out.gguf", "config.json", "unsupported architecture", "GPT2LMHeadModel")


def test_missing_architectures_entry(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path, {k: v for k, v in LLAMA_CONFIG.items() if k != "architectures"})
    assert_fails(folder, tmp_path / "out.gguf", "config.json", "architectures")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    folder = tiny_folder(tmp_path)
    (folder / name).unlink()
    assert_fails(folder, tmp_path / "out.gguf", name, "not found")


def test_missing_folder(tmp_path: Path) -> None:
    assert_fails(tmp_path / "nowhere", tmp_path / "out.gguf", "nowhere", "not a folder")


def test_config_that_is_not_json(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    (folder / "config.json").write_text("{not json")
    assert_fails(folder, tmp_path / "out.gguf", "config.json", "JSON")


GOOD = {"model.norm.weight": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}


@pytest.mark.parametrize(("header", "data", "length", "words"), [
    (GOOD, b"\0" * 32, 1 << 40, ["corrupt safetensors header", "header length"]),
    (GOOD, b"", 10_000, ["truncated"]),
    (b"\xff\xfe not json", b"", None, ["not JSON"]),
    (b"[1, 2]", b"", None, ["not a JSON object"]),
    ({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, b"\0" * 16, None, ["'w'", "out of range"]),
    ({"w": {"dtype": "F7", "shape": [8], "data_offsets": [0, 32]}}, b"\0" * 32, None, ["'w'", "dtype 'F7'"]),
    ({"w": {"dtype": "F32", "shape": [9], "data_offsets": [0, 32]}}, b"\0" * 32, None, ["'w'", "expected 36"]),
    ({"w": {"dtype": "F32", "shape": [-8], "data_offsets": [0, 32]}}, b"\0" * 32, None, ["bad shape"]),
    ({"w": {"dtype": "F32", "shape": [8], "data_offsets": [32, 0]}}, b"\0" * 32, None, ["out of order"]),
    ({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0]}}, b"\0" * 32, None, ["bad data_offsets"]),
    ({"w": "oops"}, b"", None, ["not an object"]),
])
def test_corrupt_safetensors(tmp_path: Path, header: dict | bytes, data: bytes, length: int | None,
                             words: list[str]) -> None:
    folder = tiny_folder(tmp_path)
    header_file(folder, header, data, length)
    out = tmp_path / "out.gguf"
    out.write_bytes(b"keep me")
    assert_fails(folder, out, "model.safetensors", *words)


def test_truncated_data(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    assert_fails(folder, tmp_path / "out.gguf", "model.safetensors", "out of range", "truncated file")


def test_shorter_than_a_header(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\1\0")
    assert_fails(folder, tmp_path / "out.gguf", "model.safetensors", "truncated")


def test_integer_weights_are_refused(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    header_file(folder, {"model.norm.weight": {"dtype": "I32", "shape": [8], "data_offsets": [0, 32]}}, b"\0" * 32)
    assert_fails(folder, tmp_path / "out.gguf", "model.safetensors", "I32")


def test_unmappable_tensor(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    write_safetensors(folder / "model.safetensors", {"model.mystery.weight": np.ones(8, np.float32)})
    assert_fails(folder, tmp_path / "out.gguf", "model.safetensors", "model.mystery.weight")


@pytest.mark.parametrize(("weight_map", "words"), [
    ({"model.norm.weight": "model-00002-of-00002.safetensors"}, ["model-00002-of-00002.safetensors", "not found"]),
    ({"model.norm.weight": "../elsewhere.safetensors"}, ["bad shard file name"]),
    ({"model.lost.weight": "model.safetensors"}, ["model.lost.weight", "missing"]),
])
def test_bad_shard_index(tmp_path: Path, weight_map: dict, words: list[str]) -> None:
    folder = tiny_folder(tmp_path)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_fails(folder, tmp_path / "out.gguf", *words)


def test_unknown_outtype(tmp_path: Path) -> None:
    assert_fails(tiny_folder(tmp_path), tmp_path / "out.gguf", "q4_0", outtype="q4_0")


def test_corrupt_sentencepiece_model(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    (folder / "tokenizer.model").write_bytes(b"\n\x03")
    assert_fails(folder, tmp_path / "out.gguf", "tokenizer.model", "not a SentencePiece model")


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="does not exist"):
        convert_checkpoint(tiny_folder(tmp_path), tmp_path / "no" / "out.gguf")


def test_f16_weights_convert_to_every_type(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    weights = {"model.embed_tokens.weight": np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8),
               "model.norm.weight": np.ones(8, np.float32)}
    header, raw, offset = {}, b"", 0
    for name, array in weights.items():
        data = array.astype("<f2").tobytes()
        header[name] = {"dtype": "F16", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        raw, offset = raw + data, offset + len(data)
    header_file(folder, header, raw)
    for outtype in ("f16", "f32", "bf16"):
        out = tmp_path / f"{outtype}.gguf"
        convert_checkpoint(folder, out, outtype=outtype)
        tensor = next(t for t in gguf.GGUFReader(out).tensors if t.name == "token_embd.weight")
        assert tensor.tensor_type.name == outtype.upper()
        if outtype != "bf16":
            np.testing.assert_allclose(np.asarray(tensor.data, np.float32).reshape(4, 8),
                                       weights["model.embed_tokens.weight"], atol=1e-3)


@pytest.mark.parametrize(("data", "why"), [
    (b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "overlong varint"),
    (b"\x0b", "unsupported wire type"),
    (b"\x0a\x02\x10\x01", "without text"),
    (b"\x0a\x05\x0a\x01a\x18\x09", "unknown type"),
    (b"\x10\x01", "no pieces"),
])
def test_corrupt_sentencepiece_pieces(tmp_path: Path, data: bytes, why: str) -> None:
    folder = tiny_folder(tmp_path)
    (folder / "tokenizer.model").write_bytes(data)
    assert_fails(folder, tmp_path / "out.gguf", "tokenizer.model", why)


def test_token_ids_beyond_the_vocab_size(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path, {**LLAMA_CONFIG, "vocab_size": 3})
    assert_fails(folder, tmp_path / "out.gguf", "tokenizer.json", "token id 3", "vocab_size 3")


def test_bpe_tokenizer_json_of_another_kind(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path)
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": []}}))
    assert_fails(folder, tmp_path / "out.gguf", "tokenizer.json", "Unigram")


def test_a_progress_callback_that_raises_aborts_cleanly(tmp_path: Path) -> None:
    """Callers cancel a conversion running in a worker thread by raising from ``progress``."""
    out = tmp_path / "out.gguf"
    out.write_bytes(b"keep me")
    seen = []

    def cancel_after_first(update: object) -> None:
        seen.append(update)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(tiny_folder(tmp_path), out, progress=cancel_after_first)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out.gguf"]
