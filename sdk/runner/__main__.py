"""A runner process: ``python -m corral.sdk.runner [--preload=MODULE ...] [--preload-delay=SECONDS]``.

Imports the preload modules first (a warm spare waits here with llama.cpp imported; with a delay,
it imports them that many seconds later, or at once when its first message comes sooner), then
reads the load message and requests as JSON lines on stdin and answers on stdout; logs go to stderr.
"""

from __future__ import annotations

import importlib
import os
import queue
import select
import sys
import threading
from typing import Any, BinaryIO

from corral.sdk.runner.codec import decode, encode
from corral.sdk.runner.loop import run
from corral.sdk.runner.process import die_with_parent, protocol_stream


class Output:
    """Buffered writer: lines are flushed once per round of work, not per token."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(encode(message))

    def flush(self) -> None:
        self.stream.flush()


def main() -> None:
    die_with_parent()
    stream = protocol_stream()
    options = [argument.partition("=") for argument in sys.argv[1:]]
    delay = float(next((value for name, _, value in options if name == "--preload-delay"), 0))
    if delay > 0:
        select.select([sys.stdin], [], [], delay)  # returns early when the load message comes
    for name, _, module in options:
        if name == "--preload":
            importlib.import_module(module)
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin.buffer:
            if line.strip():
                inbox.put(decode(line))
        inbox.put(None)

    threading.Thread(target=read, name="runner-stdin", daemon=True).start()
    loaded = run(inbox, Output(stream))
    # Skip interpreter teardown: llama.cpp's threads and destructors can abort it after we are done.
    os._exit(0 if loaded else 1)


if __name__ == "__main__":
    main()
