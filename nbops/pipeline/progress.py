"""What ``nbops run`` shows while it works. On a terminal: a live table, one row per stage or
sweep point, redrawn in place. Otherwise (CI logs, pipes): one plain line per change of state.

What a row says, in both forms:

- its state: ``queued`` (waiting for a kernel: at most ``--jobs`` rows are ``running``),
  ``running`` (from the moment the executor really started it), then ``done`` / ``failed`` /
  ``killed`` / ``skipped`` / ``up to date``;
- its elapsed time, from its real start to its end (a finished row stands still; a row that
  never ran shows none). A stage point's row reads its run's own clock (:meth:`Progress.follow`):
  the table shows exactly its MLflow run's start and end times, and ``saving`` between the end
  of its kernel and the end of its bookkeeping (checks, outs versioned), while the next point
  may already run;
- its MLflow run id once the store has created the run (the sink creates runs in the
  background): the live table fills it in when it arrives; the plain lines say each run id
  exactly once, on the row's next line or, when the row has already finished, on a line of its
  own, and never wait for the store;
- a sweep stage has a row of its own above its points: ``running`` while any point runs, its
  elapsed time the span of its points (first start to last end), its run id the sweep's run;
- on a cluster, where a point runs (:meth:`Progress.place`): ``on w1 (tcp://10.0.0.5:4711)``
  after its detail while it runs and once it is done, and what the executor says of it (a retry
  on another worker: :meth:`Progress.remark`) as its detail.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TextIO

_COLOURS = {
    "queued": "2",
    "running": "36",
    "saving": "36",
    "done": "32",
    "up to date": "2",
    "failed": "31",
    "skipped": "33",
    "killed": "31",
    "would run": "36",
}
WAITING = ("queued",)
ACTIVE = ("running", "saving")


class Clocked(Protocol):
    """What :meth:`Progress.follow` reads: a run's start and end (ms since the epoch; the end
    None until its work is over). :class:`nbops.tracking.run.Run` is one."""

    start_ms: int
    ended_ms: int | None


@dataclass
class _Row:
    status: str = "queued"
    detail: str = ""
    run_id: str | None = None
    started: float | None = None  # the clock when it began running
    ended: float | None = None  # the clock when it reached its final state (stands still)
    said_id: bool = False  # plain lines: the run id has been printed
    members: list[str] | None = None  # a sweep stage's row: the labels of its points
    shown: str = ""  # plain lines: the last state printed for a sweep stage's row
    clock: Clocked | None = None  # its run, whose times it shows (follow)
    where: str = ""  # the worker it runs on (a cluster's), "" when here

    def placed(self, status: str, detail: str) -> str:
        """``detail`` with where the row runs, for the states where that is news."""
        if not self.where or status not in (*ACTIVE, "done"):
            return detail
        if not detail:
            return f"on {self.where}"
        return (
            f"{detail} on {self.where}"
            if detail.startswith("in ")
            else f"{detail}; on {self.where}"
        )

    @property
    def final(self) -> bool:
        return self.status not in WAITING + ACTIVE

    def state(self) -> str:
        """Its state as shown: ``saving`` once its run's work is over but it is not done."""
        c = self.clock
        if self.status == "running" and c is not None and c.ended_ms is not None:
            return "saving"
        return self.status

    def times(self) -> tuple[float | None, float | None]:
        """(start, end) in seconds of the clock; its run's own times when it follows one."""
        c = self.clock
        if c is None or self.started is None:
            return self.started, self.ended
        end = c.ended_ms / 1000 if c.ended_ms is not None else self.ended
        return c.start_ms / 1000, end


@dataclass
class _Span:
    status: str
    started: float | None
    ended: float | None
    detail: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class Progress:
    def __init__(
        self,
        out: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.time,  # seconds: the runs' clock (follow)
    ) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.clock = clock
        self.t0 = clock()
        self._rows: dict[str, _Row] = {}
        self._stage_of: dict[str, str] = {}  # point label -> its sweep stage's row
        self._drawn = 0
        self._last_draw = 0.0
        self._lock = threading.Lock()

    def _paint(self, status: str) -> str:
        code = _COLOURS.get(status)
        padded = f"{status:<10}"
        return f"\x1b[{code}m{padded}\x1b[0m" if self.live and code else padded

    # --- what the execution tells ---------------------------------------------------------------
    def line(self, label: str, status: str, detail: str = "", run_id: str | None = None) -> None:
        """Row ``label`` is now ``status`` (``detail``: why, or what it did)."""
        with self._lock:
            now = self.clock()
            row = self._rows.setdefault(label, _Row())
            if status in WAITING:  # (again) waiting: no time until it runs
                row.started = row.ended = row.clock = None
            elif status in ACTIVE:
                if row.started is None or row.final:  # a row that runs again starts anew
                    row.started, row.ended = now, None
            elif row.ended is None:
                row.ended = now
            row.status, row.detail = status, detail
            row.run_id = run_id or row.run_id
            if self.live:
                self._redraw()
                return
            self._print(label, status, detail, row)
            if row.members is not None:
                row.shown = self._span(row).status  # a sweep stage told a state of its own
            stage = self._stage_of.get(label)
            if stage is not None:
                self._print_stage(stage)

    def place(self, label: str, where: str) -> None:
        """Row ``label`` runs on ``where`` (a worker: ``w1 (tcp://10.0.0.5:4711)``), said from
        its next state on (called from the executor's threads)."""
        with self._lock:
            self._rows.setdefault(label, _Row()).where = where

    def remark(self, label: str, text: str) -> None:
        """The executor says ``text`` about row ``label`` (a retry on another worker): its
        detail until its next state; a plain line says it now."""
        with self._lock:
            row = self._rows.setdefault(label, _Row())
            row.detail = text
            if self.live:
                self._redraw()
                return
            self._emit([self._stamp(), f"{label:<28}", self._paint(row.state()), text])

    def stage(self, name: str) -> None:
        """A sweep stage's row, above its points (which :meth:`member` adds)."""
        with self._lock:
            row = self._rows.setdefault(name, _Row())
            if row.members is None:
                row.members = []

    def member(self, stage: str, label: str) -> None:
        """Point ``label`` belongs to sweep stage ``stage``'s row."""
        with self._lock:
            row = self._rows.setdefault(stage, _Row(members=[]))
            if row.members is None:
                row.members = []
            if label not in row.members:
                row.members.append(label)
            self._stage_of[label] = stage

    def follow(self, label: str, run: Clocked) -> None:
        """Row ``label`` shows ``run``'s own start and end (called as the run begins)."""
        with self._lock:
            self._rows.setdefault(label, _Row()).clock = run

    def identify(self, label: str, run_id: str) -> None:
        """The store created row ``label``'s run: show its id (called from the sink's thread).
        Plain lines: said now if the row has finished, else on its next line."""
        with self._lock:
            row = self._rows.setdefault(label, _Row())
            row.run_id = run_id
            if self.live:
                self._redraw()
                return
            if row.said_id:
                return
            status = self._span(row).status
            if status in WAITING or (row.members is not None and not row.shown):
                return  # its next line says it
            self._emit([self._stamp(), f"{label:<28}", self._paint(status), f"run {run_id}"])
            row.said_id = True

    def tick(self) -> None:
        """Redraw so the elapsed times of running rows move (terminal only; at most 2x a s)."""
        if not self.live:
            return
        with self._lock:
            if self.clock() - self._last_draw < 0.5:
                return
            if any(self._span(r).status in ACTIVE for r in self._rows.values()):
                self._redraw()

    # --- plain lines ----------------------------------------------------------------------------
    def _stamp(self) -> str:
        return f"[{self.clock() - self.t0:6.1f}s]"

    def _emit(self, parts: list[str]) -> None:
        print(" ".join(p for p in parts if p).rstrip(), file=self.out, flush=True)

    def _print(self, label: str, status: str, detail: str, row: _Row) -> None:
        started, ended = row.times()
        if not detail and row.final and started is not None and ended is not None:
            detail = f"in {ended - started:.1f} s"  # from its real start to its end
        if row.members is None:
            detail = row.placed(status, detail)
        parts = [self._stamp(), f"{label:<28}", self._paint(status), detail]
        if row.run_id and not row.said_id and status not in WAITING:
            parts.append(f"run {row.run_id}")
            row.said_id = True
        self._emit(parts)

    def _print_stage(self, name: str) -> None:
        """A sweep stage's line when its state changes (its first point runs, its last ends)."""
        row = self._rows[name]
        span = self._span(row)
        if span.status == row.shown or span.status in WAITING:
            return
        row.shown = span.status
        detail = span.detail
        if span.started is not None and span.ended is not None:
            detail += f" in {span.ended - span.started:.1f} s"
        self._print(name, span.status, detail, row)

    # --- the live table -------------------------------------------------------------------------
    def _span(self, row: _Row) -> _Span:
        """A row's state and times; a sweep stage's come from its points unless it was told a
        final state of its own (its outs missing, say)."""
        if row.members is None or not row.members:
            return _Span(row.state(), *row.times(), row.placed(row.state(), row.detail))
        points = [self._rows[m] for m in row.members if m in self._rows]
        counts: dict[str, int] = {}
        for p in points:
            counts[p.state()] = counts.get(p.state(), 0) + 1
        spans = [p.times() for p in points]
        starts = [a for a, _ in spans if a is not None]
        started = min(starts) if starts else None
        every_final = bool(points) and all(p.final for p in points)
        ends = [b for _, b in spans if b is not None]
        ended = max(ends) if every_final and ends else None
        if row.final:  # told of its own (failed: an out missing; skipped; up to date)
            status = row.status
            ended = row.ended if ended is None else ended
        elif any(p.state() in ACTIVE for p in points):
            status = "running"
        elif every_final:
            bad = [s for s in ("killed", "failed") if counts.get(s)]
            status = bad[0] if bad else "done"
        elif starts:
            status = "running"  # between points: one ended, the next is still queued
        else:
            status = "queued"
        if row.final and row.detail:
            detail = row.detail
        else:
            n = len(row.members)
            tally = ", ".join(f"{k} {s}" for s, k in counts.items())
            detail = f"{n} point{'s' * (n != 1)}: {tally}"
        return _Span(status, started, ended, detail, counts)

    def _redraw(self) -> None:
        """Move the cursor back over the table and draw it again (terminal only)."""
        width = 120
        lines = []
        now = self.clock()
        for label, row in self._rows.items():
            span = self._span(row)
            if span.started is None:
                took = " " * 7
            else:
                took = f"{(span.ended if span.ended is not None else now) - span.started:6.1f}s"
            text = f"{label:<28} {self._paint(span.status)} {took}"
            run = f"run {row.run_id}" if row.run_id else ""
            extra = "  ".join(x for x in (run, span.detail) if x)  # a long detail is cut, not it
            lines.append((text + "  " + extra)[: width + 12])
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        for ln in lines:
            self.out.write("\x1b[2K" + ln + "\n")
        self.out.flush()
        self._drawn = len(lines)
        self._last_draw = self.clock()

    # --- the end --------------------------------------------------------------------------------
    def summary(self, status: dict[str, str], seconds: float, run_id: str | None) -> None:
        counts: dict[str, int] = {}
        for s in status.values():
            counts[s] = counts.get(s, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to do"
        tail = f"; pipeline run {run_id}" if run_id else ""
        print(f"nbops run: {text} in {seconds:.1f} s{tail}", file=self.out, flush=True)

    def say(self, text: str) -> None:
        """One line after the summary (the executor's report: jobs per worker, bytes shipped)."""
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
