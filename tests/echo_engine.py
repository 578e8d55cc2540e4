"""A runner engine for tests of corral.sdk.runner: completes a prompt by sending its words back."""

from __future__ import annotations

import time
from typing import Any


class Echo:
    def __init__(self, config: dict[str, Any]) -> None:
        if config.get("fail"):
            raise ValueError(config["fail"])
        time.sleep(config.get("load_seconds", 0))
        print("a stray line on stdout")  # must not reach the protocol
        self.active: dict[int, list[str]] = {}
        self.closed = False

    def ready(self) -> dict[str, Any]:
        return {"op": "ready", "n_ctx": 64, "slots": 2}

    def handle(self, message: dict[str, Any], out: Any) -> bool:
        op = message.get("op")
        if op == "shutdown":
            return False
        if op == "complete":
            self.active[message["id"]] = message["prompt"].split()
        elif op == "cancel" and self.active.pop(message["id"], None) is not None:
            out.send(done(message["id"], "cancel"))
        elif op == "tokenize":
            out.send({"id": message["id"], "tokens": [len(word) for word in message["text"].split()]})
        return True

    def step_all(self, out: Any) -> None:
        for request_id, words in list(self.active.items()):
            if words:
                out.send({"id": request_id, "text": words.pop(0) + " "})
                time.sleep(0.01)
            else:
                del self.active[request_id]
                out.send(done(request_id, "stop"))

    def close(self) -> None:
        self.closed = True


def done(request_id: int, reason: str) -> dict[str, Any]:
    return {"id": request_id, "done": True, "done_reason": reason, "prompt_tokens": 1, "completion_tokens": 1,
            "prompt_ns": 1, "eval_ns": 1, "context": []}
