"""Continuous batching: one llama.cpp context, one sequence per slot, all of them decoded together.

- Each slot is a sequence of the context with ``num_ctx`` cells of its own (the KV cache is not
  unified, so an answer does not depend on what else is in the batch) and remembers the tokens it
  holds. A new completion takes the free slot whose tokens share the longest prefix with its
  prompt and evaluates only the rest: a chat's next turn finds its history. When that prefix is
  less than half of what the slot holds (say, only a system prompt), the slot's cache belongs to
  another conversation: the least recently used free slot is taken instead (an empty one first).
- Each step evaluates the next token of every generating completion in one ``llama_decode``, then
  a chunk of the prompts still being read (their own ``llama_decode`` each: see ``_decode``).
  Prompt chunks are small while others generate, so their streams keep flowing; a completion
  starts generating in the step that reads the end of its prompt.
- Each completion samples with its own chain (options, seed, grammar), stops on its own (end of
  generation, a stop string, num_predict, a full context) and can be cancelled alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import llama_cpp as llama

from corral.sdk.runner import Output

from .answer_text import AnswerText
from .cpu_share import Turns
from .errors import RequestError
from .model import Batch, Model
from .sampling import Sampler, grammar_for

PROMPT_CHUNK_WHILE_GENERATING = 128
"""Prompt tokens per step while other completions generate (each step delays their next token)."""
SMALLEST_BATCH = 3
"""A prompt chunk has at least two tokens and leaves none of one (see ``_decode``): a smaller batch
could read no chunk at all."""


class Slot:
    def __init__(self, sequence: int) -> None:
        self.sequence = sequence
        self.tokens: list[int] = []
        """The tokens in this sequence's cache, in order."""
        self.used_at = 0.0
        self.busy = False

    def shared_prefix(self, tokens: list[int]) -> int:
        count = 0
        for mine, theirs in zip(self.tokens, tokens):
            if mine != theirs:
                break
            count += 1
        return count


class Completion:
    """One request being answered on one slot."""

    def __init__(self, request: Mapping[str, Any], slot: Slot, prompt: list[int], sampler: Sampler,
                 *, cached: int, started: int, interval_ns: int) -> None:
        options = request.get("options") or {}
        self.id = request["id"]
        self.slot = slot
        self.prompt = prompt
        self.cached = cached
        self.pending = prompt[cached:]
        """Prompt tokens still to evaluate."""
        self.next_token: int | None = None
        """The last token sampled, evaluated in the next step."""
        self.batch_index = -1
        """Where this completion's output is in the batch being evaluated."""
        self.sampler = sampler
        self.text = AnswerText(options.get("stop") or [])
        self.budget = options.get("num_predict", -1)
        self.sampled = 0
        self.started = started
        self.first_token_at: int | None = None
        self.interval_ns = interval_ns
        self.unsent = ""
        self.last_sent = 0  # the first piece goes out at once

    def queue(self, out: Output, text: str) -> None:
        """Send text as it comes when the model is slower than the interval, joined otherwise (one
        wake-up per piece, not per token, all the way to the client)."""
        if text:
            self.unsent += text
            now = time.perf_counter_ns()
            if now - self.last_sent >= self.interval_ns:
                self.send_text(out, now)

    def send_text(self, out: Output, now: int) -> None:
        if self.unsent:
            out.send({"id": self.id, "text": self.unsent})
            self.unsent = ""
            self.last_sent = now

    def finish(self, out: Output, reason: str, context: list[int], *, at_stop_string: bool = False) -> None:
        if not at_stop_string:
            self.unsent += self.text.flush()
        now = time.perf_counter_ns()
        self.send_text(out, now)
        first = self.first_token_at or now
        out.send({
            "id": self.id, "done": True, "done_reason": reason,
            "prompt_tokens": len(self.prompt), "completion_tokens": self.sampled,
            "prompt_ns": first - self.started, "eval_ns": now - first, "cached_tokens": self.cached,
            "context": context,
        })


class Generator:
    def __init__(self, model: Model, *, num_ctx: int, num_parallel: int, num_batch: int, threads: int,
                 turns: Turns, stream_interval_ms: float, verbose: bool = False) -> None:
        self.model = model
        self.verbose = verbose
        self.turns = turns
        self.interval_ns = int(stream_interval_ms * 1_000_000)
        num_batch = max(num_batch, num_parallel, SMALLEST_BATCH)  # and room for one token of every sequence
        self.context = model.context(n_ctx=num_ctx * num_parallel, n_batch=num_batch, n_ubatch=min(512, num_batch),
                                     n_seq_max=num_parallel, threads=threads)
        self.memory = llama.llama_get_memory(self.context)
        self.n_ctx = llama.llama_n_ctx_seq(self.context)
        self.n_batch = llama.llama_n_batch(self.context)
        self.batch = Batch(self.n_batch)
        self.slots = [Slot(sequence) for sequence in range(num_parallel)]
        self.jobs: dict[Any, Completion] = {}

    # -- requests ---------------------------------------------------------------------------

    def start(self, request: Mapping[str, Any], out: Output) -> None:
        started = time.perf_counter_ns()
        options = request.get("options") or {}
        prompt = self._prompt(request, options)
        slot = self._slot_for(prompt)
        sampler = Sampler(self.model, options, grammar=grammar_for(request.get("format")), num_ctx=self.n_ctx)
        # The last prompt token is evaluated again (its output gives the first token), with the one
        # before it: alone in a batch it would take another path than in the first evaluation.
        cached = max(min(slot.shared_prefix(prompt), len(prompt) - 2), 0)
        if not llama.llama_memory_seq_rm(self.memory, slot.sequence, cached, -1):
            llama.llama_memory_seq_rm(self.memory, slot.sequence, -1, -1)  # a model that cannot cut its cache
            cached = 0
        del slot.tokens[cached:]
        job = Completion(request, slot, prompt, sampler, cached=cached, started=started, interval_ns=self.interval_ns)
        slot.busy = True
        self.jobs[job.id] = job
        if self.verbose:
            print(f"completion {job.id}: slot {slot.sequence}, {cached} of {len(prompt)} prompt tokens cached",
                  file=sys.stderr)
        if job.budget == 0:
            self._end(job, out, "length")

    def _slot_for(self, prompt: list[int]) -> Slot:
        free = [slot for slot in self.slots if not slot.busy]
        if not free:
            raise RequestError("no free slot", 503)
        best = max(free, key=lambda slot: (slot.shared_prefix(prompt), -slot.used_at))
        if 2 * best.shared_prefix(prompt) > len(best.tokens):
            return best
        return min(free, key=lambda slot: slot.used_at)

    def _prompt(self, request: Mapping[str, Any], options: Mapping[str, Any]) -> list[int]:
        tokens = list(request.get("context") or [])
        if not all(isinstance(token, int) and 0 <= token < self.model.n_vocab for token in tokens):
            raise RequestError("invalid context: it holds a number that is no token of this model")
        text = request.get("prompt", "")
        if text:
            tokens += self.model.tokenize(text, add_special=not tokens)
        if not tokens:
            if self.model.bos < 0:
                raise RequestError("the prompt is empty")
            tokens = [self.model.bos]
        if len(tokens) >= self.n_ctx:  # keep num_keep tokens and the end, with room to answer
            keep = min(max(options.get("num_keep", 4), 0), self.n_ctx // 2)
            tokens = tokens[:keep] + tokens[len(tokens) - (self.n_ctx - keep - 1):]
        return tokens

    def cancel(self, request_id: Any, out: Output) -> None:
        job = self.jobs.get(request_id)
        if job is not None:
            self._end(job, out, "cancel")

    def cancel_all(self, out: Output) -> None:
        for job in list(self.jobs.values()):
            self._end(job, out, "cancel")

    # -- the decode loop ----------------------------------------------------------------------

    def step(self, out: Output) -> None:
        """One ``llama_decode`` for the next token of every generating completion, then one per
        chunk of a prompt still being read."""
        generating = sorted((job for job in self.jobs.values() if job.next_token is not None),
                            key=lambda job: job.slot.sequence)
        if generating:
            self._decode(out, [(job, [job.next_token], True) for job in generating])
        reading = [job for job in self.jobs.values() if job.next_token is None and job.pending]
        if generating and reading:
            out.flush()  # the tokens just generated go out before the prompt chunks are read
        room = min(self.n_batch, PROMPT_CHUNK_WHILE_GENERATING) if generating else self.n_batch
        for job in reading:
            size = min(room, len(job.pending))
            if len(job.pending) - size == 1:
                size -= 1  # never leave a last chunk of one token (see _decode)
            if size < min(2, len(job.pending)):
                break
            room -= size
            self._decode(out, [(job, job.pending[:size], size == len(job.pending))])

    def _decode(self, out: Output, plan: list[tuple[Completion, list[int], bool]]) -> None:
        """Evaluate (completion, tokens, whether the last one gives an output) in one batch.

        Either one token of each of several completions, or a chunk of two or more tokens of one
        prompt: llama.cpp computes a token that is alone in its sequence's part of a batch along
        another path (its attention products differ in the last bits), so each token takes the
        same path whatever else is batched, and an answer is the one it would be alone."""
        self.batch.clear()
        for job, tokens, output in plan:
            job.batch_index = len(self.batch) + len(tokens) - 1 if output else -1
            self.batch.add(tokens, len(job.slot.tokens), job.slot.sequence, output="last" if output else "none")
        with self.turns:
            status = llama.llama_decode(self.context, self.batch.raw)
        if status != 0:
            for job, _tokens, _output in plan:
                self._fail(job, out, f"llama_decode failed with status {status}")
            return
        for job, tokens, output in plan:
            job.slot.tokens.extend(tokens)
            if job.next_token is None:
                del job.pending[:len(tokens)]
            if output:
                try:
                    self._accept(job, out, job.sampler.sample(self.context, job.batch_index))
                except Exception as error:
                    self._fail(job, out, f"{type(error).__name__}: {error}")

    def _accept(self, job: Completion, out: Output, token: int) -> None:
        job.sampled += 1
        if job.first_token_at is None:
            job.first_token_at = time.perf_counter_ns()
        job.next_token = token
        if self.model.is_end(token):
            self._end(job, out, "stop")
            return
        text, stopped = job.text.feed(self.model.piece(token))
        job.queue(out, text)
        if stopped:
            self._end(job, out, "stop", at_stop_string=True)
        elif job.sampled == job.budget or len(job.prompt) + job.sampled >= self.n_ctx:
            self._end(job, out, "length")

    def _end(self, job: Completion, out: Output, reason: str, *, at_stop_string: bool = False) -> None:
        job.finish(out, reason, self._context(job, last=not at_stop_string), at_stop_string=at_stop_string)
        self._release(job)

    def _context(self, job: Completion, *, last: bool) -> list[int]:
        """What a next request continues from: the prompt and the answer. The last token sampled
        was sent but is not in the cache yet (it would be decoded in the next step); one that ends
        the answer or holds a stop string (cut from the answer) is left out."""
        if not job.sampled:
            return job.prompt
        context = list(job.slot.tokens)
        if last and job.next_token is not None and not self.model.is_end(job.next_token):
            context.append(job.next_token)
        return context

    def _fail(self, job: Completion, out: Output, message: str) -> None:
        out.send({"id": job.id, "error": message, "status": 500})
        llama.llama_memory_seq_rm(self.memory, job.slot.sequence, -1, -1)
        job.slot.tokens.clear()
        self._release(job)

    def _release(self, job: Completion) -> None:
        job.sampler.close()
        job.slot.busy = False
        job.slot.used_at = time.monotonic()
        self.jobs.pop(job.id, None)

    def close(self) -> None:
        for job in list(self.jobs.values()):
            self._release(job)
        self.batch.close()
        if self.context is not None:
            llama.llama_free(self.context)
            self.context = None
