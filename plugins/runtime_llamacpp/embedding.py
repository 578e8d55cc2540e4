"""Embeddings: a context of their own on the runner's weights, pooled per input.

A model loaded to generate gets this context on its first embedding request (mean pooling, as
for any generative model), so one runner serves both; an embedding model is loaded with it alone
(its own pooling). The context holds at most ``EMBEDDING_BATCH`` tokens, as Ollama's embedding
batch does; each input is pooled over its own tokens, as llama-cpp-python's ``Llama.embed`` does,
so the vectors are the ones it gives. A request is an ``EmbeddingJob``: the runner embeds one batch
of it (``STEP_TOKENS``) per step, between the steps of the completions in progress, so a request of
thousands of inputs does not stop the streams.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as llama

from .cpu_share import Turns
from .errors import RequestError
from .model import Batch, Model

EMBEDDING_BATCH = 2048
"""Ollama's DefaultEmbeddingNumBatch: the longest input embedded (longer ones are cut or refused,
as ``truncate`` asks). A model loaded with a large ``num_ctx`` to generate would otherwise get a
second context of that size on its first embedding request."""

STEP_TOKENS = 256
"""Input tokens embedded per step (or one longer input). Each step delays the next token of the
completions generating, and a cancel waits for it. Bigger batches are no faster: the sequences of a
batch share one attention, whose cost grows with the square of its tokens (SmolLM2 on 2 cores: 295
tokens/s at 256, 170 at 2048, ten seconds a step)."""


@dataclass
class EmbeddingJob:
    """One embedding request: the tokens of its inputs still to embed, and the vectors so far."""

    id: Any
    pending: deque[list[int]]
    tokens: int
    vectors: list[list[float]] = field(default_factory=list)

    def reply(self) -> dict[str, Any]:
        return {"id": self.id, "embeddings": self.vectors, "tokens": self.tokens}


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

    def start(self, request_id: Any, inputs: Sequence[str], truncate: bool) -> EmbeddingJob:
        """A job for these inputs (RequestError at once for an input ``truncate`` may not cut)."""
        token_lists = []
        for text in inputs:
            tokens = self.model.tokenize(text, add_special=True)
            if len(tokens) > self.limit and not truncate:
                raise RequestError("the input length exceeds the context length")
            token_lists.append(tokens[:self.limit])
        return EmbeddingJob(request_id, deque(token_lists), sum(map(len, token_lists)))

    def step(self, job: EmbeddingJob) -> None:
        """Embed the job's next inputs in one batch of at most ``STEP_TOKENS`` (or one input)."""
        group = [job.pending.popleft()]
        size = len(group[0])
        while job.pending and size + len(job.pending[0]) <= STEP_TOKENS and len(group) < self.n_seq_max:
            size += len(job.pending[0])
            group.append(job.pending.popleft())
        job.vectors += self._run(group)

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
