"""Embeddings: a context of their own on the runner's weights, pooled per input.

A model loaded to generate gets this context on its first embedding request (mean pooling, as
for any generative model), so one runner serves both; an embedding model is loaded with it alone
(its own pooling). The context holds at most ``EMBEDDING_BATCH`` tokens, as Ollama's embedding
batch does, and inputs are packed into batches of up to that many, as llama-cpp-python's
``Llama.embed`` does, so the vectors are the ones it gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llama_cpp as llama

from .cpu_share import Turns
from .errors import RequestError
from .model import Batch, Model

EMBEDDING_BATCH = 2048
"""Ollama's DefaultEmbeddingNumBatch: the longest input embedded (longer ones are cut or refused,
as ``truncate`` asks). A model loaded with a large ``num_ctx`` to generate would otherwise get a
second context of that size on its first embedding request."""


class Embedder:
    def __init__(self, model: Model, *, num_ctx: int, threads: int, turns: Turns, pooling: int) -> None:
        self.model = model
        self.turns = turns
        size = min(num_ctx, EMBEDDING_BATCH)
        self.n_seq_max = min(size, llama.llama_max_parallel_sequences())
        self.context = model.context(n_ctx=size, n_batch=size, n_ubatch=size, n_seq_max=self.n_seq_max,
                                     threads=threads, embeddings=True, pooling=pooling, kv_unified=True)
        self.limit = llama.llama_n_batch(self.context)
        self.batch = Batch(self.limit)

    def embed(self, inputs: Sequence[str], truncate: bool) -> dict[str, Any]:
        """Vectors (not normalised) and the number of tokens they took."""
        token_lists = []
        for text in inputs:
            tokens = self.model.tokenize(text, add_special=True)
            if len(tokens) > self.limit and not truncate:
                raise RequestError("the input length exceeds the context length")
            token_lists.append(tokens[:self.limit])
        vectors: list[list[float]] = []
        group: list[list[int]] = []
        for tokens in token_lists:
            if group and (sum(map(len, group)) + len(tokens) > self.limit or len(group) >= self.n_seq_max):
                vectors += self._run(group)
                group = []
            group.append(tokens)
        if group:
            vectors += self._run(group)
        return {"embeddings": vectors, "tokens": sum(map(len, token_lists))}

    def _run(self, group: list[list[int]]) -> list[list[float]]:
        self.batch.clear()
        for sequence, tokens in enumerate(group):
            self.batch.add(tokens, 0, sequence, output="all")
        llama.llama_memory_clear(llama.llama_get_memory(self.context), True)
        if len(self.batch) == 0:
            return [[0.0] * self.model.n_embd for _ in group]
        with self.turns:
            status = llama.llama_decode(self.context, self.batch.raw)
        if status != 0:
            raise RequestError(f"llama_decode failed with status {status}", 500)
        vectors = []
        for sequence, tokens in enumerate(group):
            pointer = llama.llama_get_embeddings_seq(self.context, sequence) if tokens else None
            vectors.append(pointer[:self.model.n_embd] if pointer else [0.0] * self.model.n_embd)
        return vectors

    def close(self) -> None:
        self.batch.close()
        if self.context is not None:
            llama.llama_free(self.context)
            self.context = None
