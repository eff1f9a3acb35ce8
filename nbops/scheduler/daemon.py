"""``nbops scheduler``: the foreground daemon. A thin loop around the pure core: it reloads the
schedules, asks the core what is due, starts executions in threads, kills what outlived its
timeout, persists the slots, writes a heartbeat, and waits on an Event. SIGTERM/SIGINT stop it
cleanly: running executions are stopped (their runs end KILLED) before it exits."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import AlreadyRunning, ConfigError, NbopsError
from nbops.scheduler import sources
from nbops.scheduler.core import Core, Skip, Start
from nbops.scheduler.execution import (
    STOP_GRACE,
    Execution,
    ExecutionResult,
    alive,
    descendants,
    run_hook,
)
from nbops.scheduler.jobs import perform
from nbops.scheduler.lock import FileLock, daemon_lock
from nbops.scheduler.model import Schedule
from nbops.scheduler.store import ScheduleStore

log = logging.getLogger("nbops.scheduler")

POLL = 1.0
"""Look for run-now requests and changed schedules at least this often (seconds)."""
HEARTBEAT = 5.0
PRUNE_EVERY = 3600.0


def status_path(sched_dir: Path) -> Path:
    return sched_dir / "daemon.json"


def read_status(sched_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(status_path(sched_dir).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def write_status(sched_dir: Path, data: dict[str, Any]) -> None:
    """Atomic: write a temporary file, then rename it over the old one."""
    path = status_path(sched_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class Daemon:
    def __init__(
        self,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
        poll: float = POLL,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.root = root
        self.store = ScheduleStore(root)
        self.dir = self.store.dir
        self.clock = clock
        self.poll, self.heartbeat = poll, heartbeat
        self.core = Core(clock)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.mutex = threading.RLock()
        self.threads: dict[str, threading.Thread] = {}
        self.executions: dict[str, Execution] = {}
        self.killing: set[int] = set()
        self.since = time.time()
        self._last_beat = 0.0
        self._last_prune = 0.0
        self._yaml_key: tuple[float, int] | None = None
        self._pipeline: Any = None
        self._specs: list[Schedule] = []
        self._config_error: str | None = None
        self._invalid: dict[str, str] = {}  # name -> why, as last logged
        self._store_error: str | None = None
        self._lock: FileLock | None = None

    # --- life cycle -----------------------------------------------------------------------
    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or ``stop()``); 0 after a clean stop."""
        lock = daemon_lock(self.dir)
        if not lock.acquire():
            pid = read_status(self.dir).get("pid")
            raise AlreadyRunning(
                f"a scheduler is already running for {self.root} (pid {pid or 'unknown'})",
                "one daemon per project: stop that one first (kill -TERM "
                f"{pid or '<pid>'}, or `systemctl --user stop nbops-scheduler`)",
            )
        self._lock = lock
        old: dict[signal.Signals, Any] = {}
        try:
            self._beat(force=True)
            self._reload(first=True)
            self._recover()
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    old[sig] = signal.signal(sig, lambda *_: self.stop())
            names = ", ".join(s.name for s in self._specs) or "none yet"
            log.info(
                "nbops scheduler: pid %d, project %s, schedules: %s", os.getpid(), self.root, names
            )
            self._loop()
        finally:
            self._shutdown()
            for sig, handler in old.items():
                signal.signal(sig, handler)
            write_status(
                self.dir,
                {**read_status(self.dir), "stopped": time.time(), "last_beat": time.time()},
            )
            lock.release()
            log.info("nbops scheduler: stopped")
        return 0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._step()
            except NbopsError as exc:  # the database locked or damaged under us: say it, retry
                if exc.message != self._store_error:
                    log.error("%s%s", exc.message, f" (hint: {exc.hint})" if exc.hint else "")
                    self._store_error = exc.message
                self.wake.wait(self.poll)
                self.wake.clear()
                continue
            if self._store_error is not None:
                log.info("the scheduler database is usable again")
                self._store_error = None

    def _step(self) -> None:
        """One turn of the loop: reload, requests, due fire times, backstops, then wait."""
        if not self.stopping.is_set():
            self._reload()
            with self.mutex:
                for name in self.store.take_requests():
                    if name not in self.core.specs:
                        log.warning("run-now request for unknown schedule %r ignored", name)
                        continue
                    skip = self.core.request(name)
                    if skip is not None:
                        self._record_skip(skip)
                actions = self.core.tick()
                overdue = self.core.overdue()
                try:
                    self.store.save_slots(self.core.slots)
                except NbopsError as exc:  # the actions are carried out all the same
                    log.error("the daemon's state was not saved: %s", exc.message)
            for action in actions:
                if isinstance(action, Skip):
                    self._record_skip(action)
                elif isinstance(action, Start):
                    self._start(action)
            for name in overdue:
                self._backstop(name)
            self._beat()
            self._prune()
            wake_at = self.core.next_wake()
            timeout = self.poll if wake_at is None else min(self.poll, wake_at - self.clock())
            self.wake.wait(max(0.0, timeout))
            self.wake.clear()

    def _shutdown(self) -> None:
        self.stopping.set()
        running = list(self.executions.values())
        if running:
            log.info("stopping %d running execution(s)", len(running))
        stoppers = [threading.Thread(target=ex.stop, daemon=True) for ex in running]
        for t in stoppers:
            t.start()
        deadline = time.monotonic() + STOP_GRACE + 60
        for t in list(self.threads.values()):
            t.join(max(0.0, deadline - time.monotonic()))
        with self.mutex:
            try:
                self.store.save_slots(self.core.slots)
            except NbopsError as exc:
                log.error("the daemon's state was not saved: %s", exc.message)

    # --- schedules ------------------------------------------------------------------------
    def _reload(self, first: bool = False) -> None:
        """Schedules from nbops.yaml (re-read when it changes) and the store, each checked by
        ``validation``: an invalid one is skipped (logged, and a history row says why, once per
        problem) and never stops the others. A missing or unreadable nbops.yaml, or a scheduler
        database that cannot be used, stops the start; later it is logged and the last good
        schedules stay."""
        path = self.root / project.CONFIG_FILE
        try:
            st = path.stat()
            key = (st.st_mtime, st.st_size)
            if key != self._yaml_key or self._pipeline is None:
                self._pipeline = sources.load_pipeline(self.root)
                self._yaml_key = key
            found = sources.entries(self.root, self.store, self._pipeline)
        except (ConfigError, OSError, NbopsError) as exc:
            if first:
                raise
            text = str(exc)
            if text != self._config_error:
                log.error("schedules not reloaded, keeping the last good ones: %s", text)
                self._config_error = text
            return
        if self._config_error is not None:
            log.info("schedules reloaded: the problem is gone")
            self._config_error = None
        self._note_invalid(found)
        specs = [e.schedule for e in found if e.schedule is not None]
        if first or specs != self._specs:
            with self.mutex:
                self.core.load(specs, self.store.slots() if first else None)
            if not first:
                log.info("schedules now: %s", ", ".join(s.name for s in specs) or "none")
            self._specs = specs

    def _note_invalid(self, found: list[sources.Entry]) -> None:
        """Log each invalid schedule and give it a skipped history row, once per problem."""
        now_invalid = {e.name: e.problem or "invalid" for e in found if e.schedule is None}
        for name, problem in now_invalid.items():
            if self._invalid.get(name) == problem:
                continue
            log.error("schedule %s is invalid and does not run: %s", name, problem)
            try:
                self.store.add_history(
                    name,
                    fire_time=time.time(),
                    reason="cron",
                    status="skipped",
                    error=f"invalid schedule, not run: {problem}",
                    ended=time.time(),
                )
            except NbopsError as exc:
                log.error("schedule %s: cannot record it: %s", name, exc.message)
        self._invalid = now_invalid

    def _recover(self) -> None:
        """A previous daemon that died mid-execution left a running slot: end that execution
        (its runner is an orphan now) and record it as lost."""
        with self.mutex:
            for name, slot in self.core.slots.items():
                run = slot.running
                if run is None:
                    continue
                slot.running = None
                if run.history_id is None:
                    continue
                rows = [r for r in self.store.history(name, limit=20) if r.id == run.history_id]
                if rows and rows[0].status == "running":
                    if rows[0].pid and alive(rows[0].pid):
                        _terminate(rows[0].pid)
                    self.store.update_history(
                        run.history_id,
                        status="lost",
                        ended=time.time(),
                        error="the scheduler stopped during this execution",
                    )
                    log.warning("schedule %s: execution %d was lost", name, run.history_id)
            self.store.save_slots(self.core.slots)

    # --- executions -----------------------------------------------------------------------
    def _record_skip(self, skip: Skip) -> None:
        log.info("schedule %s: skipped (%s)", skip.name, skip.reason)
        try:
            self.store.add_history(
                skip.name,
                fire_time=skip.fire,
                reason="cron",
                status="skipped",
                error=skip.reason,
                ended=time.time(),
            )
        except NbopsError as exc:
            log.error("schedule %s: the skip was not recorded: %s", skip.name, exc.message)

    def _start(self, action: Start) -> None:
        name, p = action.name, action.pending
        spec = self.core.specs[name]
        try:
            hid = self.store.add_history(
                name,
                fire_time=p.fire,
                reason=p.reason,
                attempt=p.attempt,
                status="running",
                started=time.time(),
            )
        except NbopsError as exc:  # no row to record it in: do not run it blind
            log.error("schedule %s: not started, %s", name, exc.message)
            with self.mutex:
                self.core.finished(name, True)
            return
        with self.mutex:
            slot = self.core.slots[name]
            if slot.running is not None:
                slot.running.history_id = hid
            try:
                self.store.save_slots(self.core.slots)
            except NbopsError as exc:
                log.error("the daemon's state was not saved: %s", exc.message)
        t = threading.Thread(target=self._execute, args=(spec, hid), name=f"schedule-{name}")
        self.threads[name] = t
        t.start()

    def _on_process(self, name: str, ex: Execution) -> None:
        self.executions[name] = ex
        if self.stopping.is_set():
            ex.stop()

    def _execute(self, spec: Schedule, hid: int) -> None:
        name = spec.name
        res: ExecutionResult | None
        try:
            res = perform(
                self.root,
                self.store,
                spec,
                hid,
                on_process=lambda ex: self._on_process(name, ex),
                stopping=self.stopping,
            )
        except Exception as exc:  # a broken execution never takes the daemon down
            log.exception("schedule %s: execution %d could not run", name, hid)
            res = ExecutionResult("failed", None, error=f"the scheduler could not run it: {exc}")
            try:
                self.store.update_history(hid, status="failed", error=res.error, ended=time.time())
            except NbopsError as err:
                log.error("schedule %s: execution %d not recorded: %s", name, hid, err.message)
        finally:
            self.executions.pop(name, None)
        with self.mutex:
            ok = res is None or res.ok or self.stopping.is_set()
            outcome = self.core.finished(name, ok)
            try:
                self.store.save_slots(self.core.slots)
            except NbopsError as err:  # saved again by the loop's next turn
                log.error("schedule %s: state not saved: %s", name, err.message)
        if outcome.retry_at is not None:
            log.info(
                "schedule %s: retry in %.1f s", name, max(0.0, outcome.retry_at - self.clock())
            )
        if outcome.gave_up and res is not None:
            try:
                run_hook(self.root, spec, res, hid, res.log_path or self.dir / "hooks.log")
            except Exception:  # run_hook does not raise; belt and braces for the daemon
                log.exception("schedule %s: on_failure hook crashed", name)
        self.wake.set()

    def _backstop(self, name: str) -> None:
        ex = self.executions.get(name)
        if ex is None or ex.proc is None or ex.proc.pid in self.killing:
            return
        self.killing.add(ex.proc.pid)
        log.warning("schedule %s: execution outlived its timeout, killing it", name)
        threading.Thread(target=ex.kill, daemon=True).start()

    def _prune(self) -> None:
        now = time.time()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        gone = self.store.prune()
        if gone:
            log.info("pruned %d old history rows", gone)

    # --- heartbeat ------------------------------------------------------------------------
    def _beat(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_beat < self.heartbeat:
            return
        self._last_beat = now
        write_status(
            self.dir,
            {
                "pid": os.getpid(),
                "since": self.since,
                "last_beat": now,
                "root": str(self.root),
                "host": socket.gethostname(),
                "running": sorted(self.executions),
            },
        )


def _terminate(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM an orphaned runner, then SIGKILL it and its descendants if it lingers."""
    tree = descendants(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)  # not our child: nothing to wait() on
    for p in [pid, *tree]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
