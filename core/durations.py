"""Go-style durations, as Ollama parses ``keep_alive`` and OLLAMA_KEEP_ALIVE.

A duration is a number of seconds; ``FOREVER`` (infinity) stands for any negative duration, which
Ollama reads as "never expire". Zero means "unload as soon as the request is done".
"""

from __future__ import annotations

import math

FOREVER = math.inf
LONGEST = (2**63 - 1) / 1e9
"""Seconds in Go's longest time.Duration (about 292 years): a keep_alive beyond it is forever."""

_NANOSECONDS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                "m": 60_000_000_000, "h": 3_600_000_000_000}
_LIMIT = 1 << 63  # Go's time.Duration is an int64 of nanoseconds
_DIGITS = frozenset("0123456789")


def parse_go_duration(text: str) -> float:
    """Parse ``time.ParseDuration`` syntax (``5m``, ``1h30m``, ``-1m``, ``300ms``, ``0``) to seconds.

    A port of Go's scanner: one pass over the text (no regular expression, so no backtracking),
    and Go's overflow rule, which bounds every number to 19 digits before its unit. Raises
    ValueError with Go's own message for anything else.
    """
    original = text
    negative = False
    if text and text[0] in "+-":
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"time: invalid duration {_quote(original)}")
    total = 0
    position, end = 0, len(text)
    while position < end:
        if not (text[position] == "." or text[position] in _DIGITS):
            raise ValueError(f"time: invalid duration {_quote(original)}")
        start = position
        whole = 0
        while position < end and text[position] in _DIGITS:
            whole = whole * 10 + ord(text[position]) - 48
            if whole > _LIMIT:
                raise ValueError(f"time: invalid duration {_quote(original)}")
            position += 1
        digits_before = position > start
        fraction, scale, digits_after = 0, 1, False
        if position < end and text[position] == ".":
            position += 1
            digits_after = position < end and text[position] in _DIGITS
            while position < end and text[position] in _DIGITS:
                if scale < 10**18:  # digits past nanosecond precision of an hour are dropped, as in Go
                    fraction, scale = fraction * 10 + ord(text[position]) - 48, scale * 10
                position += 1
        if not (digits_before or digits_after):
            raise ValueError(f"time: invalid duration {_quote(original)}")
        unit_start = position
        while position < end and not (text[position] == "." or text[position] in _DIGITS):
            position += 1
        unit = text[unit_start:position]
        if not unit:
            raise ValueError(f"time: missing unit in duration {_quote(original)}")
        nanoseconds = _NANOSECONDS.get(unit)
        if nanoseconds is None:
            raise ValueError(f"time: unknown unit {_quote(unit)} in duration {_quote(original)}")
        if whole > _LIMIT // nanoseconds:
            raise ValueError(f"time: invalid duration {_quote(original)}")
        value = whole * nanoseconds + int(fraction * (nanoseconds / scale))
        total += value
        if value > _LIMIT or total > _LIMIT:
            raise ValueError(f"time: invalid duration {_quote(original)}")
    if not negative and total > _LIMIT - 1:
        raise ValueError(f"time: invalid duration {_quote(original)}")
    return (-total if negative else total) / 1e9


def _quote(text: str, limit: int = 64) -> str:
    """Go's quote of a value in an error message, cut short: a request may send megabytes."""
    return '"' + text[:limit] + ('..."' if len(text) > limit else '"')


def parse_keep_alive(value: object) -> float:
    """A keep_alive as a request or the environment gives it: a number of seconds or a duration.

    Negative values mean forever. Strings of plain digits are seconds, as OLLAMA_KEEP_ALIVE allows.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, str):
        stripped = value.strip()
        digits = stripped[1:] if stripped[:1] in ("+", "-") else stripped
        seconds = float(stripped) if digits.isascii() and digits.isdigit() else parse_go_duration(stripped)
    else:
        seconds = float(value)
    if math.isnan(seconds):
        raise ValueError("keep_alive is not a number")
    return FOREVER if seconds < 0 or seconds > LONGEST else seconds


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
