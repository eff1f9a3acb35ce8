"""What ``nbops run`` shows while it works. On a terminal: a live table, one row per stage or
sweep point (queued/running/skipped/up to date/done/failed, elapsed time, run id), redrawn in
place. Otherwise (CI logs, pipes): one plain line per change of state."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_COLOURS = {
    "running": "36",
    "done": "32",
    "up to date": "2",
    "failed": "31",
    "skipped": "33",
    "killed": "31",
    "would run": "36",
}


class Progress:
    def __init__(self, out: TextIO | None = None, live: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.t0 = time.monotonic()
        # label -> [status, detail, run_id, since, ended]: a finished row's time stands still
        self._rows: dict[str, list[object]] = {}
        self._drawn = 0
        self._last_draw = 0.0
        self._lock = threading.Lock()

    def _paint(self, status: str) -> str:
        code = _COLOURS.get(status)
        padded = f"{status:<10}"
        return f"\x1b[{code}m{padded}\x1b[0m" if self.live and code else padded

    def line(self, label: str, status: str, detail: str = "", run_id: str | None = None) -> None:
        with self._lock:
            if not self.live:
                t = time.monotonic() - self.t0
                parts = [f"[{t:6.1f}s]", f"{label:<28}", self._paint(status)]
                parts += [detail] if detail else []
                parts += [f"run {run_id}"] if run_id else []
                print(" ".join(parts).rstrip(), file=self.out, flush=True)
                return
            now = time.monotonic()
            old = self._rows.get(label)
            since = old[3] if old and status != "running" else now
            ended = None if status in ("running", "queued") else now
            self._rows[label] = [status, detail, run_id, since, ended]
            self._redraw()

    def tick(self) -> None:
        """Redraw so the elapsed times of running rows move (terminal only; at most 2x a s)."""
        if not self.live:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last_draw < 0.5:
                return
            if any(row[0] == "running" for row in self._rows.values()):
                self._redraw()

    def _redraw(self) -> None:
        """Move the cursor back over the table and draw it again (terminal only)."""
        width = 120
        lines = []
        now = time.monotonic()
        for label, (status, detail, run_id, since, ended) in self._rows.items():
            took = float(ended or now) - float(since)  # type: ignore[arg-type]
            text = f"{label:<28} {self._paint(str(status))} {took:6.1f}s"
            extra = " ".join(x for x in (str(detail or ""), f"run {run_id}" if run_id else "") if x)
            lines.append((text + "  " + extra)[: width + 12])
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        for ln in lines:
            self.out.write("\x1b[2K" + ln + "\n")
        self.out.flush()
        self._drawn = len(lines)
        self._last_draw = time.monotonic()

    def summary(self, status: dict[str, str], seconds: float, run_id: str | None) -> None:
        counts: dict[str, int] = {}
        for s in status.values():
            counts[s] = counts.get(s, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to do"
        tail = f"; pipeline run {run_id}" if run_id else ""
        print(f"nbops run: {text} in {seconds:.1f} s{tail}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
