"""Split streamed output into thinking and content by the template's thinking tags."""

from __future__ import annotations


class ThinkingSplitter:
    """Feed text pieces; get back ``(thinking, content)`` pieces. Tags split across pieces are
    held back until they are complete, so neither side ever shows half a tag."""

    def __init__(self, opening: str, closing: str, *, starts_thinking: bool = False) -> None:
        self.opening = opening
        self.closing = closing
        self.state = "thinking" if starts_thinking else "start"
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        self.buffer += text
        thinking = content = ""
        while self.buffer:
            if self.state == "start":
                stripped = self.buffer.lstrip()
                if stripped.startswith(self.opening):
                    self.buffer = stripped[len(self.opening):]
                    self.state = "thinking"
                elif self.opening.startswith(stripped):
                    break  # could still become the opening tag
                else:
                    self.state = "content"
            elif self.state == "thinking":
                index = self.buffer.find(self.closing)
                if index >= 0:
                    thinking += self.buffer[:index]
                    self.buffer = self.buffer[index + len(self.closing):].lstrip()
                    self.state = "content"
                else:
                    keep = _partial_suffix(self.buffer, self.closing)
                    thinking += self.buffer[: len(self.buffer) - keep]
                    self.buffer = self.buffer[len(self.buffer) - keep:]
                    break
            else:
                content += self.buffer
                self.buffer = ""
        return thinking, content

    def flush(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        return (rest, "") if self.state == "thinking" else ("", rest)


def _partial_suffix(text: str, tag: str) -> int:
    """How many trailing characters of ``text`` could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
