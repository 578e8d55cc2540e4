"""Human-readable sizes, times, numbers and tables, byte for byte as Ollama's CLI prints them.

Ports of Ollama's ``format/bytes.go`` (HumanBytes), ``format/time.go`` (HumanTime),
``format/format.go`` (HumanNumber), the Go ``fmt`` verbs ``%g`` and ``%v`` the CLI uses, and the
part of ``github.com/olekukonko/tablewriter`` v0.0.5 that ``ollama list``, ``ps`` and ``show``
use (no borders, no white space, left aligned, a padding string, word wrap at a column width).
Standard library only: the CLI imports this module on every command.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from corral.sdk.gofmt import format_float

KILOBYTE = 1000
MEGABYTE = KILOBYTE * 1000
GIGABYTE = MEGABYTE * 1000
TERABYTE = GIGABYTE * 1000

_MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration saturates at about 292 years
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)


def human_bytes(size: int) -> str:
    """``format.HumanBytes``: decimal units, ``98 MB``, ``4.7 GB``, ``1 KB``, ``999 B``."""
    if size >= TERABYTE:
        value, unit = size / TERABYTE, "TB"
    elif size >= GIGABYTE:
        value, unit = size / GIGABYTE, "GB"
    elif size >= MEGABYTE:
        value, unit = size / MEGABYTE, "MB"
    elif size >= KILOBYTE:
        value, unit = size / KILOBYTE, "KB"
    else:
        return f"{size} B"
    if value >= 10:
        return f"{int(value)} {unit}"
    if value != math.trunc(value):
        return f"{value:.1f} {unit}"
    return f"{int(value)} {unit}"


def _go_div(a: int, b: int) -> int:
    """Go's integer division, which truncates toward zero."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def go_round(value: float) -> int:
    """Go's ``math.Round``: half away from zero."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def human_duration(seconds: float) -> str:
    """``format.humanDuration`` of a non-negative duration in seconds."""
    whole_seconds = int(seconds)
    if whole_seconds < 1:
        return "Less than a second"
    if whole_seconds == 1:
        return "1 second"
    if whole_seconds < 60:
        return f"{whole_seconds} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = go_round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API (any fraction length, ``Z`` or an offset); None for
    a missing value or Go's zero time."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|z|[+-]\d\d:\d\d)?", text)
    if match:  # Python keeps microseconds; Go servers send nanoseconds
        base, fraction, zone = match.groups()
        fraction = (fraction or "")[:7]
        zone = "+00:00" if zone in (None, "Z", "z") else zone
        text = base + fraction + zone
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        if parsed == _GO_ZERO_TIME:
            return None
    except OverflowError:
        return None
    return parsed


def seconds_since(moment: datetime, now: datetime | None = None) -> float:
    """``time.Since``: positive in the past, negative in the future, saturated like Go's Duration."""
    now = now or datetime.now(timezone.utc)
    try:
        delta = (now - moment).total_seconds()
    except OverflowError:
        delta = _MAX_DURATION if moment < now else -_MAX_DURATION
    return max(-_MAX_DURATION, min(_MAX_DURATION, delta))


def human_time(moment: datetime | str | None, zero_value: str, now: datetime | None = None) -> str:
    """``format.HumanTime``: ``2 minutes ago``, ``4 minutes from now``, ``Forever``, or
    ``zero_value`` for a missing or zero time."""
    if isinstance(moment, str) or moment is None:
        moment = parse_time(moment)
    if moment is None:
        return zero_value
    delta = seconds_since(moment, now)
    if _go_div(_go_div(int(delta / 3600), 24), 365) < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


# Go's fmt for the values the CLI prints.


def go_float_g(value: float) -> str:
    """Go's ``%g`` / ``%v`` of a float64 (``8e+09``, ``1.34515008e+08``, ``1e-05``, ``8192``)."""
    return format_float(float(value), "g")


def go_float_f(value: float | int) -> str:
    """``strconv.FormatFloat(f, 'f', -1, 64)``: the shortest digits, never an exponent."""
    return str(value) if isinstance(value, int) else format_float(value, "f")


def go_value(value: Any) -> str:
    """Go's ``%v`` of a value decoded from JSON into ``any`` (numbers are float64)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_float_g(float(value))
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(go_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{go_value(value[key])}" for key in sorted(value)) + "]"
    return str(value)


# tablewriter v0.0.5, as Ollama configures it.

_ANSI = re.compile("\033\\[(?:[0-9]{1,3}(?:;[0-9]{1,3})*)?[m|K]")


def display_width(text: str) -> int:
    """Terminal cells of ``text`` (go-runewidth without East Asian ambiguous widths)."""
    width = 0
    for char in _ANSI.sub("", text):
        if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf", "Mn", "Me"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _wrap_words(words: list[str], space: int, limit: int, penalty: int) -> list[list[str]]:
    """tablewriter's ``WrapWords``: minimal raggedness line breaking."""
    n = len(words)
    widths = [display_width(word) for word in words]
    length = [[0] * n for _ in range(n)]
    for i in range(n):
        length[i][i] = widths[i]
        for j in range(i + 1, n):
            length[i][j] = length[i][j - 1] + space + widths[j]
    breaks = [0] * n
    cost = [2**31 - 1] * n
    for i in range(n - 1, -1, -1):
        if length[i][n - 1] <= limit:
            cost[i] = 0
            breaks[i] = n
            continue
        for j in range(i + 1, n):
            gap = limit - length[i][j - 1]
            candidate = gap * gap + cost[j]
            if length[i][j - 1] > limit:
                candidate += penalty
            if candidate < cost[i]:
                cost[i] = candidate
                breaks[i] = j
    lines = []
    i = 0
    while i < n:
        lines.append(words[i:breaks[i]])
        i = breaks[i]
    return lines


def wrap_string(text: str, limit: int) -> list[str]:
    """tablewriter's ``WrapString``: a word longer than ``limit`` raises the limit."""
    words = text.replace("\n", " ").split(" ")
    for word in words:
        limit = max(limit, display_width(word))
    return [" ".join(line) for line in _wrap_words(words, 1, limit, 100_000)]


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None, *,
          padding: str = "    ", col_width: int = 30) -> str:
    """Render rows as Ollama's tablewriter setup does, ending with a newline.

    Every cell is padded to its column's width and followed by ``padding`` (so row lines end in
    ``padding``); the header's last cell is followed by one space instead. Cells wider than
    ``col_width`` are word-wrapped onto more lines, the other cells of the row filled with two
    spaces on those lines.
    """
    widths: dict[int, int] = {}

    def parse(cell: str, column: int) -> list[str]:
        raw = cell.split("\n")
        max_width = min(max(display_width(line) for line in raw), col_width)
        new_max = max_width
        lines = wrap_string(" ".join(raw), max_width)
        for line in lines:
            new_max = max(new_max, display_width(line))
        if widths.get(column, 0) < new_max or widths.get(column, 0) == 0:
            widths[column] = new_max
        return lines

    def pad_right(text: str, width: int) -> str:
        return text + " " * max(0, width - display_width(text))

    parsed_header = [parse(cell, column) for column, cell in enumerate(header or ())]
    parsed_rows = [[parse(cell, column) for column, cell in enumerate(row)] for row in rows]
    out: list[str] = []
    if header:
        last = len(widths) - 1
        for x in range(max(len(lines) for lines in parsed_header)):
            line = ""
            for y in range(last + 1):
                text = parsed_header[y][x] if y < len(parsed_header) and x < len(parsed_header[y]) else ""
                line += pad_right(text, widths[y]) + (" " if y == last else padding)
            out.append(line + "\n")
    for cells in parsed_rows:
        height = max((len(lines) for lines in cells), default=0)
        cells = [lines + ["  "] * (height - len(lines)) for lines in cells]
        for x in range(height):
            out.append("".join(pad_right(cells[y][x], widths[y]) + padding for y in range(len(cells))) + "\n")
    return "".join(out)
