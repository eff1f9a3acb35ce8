"""One attempt at a stage point: the kernel job that executes its notebook (logging into the
run's spool), the ``checks:`` on what it logged, and the stop (Ctrl-C, SIGTERM, ``--timeout``)
that can cut it short, with how its run then ends."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import envvars
from nbops import tags as tag_names
from nbops.comparisons import CHECK_OPS
from nbops.errors import StageFailed
from nbops.executors.base import StageJob
from nbops.pipeline import spec as specmod
from nbops.pipeline.planning import Point, StagePlan
from nbops.tracking.spool import latest_metrics

if TYPE_CHECKING:
    from nbops.tracking.run import Run


def job(
    plan: StagePlan,
    pt: Point,
    run: Run,
    root: Path,
    state_dir: Path,
    on_start: Callable[[], None] | None = None,
) -> StageJob:
    """The kernel job of one point: its notebook, executed where it is (as in Jupyter) into
    ``.nbops/runs/<local id>/``, logging into ``run``'s spool. ``on_start`` is called when the
    executor really starts it; when it is over, the run's clock stops (its MLflow end time is
    then, not after the runner has versioned its outs: the next stage may have started)."""
    from nbops.pipeline.config import stage_resources

    resources, memory = stage_resources(plan.stage)
    return StageJob(
        plan.name,
        pt.label,
        plan.notebook,
        state_dir / "runs" / run.local_id / plan.notebook.name,
        pt.params,
        plan.notebook.parent,  # the kernel runs where the notebook is, as in Jupyter
        env={
            envvars.ATTACH_SPOOL: str(run.spool.dir),
            envvars.NOTEBOOK: str(plan.notebook),
            envvars.PROJECT_ROOT: str(root),
        },
        on_start=on_start,
        on_end=run.stop_clock,
        root=root,
        deps=list(plan.stage.deps),
        outs=plan.outs_of(pt),
        resources=resources,
        memory=memory,
        retries=plan.stage.retries,
    )


def check(plan: StagePlan, pt: Point, run: Run) -> StageFailed | None:
    """``checks:`` on the metrics the notebook logged into the run (their last values)."""
    if not plan.stage.checks:
        return None
    logged = latest_metrics(run.spool.log_path)
    for metric, expr in plan.stage.checks.items():
        op, bound = specmod.parse_check(expr)
        if metric not in logged:
            return StageFailed(
                f"stage {pt.label}: check {metric} {expr} failed: the "
                f"notebook never logged {metric!r}",
                "log it with nbops.log_metric or %track metric",
                stage=plan.name,
            )
        if not CHECK_OPS[op](logged[metric], bound):
            return StageFailed(
                f"stage {pt.label}: check {metric} {expr} failed ({metric} = {logged[metric]:.6g})",
                stage=plan.name,
            )
    return None


class Stop:
    """Whether the execution is stopping and why: a signal (a person) or ``--timeout``."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.event = threading.Event()
        self.timed_out = False
        self._deadline: float | None = None

    def arm(self) -> None:
        """Start the clock of ``--timeout``."""
        self._deadline = time.perf_counter() + self.timeout if self.timeout else None

    def check_deadline(self) -> None:
        late = self._deadline is not None and time.perf_counter() > self._deadline
        if late and not self.event.is_set():
            self.timed_out = True
            self.event.set()

    def interrupt(self) -> None:
        self.event.set()  # the main loop stops the executor within half a second

    def is_set(self) -> bool:
        return self.event.is_set()

    def end_status(self, failed: bool) -> str:
        """How a run ends. One that was stopped: FAILED when it ran out of time, KILLED when a
        person or a signal stopped it."""
        if self.event.is_set():
            return "FAILED" if self.timed_out else "KILLED"
        return "FAILED" if failed else "FINISHED"

    def mark(self, run: Run) -> None:
        """A run cut short by ``--timeout`` says so (``nbops.end_reason``)."""
        if self.timed_out:
            run.set_tags({tag_names.END_REASON: f"timeout: {self.timeout:g} s"})


def install_signal_handlers(on_stop: Callable[[], None]) -> dict[int, Any]:
    """SIGINT and SIGTERM call ``on_stop`` (main thread only); the handlers they replace."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    old: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        on_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    return old


def restore_signal_handlers(old: dict[int, Any]) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)
