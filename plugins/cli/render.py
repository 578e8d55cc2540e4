"""Terminal output for ``corral run``: streamed text with word wrap, the waiting spinner, thinking
blocks and the ``--verbose`` summary, as Ollama's CLI draws them (cmd/cmd.go displayResponse,
progress/spinner.go, api/types.go Metrics.Summary). Standard library only.
"""

from __future__ import annotations

import os
import sys
import threading
import unicodedata
from typing import Any, TextIO

GREY = "\033[38;5;245m"
BOLD = "\033[1m"
DEFAULT = "\033[0m"

SPINNER_FRAMES = ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_width(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to; 80 when it is not one."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


def char_width(char: str) -> int:
    """Terminal cells of one character (go-runewidth's RuneWidth without ambiguous widths)."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(char) for char in text)


class WordWrapper:
    """Ollama's ``displayResponse``: writes streamed pieces, and when a line would pass the
    terminal width less five, moves the word being written to the next line (backing the cursor
    up over it), so no word is cut in two. One instance per answer."""

    def __init__(self, out: TextIO, wrap: bool) -> None:
        self.out = out
        self.wrap = wrap
        self.line_length = 0
        self.word = ""

    def write(self, content: str) -> None:
        width = terminal_width(self.out)
        if not (self.wrap and width >= 10):
            self.out.write(self.word + content)
            self.word = ""
            self.out.flush()
            return
        parts: list[str] = []
        for char in content:
            if self.line_length + 1 > width - 5:
                if text_width(self.word) > width - 10:
                    parts.append(self.word + char)
                    self.word = ""
                    self.line_length = 0
                    continue
                back = text_width(self.word)
                if back > 0:
                    parts.append(f"\033[{back}D")
                parts.append("\033[K\n")
                parts.append(self.word + char)
                self.line_length = text_width(self.word) + char_width(char)
            else:
                parts.append(char)
                cells = char_width(char)
                self.line_length += cells
                if cells >= 2:
                    self.word = ""
                elif char in " \t":
                    self.word = ""
                elif char in "\n\r":
                    self.line_length = 0
                    self.word = ""
                else:
                    self.word += char
        self.out.write("".join(parts))
        self.out.flush()


class Spinner:
    """The braille spinner Ollama draws on stderr while it waits; nothing at all unless both
    stdout and stderr are terminals. ``stop()`` erases it and is safe to call more than once."""

    def __init__(self, message: str = "", *, err: TextIO | None = None, out: TextIO | None = None) -> None:
        self.err = err or sys.stderr
        self.message = message
        self.enabled = is_terminal(self.err) and is_terminal(out or sys.stdout)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._drawn = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="corral-spinner", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        frame = 0
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    break
                prefix = f"{self.message} " if self.message else ""
                self.err.write(f"\r\033[K{prefix}{SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]} ")
                self.err.flush()
                self._drawn = True
            frame += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._drawn:
                self.err.write("\r\033[K")
                self.err.flush()
                self._drawn = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
            self._thread = None


def thinking_opening(plain: bool) -> str:
    text = "Thinking...\n"
    return text if plain else GREY + BOLD + text + DEFAULT + GREY


def thinking_closing(plain: bool) -> str:
    text = "...done thinking.\n\n"
    return text if plain else GREY + BOLD + text + DEFAULT


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String``: ``1.234567891s``, ``523.4ms``, ``2m3.5s``, ``750µs``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)

    def fraction(number: int, digits: int) -> str:
        whole, rest = divmod(number, 10**digits)
        tail = f"{rest:0{digits}d}".rstrip("0")
        return f"{whole}.{tail}" if tail else str(whole)

    if value < 1_000_000_000:
        if value < 1_000:
            return f"{sign}{value}ns"
        if value < 1_000_000:
            return f"{sign}{fraction(value, 3)}µs"
        return f"{sign}{fraction(value, 6)}ms"
    seconds_ns = value % 60_000_000_000
    minutes = value // 60_000_000_000
    text = fraction(seconds_ns, 9) + "s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m" + text
        if hours:
            text = f"{hours}h" + text
    return sign + text


def summary(metrics: dict[str, Any]) -> str:
    """``Metrics.Summary``: the timings ``--verbose`` prints after an answer (on stderr)."""

    def integer(key: str) -> int:
        value = metrics.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    lines = []
    total, load = integer("total_duration"), integer("load_duration")
    prompt_count, prompt_duration = integer("prompt_eval_count"), integer("prompt_eval_duration")
    eval_count, eval_duration = integer("eval_count"), integer("eval_duration")
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if prompt_count > 0:
        lines.append(f"prompt eval count:    {prompt_count} token(s)")
    if prompt_duration > 0:
        lines.append(f"prompt eval duration: {go_duration(prompt_duration)}")
        lines.append(f"prompt eval rate:     {prompt_count / (prompt_duration / 1e9):.2f} tokens/s")
    if eval_count > 0:
        lines.append(f"eval count:           {eval_count} token(s)")
    if eval_duration > 0:
        lines.append(f"eval duration:        {go_duration(eval_duration)}")
        lines.append(f"eval rate:            {eval_count / (eval_duration / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)
