"""argparse types for the numbers the CLI takes (``--max``, ``--wait``, ``--port``,
``--tolerance``, ``--threshold``): a bad one is argparse's one-line usage error (exit 2) naming
the option and the range, never an overflow or a NaN deep inside a command."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def count(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in [lo, hi]."""

    def parse(text: str) -> int:
        t = text.strip()
        if not (t.isascii() and t.lstrip("-").isdigit()) or len(t) > 12:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number")
        value = int(t)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not between {lo} and {hi}")
        return value

    parse.__name__ = "count"
    return parse


def number(
    lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False
) -> Callable[[str], float]:
    """A finite number in [lo, hi] (or an open end: ``open_lo``/``open_hi``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
        low_ok = value > lo if open_lo else value >= lo
        high_ok = value < hi if open_hi else value <= hi
        if not math.isfinite(value) or not (low_ok and high_ok):
            left, right = "(" if open_lo else "[", ")" if open_hi else "]"
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not in {left}{lo:g}, {hi:g}{right}")
        return value

    parse.__name__ = "number"
    return parse
