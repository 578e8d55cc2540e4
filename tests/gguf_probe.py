"""Loads a GGUF with llama-cpp-python in its own process (so llama.cpp is only ever called from
one thread of a process) and prints what a test asks for as JSON.

    python gguf_probe.py embed MODEL < ["text", ...]        -> {"tokens": [[...]], "embeddings": [[...]]}
    python gguf_probe.py logits MODEL < [token ids]          -> {"logits": [[...], ...]}
    python gguf_probe.py tokenize MODEL < ["text", ...]     -> {"tokens": [[...]]}
"""

from __future__ import annotations

import json
import sys

import llama_cpp


def main() -> None:
    mode, model = sys.argv[1], sys.argv[2]
    request = json.load(sys.stdin)
    if mode == "embed":
        llm = llama_cpp.Llama(model_path=model, embedding=True, n_ctx=512, verbose=False)
        tokens = [llm.tokenize(text.encode(), add_bos=True, special=False) for text in request]
        embeddings = [llm.embed(text) for text in request]
        json.dump({"tokens": tokens, "embeddings": embeddings}, sys.stdout)
    elif mode == "logits":
        llm = llama_cpp.Llama(model_path=model, logits_all=True, n_ctx=64, n_batch=64, verbose=False)
        llm.eval(request)
        json.dump({"logits": [list(map(float, row)) for row in llm.scores[: len(request)]]}, sys.stdout)
    elif mode == "tokenize":
        llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
        json.dump({"tokens": [llm.tokenize(text.encode(), add_bos=True, special=True) for text in request]},
                  sys.stdout)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
