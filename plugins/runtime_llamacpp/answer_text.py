"""The text of an answer as its tokens arrive: whole characters only, cut at a stop string, and
held back while it may be the start of one (as Ollama does), so no stop string ever leaks out."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class AnswerText:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.held = ""

    def feed(self, data: bytes) -> tuple[str, bool]:
        """Take a token's bytes; return the text that may go out now, and whether a stop string ended it."""
        self.held += self.decoder.decode(data)
        if not self.stops or not self.held:
            text, self.held = self.held, ""
            return text, False
        found = [index for index in (self.held.find(stop) for stop in self.stops) if index >= 0]
        if found:
            text, self.held = self.held[:min(found)], ""
            return text, True
        keep = self._partial_stop()
        text, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return text, False

    def _partial_stop(self) -> int:
        """The length of the longest end of the held text that begins a stop string."""
        for length in range(min(len(self.held), max(map(len, self.stops)) - 1), 0, -1):
            tail = self.held[-length:]
            if any(stop.startswith(tail) for stop in self.stops):
                return length
        return 0

    def flush(self) -> str:
        """What is held when the answer ends for another reason than a stop string."""
        text, self.held = self.held + self.decoder.decode(b"", final=True), ""
        return text
