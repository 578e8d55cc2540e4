"""Plain aligned columns, the way Ollama's CLI prints its tables."""

from __future__ import annotations

from collections.abc import Sequence


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], gap: int = 4) -> str:
    widths = [len(title) for title in header]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width + gap) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(lines)
