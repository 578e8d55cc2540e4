"""The llama.cpp engine: one loaded model answering protocol.py's requests.

It runs inside a runner (``corral.sdk.runner``), which calls it from one thread only: this OpenMP
build slows down for good once calls come from several threads. The runner calls ``handle`` for
each request as it arrives and ``step_all`` while ``active``, between requests; each step advances
every completion at once (generation.py), then runs one batch of the oldest embedding request
(embedding.py). docs/runner.md tells the whole story.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Mapping
from typing import Any

import llama_cpp as llama

from corral.sdk.runner import Output

from .cpu_share import Turns, runner_threads, turn_lock_path
from .embedding import Embedder, EmbeddingJob
from .errors import RequestError
from .generation import Generator
from .model import Model


class Runner:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.threads = runner_threads(config.get("num_thread") or 0)
        self.num_ctx = config["num_ctx"]
        self.model = Model(config["model_path"], adapters=config.get("adapters") or (),
                           use_mmap=config.get("use_mmap", True), use_mlock=config.get("use_mlock", False),
                           verbose=bool(config.get("verbose")))
        try:  # runners on this machine's cores take turns (cpu_share.py); "turn_lock": null opts out
            self.turns = Turns(config.get("turn_lock", turn_lock_path()))
        except OSError as error:
            print(f"warning: decoding without taking turns with other runners: {error}", file=sys.stderr)
            self.turns = Turns(None)
        self.generator: Generator | None = None
        self.embedder: Embedder | None = None
        self.embeddings: deque[EmbeddingJob] = deque()
        try:
            if config.get("embedding"):  # an embedding model: that is all it does
                pooling = llama.LLAMA_POOLING_TYPE_MEAN if config.get("pooling") == "mean" \
                    else llama.LLAMA_POOLING_TYPE_UNSPECIFIED
                self.embedder = Embedder(self.model, num_ctx=self.num_ctx, threads=self.threads, turns=self.turns,
                                         pooling=pooling)
            else:
                self.generator = Generator(
                    self.model, num_ctx=self.num_ctx, num_parallel=max(1, config.get("num_parallel", 1)),
                    num_batch=config.get("num_batch", 512), threads=self.threads, turns=self.turns,
                    stream_interval_ms=float(config.get("stream_interval_ms", 0)), verbose=bool(config.get("verbose")))
        except BaseException:
            self.close()
            raise

    @property
    def active(self) -> bool:
        """True while completions or embedding requests are in progress (call ``step_all``)."""
        return bool(self.generator and self.generator.jobs) or bool(self.embeddings)

    def ready(self) -> dict[str, Any]:
        if self.generator is not None:
            return {"op": "ready", "n_ctx": self.generator.n_ctx, "slots": len(self.generator.slots)}
        assert self.embedder is not None
        return {"op": "ready", "n_ctx": self.num_ctx, "slots": 1}

    def handle(self, message: Mapping[str, Any], out: Output) -> bool:
        """Act on one request; return False to stop the runner (in-flight completions end as cancelled)."""
        op = message.get("op")
        if op == "shutdown":
            if self.generator is not None:
                self.generator.cancel_all(out)
            return False
        if op == "cancel":
            if self.generator is not None:
                self.generator.cancel(message.get("id"), out)
            self.embeddings = deque(job for job in self.embeddings if job.id != message.get("id"))
            return True
        try:
            if op == "complete":
                if self.generator is None:
                    raise RequestError("this model does not support generate")
                self.generator.start(message, out)
            elif op == "embed":
                self.embeddings.append(self._embeddings().start(message["id"], message["inputs"],
                                                                message.get("truncate", True)))
            elif op == "tokenize":
                out.send({"id": message["id"], "tokens": self.model.tokenize(message["text"], add_special=True)})
            else:
                raise RequestError(f"unknown op {op!r}")
        except Exception as error:  # a bad request must not end the runner
            _send_error(out, message.get("id"), error)
        return True

    def _embeddings(self) -> Embedder:
        if self.embedder is None:  # a model loaded to generate: its first embedding request
            self.embedder = Embedder(self.model, num_ctx=self.num_ctx, threads=self.threads, turns=self.turns,
                                     pooling=llama.LLAMA_POOLING_TYPE_MEAN)
        return self.embedder

    def step_all(self, out: Output) -> None:
        """One decode step of every completion in progress, and one batch of the oldest embedding
        request."""
        if self.generator is not None:
            self.generator.step(out)
        if self.embeddings:
            job = self.embeddings[0]
            try:
                if job.pending:
                    self._embeddings().step(job)
            except Exception as error:
                self.embeddings.popleft()
                _send_error(out, job.id, error)
                return
            if not job.pending:
                self.embeddings.popleft()
                out.send(job.reply())

    def close(self) -> None:
        for part in (self.generator, self.embedder):
            if part is not None:
                part.close()
        self.generator = self.embedder = None
        self.model.close()
        self.turns.close()


def _send_error(out: Output, request_id: Any, error: Exception) -> None:
    if isinstance(error, RequestError):
        out.send({"id": request_id, "error": str(error), "status": error.status})
    else:
        out.send({"id": request_id, "error": f"{type(error).__name__}: {error}", "status": 500})
