"""The runner: one process per loaded model, driving its engine (engine.py).

Every llama.cpp call happens on this process's main thread: this OpenMP build slows down for good
once calls come from several threads. A reader thread only moves request lines into a queue.

Run as ``python -m corral.plugins.runtime_llamacpp.runner CONFIG_JSON``; speaks protocol.py on
stdin and stdout; logs go to stderr.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import sys
import threading
from typing import Any

from corral.plugins.runtime_llamacpp.engine import Engine
from corral.plugins.runtime_llamacpp.protocol import decode, encode

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this runner when the server dies, so no runner is ever orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() == 1:
        sys.exit(1)


class Output:
    """Buffered protocol writer: lines are flushed once per round of work, not per token."""

    def __init__(self) -> None:
        self.stream = sys.stdout.buffer

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(encode(message))

    def flush(self) -> None:
        self.stream.flush()


def serve(engine: Engine, out: Output) -> None:
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin.buffer:
            if line.strip():
                inbox.put(decode(line))
        inbox.put(None)

    threading.Thread(target=read, name="runner-stdin", daemon=True).start()
    while True:
        block = not engine.active
        while True:
            try:
                message = inbox.get(block=block)
            except queue.Empty:
                break
            if not engine.handle(message or {"op": "shutdown"}, out):
                out.flush()
                return
            block = False
        engine.step_all(out)
        out.flush()


def main() -> None:
    die_with_parent()
    config = json.loads(sys.argv[1])
    out = Output()
    try:
        engine = Engine(config)
    except Exception as error:
        out.send({"op": "failed", "error": f"{type(error).__name__}: {error}"})
        out.flush()
        sys.exit(1)
    out.send(engine.ready())
    out.flush()
    serve(engine, out)
    engine.close()
    # Skip interpreter teardown: llama.cpp's threads and destructors can abort it after we are done.
    os._exit(0)


if __name__ == "__main__":
    main()
