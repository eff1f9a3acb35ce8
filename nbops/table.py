"""Text tables for the CLI's listings (``nbops runs``, ``nbops schedule list``, ...): columns
padded to their widest cell, two spaces apart, no trailing blanks. A base module: it imports no
other nbops module."""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[Sequence[object]], header: Sequence[object]) -> str:
    """``header`` and ``rows`` as aligned lines (each cell shown with ``str``)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    for r in rows:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip())
    return "\n".join(out)
