"""The llama.cpp engine: one per loaded model, driving llama-cpp-python.

It runs inside a runner (``corral.sdk.runner``), which calls it from one thread only: this OpenMP
build slows down for good once calls come from several threads. Concurrent completions
(OLLAMA_NUM_PARALLEL) each get their own context and are advanced one token at a time in turn,
so all of them progress.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from corral.sdk.runner import Output


class RequestError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def grammar_for(format_: Any) -> Any:
    if format_ in (None, ""):
        return None
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if format_ == "json":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if isinstance(format_, dict):
        try:
            grammar = json_schema_to_gbnf(json.dumps(format_))
        except Exception as error:  # the converter asserts on what it does not know
            raise RequestError(f"invalid JSON schema in format: {error}") from None
        return LlamaGrammar.from_string(grammar, verbose=False)
    raise RequestError(f'invalid format: {json.dumps(format_)}; expected "json" or a valid JSON Schema object')


class Completion:
    """One completion in progress on one slot."""

    def __init__(self, runner: Runner, slot: int, request: dict[str, Any]) -> None:
        from llama_cpp import StoppingCriteriaList

        self.id = request["id"]
        self.slot = slot
        self.llm = runner.slots[slot]
        options = request.get("options") or {}
        tokens = list(request.get("context") or [])
        text = request.get("prompt", "")
        tokens += self.llm.tokenize(text.encode(), add_bos=not tokens, special=True) if text else []
        n_ctx = self.llm.n_ctx()
        if len(tokens) >= n_ctx:
            keep = min(max(options.get("num_keep", 4), 0), n_ctx // 2)
            tokens = tokens[:keep] + tokens[len(tokens) - (n_ctx - keep - 1):]  # leave room to answer
        self.prompt_tokens = len(tokens)
        self.interval_ns = int(runner.stream_interval_ms * 1_000_000)
        self.unsent = ""
        self.last_sent = 0  # the first piece goes out at once
        self.started = time.perf_counter_ns()
        self.first_token_at: int | None = None
        max_tokens = options.get("num_predict", -1)
        seed = options.get("seed", -1)
        self.iterator: Iterator[dict[str, Any]] = self.llm.create_completion(
            tokens,
            max_tokens=max_tokens if max_tokens > 0 else -1,
            temperature=options.get("temperature", 0.8),
            top_p=options.get("top_p", 0.9),
            min_p=options.get("min_p", 0.0),
            typical_p=options.get("typical_p", 1.0),
            top_k=options.get("top_k", 40),
            repeat_penalty=options.get("repeat_penalty", 1.0),
            presence_penalty=options.get("presence_penalty", 0.0),
            frequency_penalty=options.get("frequency_penalty", 0.0),
            mirostat_mode=options.get("mirostat", 0),
            mirostat_tau=options.get("mirostat_tau", 5.0),
            mirostat_eta=options.get("mirostat_eta", 0.1),
            stop=options.get("stop") or [],
            seed=seed if seed >= 0 else None,
            grammar=grammar_for(request.get("format")),
            stopping_criteria=StoppingCriteriaList([self._count]),
            stream=True,
        )
        self.zero_budget = max_tokens == 0

    def _count(self, _tokens: Any, _logits: Any) -> bool:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter_ns()
        return False

    def step(self, out: Output) -> bool:
        """Advance by one token; return True when the completion has finished."""
        if self.zero_budget:
            self.finish(out, "length")
            return True
        try:
            chunk = next(self.iterator)
        except StopIteration:
            self.finish(out, "stop")
            return True
        choice = chunk["choices"][0]
        if choice["text"]:
            self.unsent += choice["text"]
            now = time.perf_counter_ns()
            if now - self.last_sent >= self.interval_ns:
                self.send_text(out, now)
        if choice.get("finish_reason"):
            self.finish(out, choice["finish_reason"])
            return True
        return False

    def send_text(self, out: Output, now: int) -> None:
        """Send what was generated since the last piece: every token when the model is slower
        than the interval, a few tokens joined when it is faster (one wake-up per piece, not per
        token, all the way to the client)."""
        if self.unsent:
            out.send({"id": self.id, "text": self.unsent})
            self.unsent = ""
            self.last_sent = now

    def finish(self, out: Output, reason: str) -> None:
        now = time.perf_counter_ns()
        self.send_text(out, now)
        first = self.first_token_at or now
        # The last sampled token is never evaluated, so it is not in the context.
        generated = self.llm.n_tokens - self.prompt_tokens + 1 if self.first_token_at else 0
        out.send({
            "id": self.id, "done": True, "done_reason": reason,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": max(generated, 0),
            "prompt_ns": first - self.started, "eval_ns": now - first,
            "context": [int(token) for token in self.llm.input_ids[: self.llm.n_tokens]],
        })

    def cancel(self, out: Output) -> None:
        close = getattr(self.iterator, "close", None)
        if close:
            close()
        self.finish(out, "cancel")


class Runner:
    def __init__(self, config: dict[str, Any]) -> None:
        from llama_cpp import Llama

        threads = config.get("num_thread") or os.cpu_count() or 1
        embedding = bool(config.get("embedding"))
        n_ctx = config["num_ctx"]
        count = 1 if embedding else max(1, config.get("num_parallel", 1))
        self.embedding = embedding
        self.stream_interval_ms = float(config.get("stream_interval_ms", 0))
        self.slots = [
            Llama(
                config["model_path"],
                n_ctx=n_ctx,
                n_batch=n_ctx if embedding else config.get("num_batch", 512),
                n_ubatch=n_ctx if embedding else min(512, config.get("num_batch", 512)),
                n_threads=threads,
                n_threads_batch=threads,
                use_mmap=config.get("use_mmap", True),
                use_mlock=config.get("use_mlock", False),
                embedding=embedding,
                pooling_type=1 if config.get("pooling") == "mean" else -1,
                flash_attn=False,  # it changes greedy output; keep results comparable
                lora_path=(config.get("adapters") or [None])[0],
                last_n_tokens_size=max(config.get("repeat_last_n", 64), 1),
                seed=config.get("seed", 4294967295) & 0xFFFFFFFF,
                verbose=bool(config.get("verbose")),
            )
            for _ in range(count)
        ]
        self.free = list(range(count))
        self.active: dict[int, Completion] = {}

    def ready(self) -> dict[str, Any]:
        llm = self.slots[0]
        return {"op": "ready", "n_ctx": llm.n_ctx(), "slots": len(self.slots)}

    def handle(self, message: dict[str, Any], out: Output) -> bool:
        """Act on one request; return False to stop the runner."""
        op = message.get("op")
        if op == "shutdown":
            return False
        if op == "cancel":
            job = self.active.pop(message.get("id"), None)
            if job is not None:
                job.cancel(out)
                self.free.append(job.slot)
            return True
        try:
            if op == "complete":
                if not self.free:
                    raise RequestError("no free slot", 503)
                slot = self.free.pop()
                try:
                    self.active[message["id"]] = Completion(self, slot, message)
                except BaseException:
                    self.free.append(slot)
                    raise
            elif op == "embed":
                out.send({"id": message["id"], **self.embed(message["inputs"], message.get("truncate", True))})
            elif op == "tokenize":
                tokens = self.slots[0].tokenize(message["text"].encode(), add_bos=True, special=True)
                out.send({"id": message["id"], "tokens": tokens})
            else:
                raise RequestError(f"unknown op {op!r}")
        except RequestError as error:
            out.send({"id": message.get("id"), "error": str(error), "status": error.status})
        except Exception as error:  # a bad request must not end the runner
            out.send({"id": message.get("id"), "error": f"{type(error).__name__}: {error}", "status": 500})
        return True

    def embed(self, inputs: list[str], truncate: bool) -> dict[str, Any]:
        if not self.embedding:
            raise RequestError("this model was not loaded for embeddings", 500)
        llm = self.slots[0]
        limit = llm.n_ctx()
        total = 0
        for text in inputs:
            count = len(llm.tokenize(text.encode(), add_bos=True, special=True))
            if count > limit and not truncate:
                raise RequestError("the input length exceeds the context length")
            total += min(count, limit)
        vectors = llm.embed(inputs, normalize=False, truncate=True) if inputs else []
        return {"embeddings": vectors, "tokens": total}

    def step_all(self, out: Output) -> None:
        for request_id, job in list(self.active.items()):
            try:
                finished = job.step(out)
            except Exception as error:
                out.send({"id": request_id, "error": f"{type(error).__name__}: {error}", "status": 500})
                finished = True
            if finished:
                del self.active[request_id]
                self.free.append(job.slot)

    def close(self) -> None:
        for job in self.active.values():
            close = getattr(job.iterator, "close", None)
            if close:
                close()
        self.active.clear()
        for llm in self.slots:
            llm.close()
