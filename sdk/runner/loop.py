"""The runner side: build the engine a load message names and feed it requests from any transport.

A transport puts each incoming message on a ``queue.Queue`` (``None`` when the client is gone)
and gives an ``out`` with ``send(message)`` and ``flush()``. Every engine call happens on the
thread that calls :func:`run`: llama.cpp's OpenMP build slows down for good once calls come
from several threads.
"""

from __future__ import annotations

import importlib
import queue
from typing import Any, Protocol


class Output(Protocol):
    """Where an engine sends its messages; ``flush`` once per round of work."""

    def send(self, message: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


def engine_class(path: str) -> Any:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"engine {path!r} is not module:Class")
    return getattr(importlib.import_module(module), name)


def run(inbox: queue.Queue[dict[str, Any] | None], out: Output) -> bool:
    """Wait for the load message, build its engine, answer ready (or failed), then serve until
    shutdown or the end of the inbox. False when the engine could not be built."""
    message = inbox.get()
    if message is None:
        return True
    try:
        if message.get("op") != "load":
            raise ValueError(f"expected a load message, got {message.get('op')!r}")
        engine = engine_class(message["engine"])(message.get("config") or {})
    except Exception as error:
        out.send({"op": "failed", "error": f"{type(error).__name__}: {error}"})
        out.flush()
        return False
    out.send(engine.ready())
    out.flush()
    try:
        serve(engine, inbox, out)
    finally:
        engine.close()
        out.flush()
    return True


def serve(engine: Any, inbox: queue.Queue[dict[str, Any] | None], out: Output) -> None:
    """Take every waiting request, let the engine do one round of work, flush; block only when
    it has nothing to do."""
    while True:
        block = not engine.active
        while True:
            try:
                message = inbox.get(block=block)
            except queue.Empty:
                break
            if message is None or not engine.handle(message, out):
                out.flush()
                return
            block = False
        engine.step_all(out)
        out.flush()
