"""The runner protocol: JSON objects, one per line, independent of the transport.

The load handshake and the codec are the SDK's (``corral.sdk.runner``); these are the messages.

The server sends requests, each with a unique ``id``:

- ``{"op": "complete", "id": 1, "prompt": str, "context": [int], "options": {...}, "format": ...}``
- ``{"op": "cancel", "id": 1}``: stop that completion; its ``done`` still follows.
- ``{"op": "embed", "id": 2, "inputs": [str], "truncate": bool}``
- ``{"op": "tokenize", "id": 3, "text": str}``
- ``{"op": "shutdown"}``

The runner answers with objects naming the same ``id``:

- ``{"op": "ready", "n_ctx": int, "slots": int}`` once, after loading (``{"op": "failed", "error": str}`` if it cannot);
- ``{"id": 1, "text": str}`` per token piece;
- ``{"id": 1, "done": true, "done_reason": "stop"|"length"|"cancel", "prompt_tokens": n,
  "completion_tokens": n, "prompt_ns": n, "eval_ns": n, "context": [int], "cached_tokens": n}``
  (``cached_tokens``: how many of the prompt tokens came from the slot's cache);
- ``{"id": 2, "embeddings": [[float]], "tokens": n}``, ``{"id": 3, "tokens": [int]}``;
- ``{"id": n, "error": str, "status": int}`` when a request fails (the runner lives on).

Anything that carries these lines in order (a pipe today, a socket or a remote actor tomorrow)
can host a runner.
"""

from __future__ import annotations

from corral.sdk.runner import decode, encode

__all__ = ["decode", "encode"]
