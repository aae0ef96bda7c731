"""Plain-text tables for what the commands print (aligned columns, a rule under the header)."""

from __future__ import annotations

from typing import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """Columns left-aligned to their widest cell; numbers are formatted by the caller."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[k]) for row in cells if k < len(row)) for k in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(indent + line for line in lines)


def format_score(key: str, value: float, digits: int = 4) -> str:
    """A metric's value as printed: counts (``num_active_dims``...) as whole numbers, scores with ``digits``."""
    return f"{value:.0f}" if key.startswith("num_") else f"{value:.{digits}f}"
