"""The llama.cpp engine on the real SmolLM2 model: continuous batching, per-completion options,
cancelling one completion, the prompt cache of each slot, and embeddings beside generation. The
engine is driven in this process as a runner (corral.sdk.runner) drives it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "seed": 42, "num_predict": 32}


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = {
    "paris": chat("What is the capital of France?"),
    "count": "1, 2, 3, 4, 5, 6, 7, 8,",
    "sea": chat("Write a poem about the sea."),
    "story": "Once upon a time",
}
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"]}


class Collect:
    """An ``out`` that keeps what the engine sends."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def flush(self) -> None:
        pass

    def text(self, request_id: Any) -> str:
        return "".join(m.get("text", "") for m in self.messages if m.get("id") == request_id)

    def done(self, request_id: Any) -> dict[str, Any]:
        return next(m for m in self.messages if m.get("id") == request_id and (m.get("done") or "error" in m))


def new_engine(model: Path, **config: Any) -> Any:
    from corral.plugins.runtime_llamacpp.runner import Runner

    return Runner({"model_path": str(model), "num_ctx": 2048, "num_parallel": 4, "stream_interval_ms": 0,
                   "num_thread": 2, **config})


@pytest.fixture
def engine(smollm2_gguf: Path) -> Iterator[Any]:
    engine = new_engine(smollm2_gguf)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def alone(smollm2_gguf: Path) -> Iterator[Any]:
    """Answers computed one at a time by an engine with one slot, its cache emptied in between."""
    engine = new_engine(smollm2_gguf, num_parallel=1)
    answers: dict[str, tuple[str, dict[str, Any]]] = {}

    def answer(prompt: str, options: dict[str, Any] = GREEDY, format_: Any = None) -> tuple[str, dict[str, Any]]:
        key = json.dumps([prompt, options, format_])
        if key not in answers:
            engine.generator.slots[0].tokens.clear()  # forget the cache: no prefix is reused
            out = drive(engine, [{"op": "complete", "id": 1, "prompt": prompt, "options": options, "format": format_}])
            answers[key] = (out.text(1), out.done(1))
        return answers[key]

    yield answer
    engine.close()


def drive(engine: Any, messages: list[dict[str, Any]], out: Collect | None = None) -> Collect:
    """Hand the engine ``messages``, then step it until it has nothing left to do."""
    out = out or Collect()
    for message in messages:
        engine.handle(message, out)
    while engine.active:
        engine.step_all(out)
    return out


def run(engine: Any, requests: dict[Any, dict[str, Any]], out: Collect | None = None) -> Collect:
    return drive(engine, [{"op": "complete", "id": request_id, **request} for request_id, request in requests.items()],
                 out)


def test_four_streams_in_one_batch_give_the_single_stream_answers(engine: Any, alone: Any) -> None:
    out = run(engine, {name: {"prompt": prompt, "options": GREEDY} for name, prompt in PROMPTS.items()})
    for name, prompt in PROMPTS.items():
        text, done = alone(prompt)
        assert out.text(name) == text and text
        assert out.done(name)["completion_tokens"] == done["completion_tokens"]
        assert out.done(name)["context"] == done["context"]
    # They ran together: every stream had its first piece before the first one finished.
    first_done = next(i for i, m in enumerate(out.messages) if m.get("done"))
    assert {m["id"] for m in out.messages[:first_done] if "text" in m} == set(PROMPTS)
    assert "Paris" in out.text("paris")


def test_each_completion_samples_and_stops_with_its_own_options(engine: Any, alone: Any) -> None:
    sampled = {"temperature": 0.9, "top_k": 40, "top_p": 0.9, "seed": 7, "num_predict": 24}
    requests = {
        "sampled": {"prompt": PROMPTS["story"], "options": sampled},
        "short": {"prompt": PROMPTS["count"], "options": {**GREEDY, "num_predict": 5}},
        "stop": {"prompt": PROMPTS["paris"], "options": {**GREEDY, "stop": ["Paris"]}},
        "json": {"prompt": chat("Tell me about Paris as JSON."), "format": CITY,
                 "options": {**GREEDY, "num_predict": 300}},
    }
    out = run(engine, requests)
    assert out.text("sampled") == alone(PROMPTS["story"], sampled)[0]  # its seed, not the batch, decides
    assert out.text("sampled") != alone(PROMPTS["story"])[0]
    assert (out.done("short")["done_reason"], out.done("short")["completion_tokens"]) == ("length", 5)
    assert out.done("stop")["done_reason"] == "stop"
    assert "Paris" not in out.text("stop") and out.text("stop") == alone(PROMPTS["paris"])[0].split("Paris")[0]
    value = json.loads(out.text("json"))
    assert isinstance(value["city"], str) and isinstance(value["population"], int)
    assert out.done("json")["done_reason"] == "stop"
    bad = Collect()
    engine.handle({"op": "complete", "id": "bad", "prompt": "x", "format": "yaml"}, bad)
    assert bad.messages == [{"id": "bad", "status": 400,
                             "error": 'invalid format: "yaml"; expected "json" or a valid JSON Schema object'}]
    assert not engine.active


def test_cancelling_one_of_four_leaves_the_others_untouched(engine: Any, alone: Any) -> None:
    out = Collect()
    for name, prompt in PROMPTS.items():
        engine.handle({"op": "complete", "id": name, "prompt": prompt, "options": {**GREEDY, "num_predict": 48}}, out)
    for _ in range(6):
        engine.step_all(out)
    engine.handle({"op": "cancel", "id": "sea"}, out)
    cancelled = out.done("sea")
    assert cancelled["done_reason"] == "cancel" and 0 < cancelled["completion_tokens"] < 48
    run(engine, {}, out)
    for name in ("paris", "count", "story"):
        text, done = alone(PROMPTS[name], {**GREEDY, "num_predict": 48})
        assert out.text(name) == text and out.done(name)["done_reason"] == done["done_reason"]
    assert out.text("sea") == alone(PROMPTS["sea"], {**GREEDY, "num_predict": 48})[0][:len(out.text("sea"))]
    engine.handle({"op": "cancel", "id": "unknown"}, out)  # late or unknown: nothing happens
    assert sum(1 for m in out.messages if m.get("done")) == 4


def test_a_long_prompt_is_read_in_chunks_while_another_stream_flows(engine: Any, alone: Any) -> None:
    out = Collect()
    engine.handle({"op": "complete", "id": "flowing", "prompt": PROMPTS["count"],
                   "options": {**GREEDY, "num_predict": 200}}, out)
    engine.step_all(out)
    document = chat("Summarise: " + " ".join(f"Sentence number {i} is about the sea." for i in range(60)))
    engine.handle({"op": "complete", "id": "long", "prompt": document, "options": GREEDY}, out)
    steps = 0
    while not any(m.get("id") == "long" and "text" in m for m in out.messages):
        before = len(out.text("flowing"))
        engine.step_all(out)
        steps += 1
        assert len(out.text("flowing")) > before  # a piece of the flowing stream in every step
    assert steps > 3
    engine.handle({"op": "cancel", "id": "flowing"}, out)
    run(engine, {}, out)
    assert out.done("long")["prompt_tokens"] > 500 and out.text("long") == alone(document)[0]


def test_the_next_turn_of_a_chat_evaluates_only_its_new_tokens(engine: Any, alone: Any) -> None:
    first_prompt = chat("What is the capital of France?")
    first = run(engine, {1: {"prompt": first_prompt, "options": GREEDY}})
    other = run(engine, {2: {"prompt": chat("Write a poem about the sea."), "options": GREEDY}})
    assert other.done(2)["cached_tokens"] < 5  # another conversation: an empty slot, not the first chat's
    second_prompt = first_prompt + first.text(1) + "<|im_end|>\n" + chat("And of Germany?")
    second = run(engine, {3: {"prompt": second_prompt, "options": GREEDY}})
    done = second.done(3)
    assert done["cached_tokens"] >= len(first.done(1)["context"]) - 1
    assert done["prompt_tokens"] - done["cached_tokens"] < 20
    assert second.text(3) == alone(second_prompt)[0]
    # The same prompt again reuses all of it but the last two tokens (the last one's output gives
    # the first token; evaluated alone, it would take another path in llama.cpp): the same answer.
    again = run(engine, {4: {"prompt": second_prompt, "options": GREEDY}})
    assert again.done(4)["cached_tokens"] == done["prompt_tokens"] - 2 and again.text(4) == second.text(3)


def test_context_continues_and_long_prompts_keep_their_start_and_end(smollm2_gguf: Path) -> None:
    engine = new_engine(smollm2_gguf, num_ctx=256, num_parallel=2)
    try:
        first = run(engine, {1: {"prompt": "My name is Ada.", "options": GREEDY}})
        follow = run(engine, {2: {"prompt": " What is my name?", "context": first.done(1)["context"],
                                  "options": GREEDY}})
        assert follow.done(2)["prompt_tokens"] > len(first.done(1)["context"])
        long = run(engine, {3: {"prompt": "blue " * 600, "options": {**GREEDY, "num_keep": 10}}})
        done = long.done(3)
        assert done["prompt_tokens"] == 255 and done["done_reason"] == "length" and done["completion_tokens"] == 1
        nothing = run(engine, {4: {"prompt": "Hello", "options": {**GREEDY, "num_predict": 0}}})
        assert (nothing.done(4)["done_reason"], nothing.done(4)["completion_tokens"], nothing.text(4)) == ("length", 0, "")
        bad = Collect()
        engine.handle({"op": "complete", "id": 8, "prompt": "x", "context": [1, 10**9]}, bad)
        assert bad.messages == [{"id": 8, "status": 400,
                                 "error": "invalid context: it holds a number that is no token of this model"}]
        busy = Collect()
        for request_id in (5, 6, 7):
            engine.handle({"op": "complete", "id": request_id, "prompt": "Hi", "options": GREEDY}, busy)
        assert busy.messages == [{"id": 7, "error": "no free slot", "status": 503}]
        engine.handle({"op": "shutdown"}, busy)
        assert {m["id"]: m["done_reason"] for m in busy.messages if m.get("done")} == {5: "cancel", 6: "cancel"}
    finally:
        engine.close()


def embed(engine: Any, message: dict[str, Any]) -> Collect:
    return drive(engine, [{"op": "embed", **message}])


def test_embeddings_on_a_model_loaded_to_generate(engine: Any, smollm2_gguf: Path, alone: Any) -> None:
    out = embed(engine, {"id": "e", "inputs": ["why is the sky blue?", "hello"]})
    reply = out.messages[-1]
    assert len(reply["embeddings"]) == 2 and len(reply["embeddings"][0]) == 576 and reply["tokens"] > 2
    embedder = new_engine(smollm2_gguf, embedding=True, pooling="mean")  # as an embedding-only load gives them
    try:
        alone_out = embed(embedder, {"id": "e", "inputs": ["why is the sky blue?", "hello"]})
        for mine, theirs in zip(reply["embeddings"], alone_out.messages[-1]["embeddings"]):
            assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for a, b in zip(mine, theirs))
    finally:
        embedder.close()
    # Generation goes on as before, and an embedding request between two steps does not disturb it.
    run(engine, {"paris": {"prompt": PROMPTS["paris"], "options": GREEDY}}, out)
    assert out.text("paris") == alone(PROMPTS["paris"])[0]
    too_long = embed(engine, {"id": "x", "inputs": ["word " * 3000], "truncate": False})
    assert too_long.messages == [{"id": "x", "error": "the input length exceeds the context length", "status": 400}]


def test_a_large_embedding_request_runs_between_the_steps_of_a_stream(engine: Any, alone: Any) -> None:
    """1,200 inputs are embedded a batch per step while a completion generates: the stream goes on
    (it used to wait for every input), and both give what they give alone."""
    inputs = [f"note {index}" for index in range(1200)]
    out = drive(engine, [{"op": "complete", "id": "paris", "prompt": PROMPTS["paris"], "options": GREEDY},
                         {"op": "embed", "id": "e", "inputs": inputs}])
    reply = next(index for index, m in enumerate(out.messages) if m["id"] == "e")
    assert sum("text" in m for m in out.messages[:reply] if m["id"] == "paris") >= 5  # it went on meanwhile
    assert out.text("paris") == alone(PROMPTS["paris"])[0]
    vectors = out.messages[reply]["embeddings"]
    assert len(vectors) == 1200
    at_once = embed(engine, {"id": "again", "inputs": inputs[:1] + inputs[-1:]}).messages[-1]["embeddings"]
    for mine, theirs in zip((vectors[0], vectors[-1]), at_once):
        assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5) for a, b in zip(mine, theirs))
