"""Delivers the runs of one pipeline execution from the runner's own process: MLflow is imported
once (in a background thread, while the first kernel starts), not once per kernel. Stage kernels
append to their run's spool (NBOPS_ATTACH_SPOOL); this sink tails every spool so metrics show up
in MLflow while a stage runs, creates child runs under their parents, and finishes runs.

A run added ``held`` (a queued stage point) is created in the store only once it is released
(its kernel started it: :meth:`Run.begin` gave it its real start time), once it has ended
without starting, or at :meth:`Sink.close`: MLflow cannot move a run's start time afterwards.
``on_created(run, run_id)`` is called (in the sink's thread) as each run gets its MLflow id."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import tags as tag_names
from nbops.errors import AccessDenied, NbopsError
from nbops.tracking import spool as records
from nbops.tracking.run import Run
from nbops.tracking.writer import HEARTBEAT_S

if TYPE_CHECKING:
    from nbops.tracking import capture


@dataclass
class _Entry:
    run: Run
    parent: Run | None
    delivery: Any = None
    done: bool = False
    held: bool = False  # not created in the store until released (or ended)

    def ready(self, closing: bool) -> bool:
        return not self.held or closing or self.run.status != "RUNNING"


class Sink:
    def __init__(
        self,
        uri: str,
        cwd: Path,
        not_before: threading.Event | None = None,
        on_created: Callable[[Run, str], None] | None = None,
    ) -> None:
        self.uri = uri
        self._on_created = on_created
        self._not_before = not_before
        self.cwd = cwd
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self._pumping = threading.Lock()  # one pump at a time: a run is created once
        self._wake = threading.Event()
        self._closing = False
        self._store: Any = None
        self.error: str | None = None
        self.denied: AccessDenied | None = None  # the last error was a refused login/permission
        self._context: capture.RunContext | None = None
        self._busy = False  # the last error was a busy store (waited for), not a missing one
        self._closed = False
        self._beat_at = time.monotonic()  # the runs' last heartbeat (nbops.heartbeat)
        self._thread = threading.Thread(target=self._loop, name="nbops-sink", daemon=True)
        self._thread.start()

    def add(self, run: Run, parent: Run | None = None, *, held: bool = False) -> None:
        """Deliver ``run`` (a child of ``parent``, created after it); ``held``: not created in
        the store before :meth:`release` (or its end)."""
        with self._lock:
            self._entries.append(_Entry(run, parent, held=held))
        self._wake.set()

    def release(self, run: Run) -> None:
        """A held run has begun (:meth:`Run.begin`): create it in the store now."""
        with self._lock:
            for e in self._entries:
                if e.run is run:
                    e.held = False
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        if self._not_before is not None:  # let the executor's imports go first (one GIL)
            self._not_before.wait(timeout=10)
        while True:
            self._wake.wait(0.25)
            self._wake.clear()
            if self._closed:  # given up: the spools' locks are released, nbops sync delivers
                return
            self.pump()
            with self._lock:
                if self._closing and all(e.done for e in self._entries):
                    return

    def _open(self) -> Any:
        if self._store is None:
            from nbops.mlflow.store import TrackingStore

            self._store = TrackingStore(self.uri)
        return self._store

    def _capture(self) -> capture.RunContext:
        """Git state and environment, computed once for the whole pipeline execution."""
        if self._context is None:
            from nbops.tracking import capture  # git and package probes: only once runs start

            self._context = capture.run_context(self.cwd)
        return self._context

    def pump(self) -> None:
        """Deliver what is ready now (the sink's thread does this every 0.25 s, or when woken);
        safe to call from another thread."""
        with self._pumping:
            self._pump()

    def _pump(self) -> None:
        from nbops.tracking.delivery import Delivery

        with self._lock:
            entries = [e for e in self._entries if not e.done and e.ready(self._closing)]
        if not entries:
            return
        try:
            store = self._open()
            for e in entries:
                if e.delivery is None:
                    pid = None
                    if e.parent is not None:
                        pid = self._ensure(e.parent)
                        if pid is None:
                            continue  # its parent is created first
                    e.delivery = Delivery(e.run.spool, store)
                    if pid is not None:
                        tags = e.delivery.start.setdefault("tags", {})
                        tags[tag_names.MLFLOW_PARENT_RUN_ID] = tags[tag_names.PARENT_RUN] = pid
                    self._created(e.run, e.delivery.ensure_run())
                    self._add_context(e)
                e.delivery.pump()
                if e.delivery.ended and e.delivery.caught_up():
                    e.run.spool.finish(e.delivery.run_id)
                    e.run.spool.close()
                    e.done = True
            if time.monotonic() - self._beat_at > HEARTBEAT_S:
                # alive, as a writer says it for a notebook's run: a stage that runs longer
                # than NBOPS_STALE_AFTER must not look dead to `nbops sync` on another machine
                self._beat_at = time.monotonic()
                for e in entries:
                    if e.delivery is not None and not e.done and not e.delivery.ended:
                        e.delivery.heartbeat()
            self.error = None
            self.denied = None
            self._busy = False
        except Exception as exc:  # noqa: BLE001 - retried on the next pump; data stays spooled
            self._busy = _is_busy(exc)
            self.denied = exc if isinstance(exc, AccessDenied) else None
            if isinstance(exc, NbopsError):  # nbops' own words: one line naming the server
                self.error = exc.message
            else:
                first = str(exc).splitlines()[0][:300] if str(exc) else ""
                self.error = f"{type(exc).__name__}: {first}"

    def _created(self, run: Run, run_id: str) -> None:
        if self._on_created is None:
            return
        try:
            self._on_created(run, run_id)
        except Exception:  # noqa: BLE001 - showing an id never stops delivery
            pass

    def _ensure(self, run: Run) -> str | None:
        with self._lock:
            for e in self._entries:
                if e.run is run and e.delivery is not None:
                    return e.delivery.run_id  # type: ignore[no-any-return]
        return None

    def _add_context(self, e: _Entry) -> None:
        sp = e.run.spool
        if sp.fd is None:
            return
        from nbops.tracking import capture

        capture.append_to(sp, self._capture())

    def run_id(self, run: Run, timeout: float = 60.0) -> str | None:
        """The MLflow id of a run once the sink created it (None if the store is unreachable)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rid = run.id_if_ready()
            if rid is not None:
                return rid
            self._wake.set()
            time.sleep(0.02)
        return None

    def close(self, timeout: float | None = None, on_wait: Any = None) -> bool:
        """Deliver everything that is left; False if some runs stay spooled (store down, or
        still busy when ``timeout`` (NBOPS_FLUSH_TIMEOUT, 120 s) ran out): :meth:`undelivered`
        says what. A store that is only busy (a locked SQLite database) is waited for; one that
        cannot be reached for GIVE_UP_S is left to ``nbops sync``. ``on_wait(lines)`` is called
        once if delivery takes longer than a few seconds, with what is still on its way."""
        from nbops.tracking.run import DEFAULT_WAIT

        with self._lock:
            self._closing = True
        self._wake.set()
        t0 = time.monotonic()
        deadline = t0 + (DEFAULT_WAIT if timeout is None else timeout)
        failing_since: float | None = None
        told = on_wait is None
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.2)
            if self.error is None or self._busy:
                failing_since = None
            elif failing_since is None:
                failing_since = time.monotonic()
            elif time.monotonic() - failing_since > GIVE_UP_S:
                break  # the store stays unreachable: leave the rest to nbops sync
            if not told and time.monotonic() - t0 > TELL_AFTER_S and self._thread.is_alive():
                told = True
                on_wait(self.undelivered())
        with self._lock:
            self._closed = True
            left = [e for e in self._entries if not e.done]
        for e in left:
            e.run.spool.close()  # release the lock: nbops sync can deliver it later
        return not left

    def undelivered(self) -> list[str]:
        """One line per run whose data is not all in the store: its name, id and what is left."""
        with self._lock:
            left = [e for e in self._entries if not e.done]
        return [_describe(e) for e in left]

    def dropped(self) -> list[str]:
        """What the store refused for good (a value it rejects, an artifact file that vanished):
        one line each, naming the run."""
        with self._lock:
            entries = list(self._entries)
        out = []
        for e in entries:
            for what in getattr(e.delivery, "dropped", None) or []:
                out.append(f"{e.run.name} (run {e.run.id_if_ready()}): {what}")
        return out


GIVE_UP_S = 10.0  # an unreachable store (not merely a busy one) is given up after this long
TELL_AFTER_S = 10.0  # delivery still going after this long at the end: say what is left


def _is_busy(exc: BaseException) -> bool:
    """A store that answers but is busy for now (SQLite locked by another process)."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _describe(e: _Entry) -> str:
    """``train[C=1] (run 1f2e...): 3 metrics, artifacts model, notebook; the end of the run``."""
    run = e.run
    rid = run.id_if_ready()
    who = f"run {rid}" if rid else f"run not created yet, spool {run.spool.dir}"
    offset = e.delivery.offset if e.delivery is not None else run.spool.acked()
    counts = {records.Metric: 0, records.Param: 0, records.Tag: 0, records.Dataset: 0}
    artifacts: list[str] = []
    ended = False
    try:
        for _, rec in run.spool.records_from(offset):
            if isinstance(rec, records.Artifact):
                artifacts.append(rec.artifact_dir or Path(rec.src).name)
            elif isinstance(rec, records.End):
                ended = True
            elif type(rec) in counts:
                counts[type(rec)] += 1
    except (OSError, ValueError):
        return f"{run.name} ({who}): its spool {run.spool.dir} could not be read"
    parts = [
        f"{n} {label}"
        for n, label in (
            (counts[records.Metric], "metric values"),
            (counts[records.Param], "params"),
            (counts[records.Tag], "tags"),
            (counts[records.Dataset], "datasets"),
        )
        if n
    ]
    if artifacts:
        shown = ", ".join(dict.fromkeys(artifacts[:20]))
        parts.append(f"artifacts {shown}" + (" ..." if len(artifacts) > 20 else ""))
    if ended:
        parts.append("the end of the run")
    return f"{run.name} ({who}): " + ("; ".join(parts) or "nothing left but its lock")
