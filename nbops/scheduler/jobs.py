"""Carrying out one execution and writing its history row: shared by the daemon and by
`nbops schedule run` without a daemon. The per-schedule lock makes overlap impossible even
between processes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nbops.scheduler.execution import Execution, ExecutionResult
from nbops.scheduler.lock import schedule_lock
from nbops.scheduler.model import Schedule
from nbops.scheduler.store import ScheduleStore

log = logging.getLogger("nbops.scheduler")


def perform(
    root: Path,
    store: ScheduleStore,
    spec: Schedule,
    history_id: int,
    on_process: Callable[[Execution], None] | None = None,
    stopping: threading.Event | None = None,
) -> ExecutionResult | None:
    """Run the execution whose history row is ``history_id`` (status running) to its end and
    fill the row in. None if another process runs this schedule (the row says skipped)."""
    lock = schedule_lock(store.dir, spec.name)
    if not lock.acquire():
        store.update_history(history_id, status="skipped", error="still running", ended=time.time())
        log.info("schedule %s: skipped, still running in another process", spec.name)
        return None
    try:
        ex = Execution(root, spec, history_id, store.dir / "logs")
        started = time.time()
        if stopping is not None and stopping.is_set():
            store.update_history(history_id, status="killed", error="the scheduler stopped")
            return ExecutionResult("killed", None, error="the scheduler stopped")
        pid = ex.start()
        store.update_history(history_id, started=started, pid=pid, log=str(ex.log_path))
        log.info("schedule %s: started execution %d (pid %d)", spec.name, history_id, pid)
        if on_process is not None:
            on_process(ex)
        ex.wait()
        res = ex.result()
        ended = time.time()
        store.update_history(
            history_id,
            status=res.status,
            ended=ended,
            duration=round(ended - started, 3),
            pipeline_run_id=res.pipeline_run_id,
            run_ids=res.run_ids,
            error=res.error,
            exit_code=res.exit_code,
        )
        level = logging.INFO if res.ok else logging.WARNING
        log.log(
            level,
            "schedule %s: execution %d %s in %.1f s%s",
            spec.name,
            history_id,
            res.status,
            ended - started,
            f": {res.error}" if res.error else "",
        )
        res.log_path = ex.log_path
        return res
    finally:
        lock.release()
