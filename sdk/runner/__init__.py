"""Runners: a model served by an engine in a process of its own, here or on another machine.

A runner hosts one *engine* (llama.cpp's is ``corral.plugins.runtime_llamacpp.runner.Runner``) and
speaks JSON objects with it, in order, over a *transport*: a pipe to a child process
(:func:`open_pipe`), or a remote actor (``corral.contrib.ray``). The server side is a
:class:`RunnerClient`, which any runtime can yield as its ``LoadedModel``; the runner side is
:func:`run`, which any transport feeds.

The messages. The client opens with ``{"op": "load", "engine": "module:Class", "config": {...}}``;
the runner answers ``{"op": "ready", "n_ctx": int, "slots": int, ...}`` once the engine is built
(``{"op": "failed", "error": str}`` if it cannot be). Then requests, each with a unique ``id``:

- ``{"op": "complete", "id": 1, "prompt": str, "context": [int], "options": {...}, "format": ...}``
- ``{"op": "cancel", "id": 1}``: stop that completion (its ``done`` still follows), or drop that
  embedding request (nothing follows: the client has stopped waiting).
- ``{"op": "embed", "id": 2, "inputs": [str], "truncate": bool}``
- ``{"op": "tokenize", "id": 3, "text": str}``
- ``{"op": "shutdown"}``

and replies naming the same ``id``:

- ``{"id": 1, "text": str}`` per piece of text;
- ``{"id": 1, "done": true, "done_reason": "stop"|"length"|"cancel", "prompt_tokens": n,
  "completion_tokens": n, "prompt_ns": n, "eval_ns": n, "context": [int]}``;
- ``{"id": 2, "embeddings": [[float]], "tokens": n}``, ``{"id": 3, "tokens": [int]}``;
- ``{"id": n, "error": str, "status": int}`` when a request fails (the runner lives on).

An engine is ``Engine(config)`` (raises when the model cannot be loaded) with ``ready() -> dict``,
``handle(message, out) -> bool`` (False: shut down), ``step_all(out)`` (one round of work for every
active request), ``active`` (truthy while there is work) and ``close()``; it answers through
``out.send(message)`` and ``out.flush()`` (once per round).
"""

from .client import PeerGone, RunnerClient, Transport
from .codec import decode, encode
from .loop import Output, run, serve
from .pipe import RUNNER_MODULE, PipeTransport, open_pipe, runner_command, start_runner
from .process import child_env, die_with_parent, protocol_stream
from .spare import SpareRunners
from .spec import RunnerSpec

__all__ = ["RUNNER_MODULE", "Output", "PeerGone", "PipeTransport", "RunnerClient", "RunnerSpec", "SpareRunners", "Transport",
           "child_env", "decode", "die_with_parent", "encode", "open_pipe", "protocol_stream", "run", "runner_command", "serve",
           "start_runner"]
