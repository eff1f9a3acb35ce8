"""What ``nbops run`` shows while it works: one line per change of a stage's state (queued,
running, skipped, up to date, done, failed) with its duration and run id; colours on a terminal,
plain lines otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_COLOURS = {
    "running": "36",
    "done": "32",
    "up to date": "2",
    "failed": "31",
    "skipped": "33",
    "would run": "36",
}


class Progress:
    def __init__(self, out: TextIO | None = None, colour: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.colour = self.out.isatty() if colour is None else colour
        self.t0 = time.monotonic()

    def _paint(self, status: str) -> str:
        code = _COLOURS.get(status)
        return f"\x1b[{code}m{status}\x1b[0m" if self.colour and code else status

    def line(self, label: str, status: str, detail: str = "", run_id: str | None = None) -> None:
        t = time.monotonic() - self.t0
        parts = [f"[{t:6.1f}s]", f"{label:<28}", self._paint(f"{status:<10}")]
        if detail:
            parts.append(detail)
        if run_id:
            parts.append(f"run {run_id}")
        print(" ".join(parts).rstrip(), file=self.out, flush=True)

    def summary(self, status: dict[str, str], seconds: float, run_id: str | None) -> None:
        counts: dict[str, int] = {}
        for s in status.values():
            counts[s] = counts.get(s, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to do"
        tail = f"; pipeline run {run_id}" if run_id else ""
        print(f"nbops run: {text} in {seconds:.1f} s{tail}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
