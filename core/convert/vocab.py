"""Tokenizers from tokenizer.json, written as llama.cpp's converter writes them: byte-level BPE
("gpt2" with merges and the pre-tokenizer's llama.cpp name) and WordPiece ("bert", phantom-space
tokens). Special token ids, add_bos/add_eos and the chat template come from gguf's SpecialVocab,
the code llama.cpp's converter uses for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

from corral.errors import ConversionError

from .checkpoint import Checkpoint, read_json

LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
               "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

# llama.cpp names a BPE pre-tokenizer by hashing how the Hugging Face tokenizer splits a test
# text; without that library, corral recognises the pre-tokenizer steps that produce those
# splits. The names are llama.cpp's (llama-vocab.cpp gives each its regular expressions).
KNOWN_PRE_TOKENIZERS: dict[tuple[str, ...], str] = {
    ("bytelevel+regex",): "gpt-2",
    ("digits:individual", "bytelevel+regex"): "smollm",
    (f"split:{LLAMA3_REGEX}", "bytelevel"): "llama-bpe",
    (f"split:{QWEN2_REGEX}", "bytelevel"): "qwen2",
}
DEFAULT_PRE = "default"


def load_tokenizer_json(checkpoint: Checkpoint) -> dict[str, Any]:
    tokenizer = read_json(checkpoint.folder / "tokenizer.json")
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("model"), dict):
        raise ConversionError("tokenizer.json: no \"model\" object")
    return tokenizer


def bpe_pre_name(tokenizer: dict[str, Any]) -> str:
    """The llama.cpp name of a byte-level BPE tokenizer's pre-tokenizer ("default" when unknown,
    as Ollama's converter does)."""
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    signature = tuple(_step_signature(step) for step in steps if isinstance(step, dict))
    return KNOWN_PRE_TOKENIZERS.get(signature, DEFAULT_PRE)


def _step_signature(step: dict[str, Any]) -> str:
    kind = step.get("type")
    if kind == "ByteLevel":
        prefix = "+prefix" if step.get("add_prefix_space") else ""
        return "bytelevel" + prefix + ("+regex" if step.get("use_regex", True) else "")
    if kind == "Digits":
        return "digits:individual" if step.get("individual_digits") else "digits"
    if kind == "Split":
        pattern = step.get("pattern") or {}
        return f"split:{pattern.get('Regex', pattern.get('String'))}"
    return str(kind)


def _tokens_and_types(checkpoint: Checkpoint, tokenizer: dict[str, Any]) -> tuple[list[str], list[int]]:
    """Every token by id, with llama.cpp's token types, padded to config.json's vocab_size."""
    vocab = tokenizer["model"].get("vocab")
    if not isinstance(vocab, dict):
        raise ConversionError("tokenizer.json: model has no \"vocab\" object")
    added = {t["content"]: t for t in tokenizer.get("added_tokens") or []
             if isinstance(t, dict) and isinstance(t.get("content"), str) and isinstance(t.get("id"), int)}
    by_id: dict[int, str] = {}
    for text, token_id in list(vocab.items()) + [(t["content"], t["id"]) for t in added.values()]:
        if not isinstance(token_id, int) or token_id < 0:
            raise ConversionError(f"tokenizer.json: bad id {token_id!r} for token {text!r}")
        by_id[token_id] = text
    vocab_size = checkpoint.hparam("vocab_size", default=len(by_id))
    if by_id and max(by_id) >= vocab_size:
        raise ConversionError(f"tokenizer.json: token id {max(by_id)} is not below config.json's "
                              f"vocab_size {vocab_size}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif text in added:
            if added[text].get("special") or _looks_special(text):
                types.append(gguf.TokenType.CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
            tokens.append(text)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _looks_special(text: str) -> bool:
    # llama.cpp's does_token_look_special: added tokens some models forget to mark special.
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _special_vocab(folder: Path, *, merges: bool, n_vocab: int | None = None) -> gguf.SpecialVocab:
    try:
        return gguf.SpecialVocab(folder, load_merges=merges, n_vocab=n_vocab)
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ConversionError(f"tokenizer.json / tokenizer_config.json: cannot read special tokens ({e})") from e


def write_bpe_vocab(writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None:
    """A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen2, SmolLM ...) as llama.cpp's _set_vocab_gpt2."""
    folder = checkpoint.folder
    if (folder / "tokenizer.model").is_file():
        raise ConversionError("tokenizer.model: SentencePiece tokenizers are not supported yet "
                              "(only byte-level BPE tokenizer.json)")
    tokenizer = load_tokenizer_json(checkpoint)
    model = tokenizer["model"]
    if model.get("type") != "BPE":
        raise ConversionError(f"tokenizer.json: tokenizer type {model.get('type')!r} is not supported here "
                              "(expected BPE)")
    if model.get("byte_fallback"):
        raise ConversionError("tokenizer.json: SentencePiece-style BPE (byte_fallback) is not supported yet")
    tokens, types = _tokens_and_types(checkpoint, tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(bpe_pre_name(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    _special_vocab(folder, merges=True).add_to_gguf(writer, quiet=True)
    config = read_json(folder / "tokenizer_config.json", required=False) or {}
    if isinstance(config, dict) and "add_prefix_space" in config:
        writer.add_add_space_prefix(bool(config["add_prefix_space"]))


def write_wordpiece_vocab(writer: gguf.GGUFWriter, checkpoint: Checkpoint) -> None:
    """A WordPiece tokenizer (BERT) as llama.cpp's BertModel.set_vocab: "##" continuation pieces
    lose their prefix, every other non-control token gets the phantom space U+2581."""
    folder = checkpoint.folder
    if (folder / "tokenizer.json").is_file():
        tokenizer = load_tokenizer_json(checkpoint)
        if tokenizer["model"].get("type") != "WordPiece":
            raise ConversionError(f"tokenizer.json: tokenizer type {tokenizer['model'].get('type')!r} is not "
                                  "supported for BERT (expected WordPiece)")
    elif (folder / "vocab.txt").is_file():
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        tokenizer = {"model": {"type": "WordPiece", "vocab": {line: i for i, line in enumerate(lines)}},
                     "added_tokens": [{"content": t, "id": i, "special": True} for i, t in enumerate(lines)
                                      if t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]}
    else:
        raise ConversionError(f"tokenizer.json: file not found in {folder} (nor vocab.txt)")
    tokens, types = _tokens_and_types(checkpoint, tokenizer)
    tokens = [t if kind == gguf.TokenType.CONTROL else t[2:] if t.startswith("##") else "\u2581" + t
              for t, kind in zip(tokens, types)]
    writer.add_token_type_count(checkpoint.hparam("type_vocab_size", default=1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre(DEFAULT_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    _special_vocab(folder, merges=False, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
