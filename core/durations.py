"""Go-style durations, as Ollama parses ``keep_alive`` and OLLAMA_KEEP_ALIVE.

A duration is a number of seconds; ``FOREVER`` (infinity) stands for any negative duration, which
Ollama reads as "never expire". Zero means "unload as soon as the request is done".
"""

from __future__ import annotations

import math
import re

FOREVER = math.inf

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Parse ``time.ParseDuration`` syntax (``5m``, ``1h30m``, ``-1m``, ``300ms``, ``0``) to seconds.

    Raises ValueError with Go's own message for anything else.
    """
    original = text
    sign = 1.0
    if text and text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            number = re.match(r"\d+\.?\d*|\.\d+", text[position:])
            if number is None:
                raise ValueError(f'time: invalid duration "{original}"')
            unit = re.match(r"[^.0-9]*", text[position + number.end():]).group()
            if not unit:
                raise ValueError(f'time: missing unit in duration "{original}"')
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return sign * total


def parse_keep_alive(value: object) -> float:
    """A keep_alive as a request or the environment gives it: a number of seconds or a duration.

    Negative values mean forever. Strings of plain digits are seconds, as OLLAMA_KEEP_ALIVE allows.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, str):
        stripped = value.strip()
        seconds = float(stripped) if re.fullmatch(r"[+-]?\d+", stripped) else parse_go_duration(stripped)
    else:
        seconds = float(value)
    if math.isnan(seconds):
        raise ValueError("keep_alive is not a number")
    return FOREVER if seconds < 0 else seconds


def format_go_duration(seconds: float) -> str:
    """Seconds as Go prints a time.Duration (``5m0s``, ``1h30m0s``, ``300ms``); forever is ``-1``."""
    if seconds == FOREVER:
        return "-1"
    if seconds == 0:
        return "0s"
    if seconds < 1:
        for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if seconds >= scale:
                return f"{_trim(seconds / scale)}{unit}"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_trim(secs)}s"
    if hours or minutes:
        text = f"{int(minutes)}m" + text
    if hours:
        text = f"{int(hours)}h" + text
    return text


def _trim(number: float) -> str:
    return f"{number:.9f}".rstrip("0").rstrip(".")
