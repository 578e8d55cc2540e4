"""Ollama's format.HumanNumber: the ``parameter_size`` shown for a model (``8.0B``, ``137.45M``)."""

from __future__ import annotations


def human_number(n: int) -> str:
    """Format a non-negative count exactly as Ollama's ``format.HumanNumber`` does.

    Go divides ``float64(n)`` (rounded first, then divided), and its ``%.1f`` rounds the binary
    double exactly as Python's does, so 2_850_000_000 gives ``2.9B`` in both.
    """
    if n < 0:
        raise ValueError(f"human_number needs a non-negative count, got {n}")
    if n >= 1_000_000_000:
        return _scaled(float(n) / 1e9, 1, "B")
    if n >= 1_000_000:
        return _scaled(float(n) / 1e6, 2, "M")
    if n >= 1_000:
        return f"{float(n) / 1e3:.0f}K"
    return str(n)


def _scaled(number: float, decimals: int, suffix: str) -> str:
    if number == int(number):
        return f"{number:.0f}{suffix}"
    return f"{number:.{decimals}f}{suffix}"
