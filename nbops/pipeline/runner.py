"""``nbops run``: plan the selected stages, skip what is up to date, execute the rest through an
executor (in parallel where the DAG allows), version outs, record every execution as an MLflow
run (children of one pipeline run; sweep points children of their stage's run).

The parts, one job each: :mod:`~nbops.pipeline.planning` (what to run and why),
:mod:`~nbops.pipeline.attempt` (one point's kernel job, its checks, the stop),
:mod:`~nbops.pipeline.runs` (the MLflow runs and their sink), :mod:`~nbops.pipeline.execution`
(the loop), :mod:`~nbops.pipeline.summary` (what it did, said at the end).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import ConfigError, ParameterError
from nbops.executors.base import Executor
from nbops.pipeline import spec as specmod
from nbops.pipeline.graph import Graph, build
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.outcome import PipelineOutcome
from nbops.pipeline.planning import (
    MAX_JOBS,
    MAX_TIMEOUT,
    Planner,
    Point,
    StagePlan,
    param_str,
    parse_assignments,
    shown,
    split_list,
)
from nbops.pipeline.progress import Progress
from nbops.pipeline.state import State, record_failed

__all__ = ["MAX_JOBS", "MAX_TIMEOUT", "Point", "Runner", "StagePlan", "parse_assignments"]


class Runner(Planner):
    """``nbops run`` of one project: the command line's values checked, killed executions of
    this project recovered, then :meth:`plan`, :meth:`status` (see :class:`Planner`) or
    :meth:`run`."""

    def __init__(
        self,
        root: Path,
        *,
        params: list[str] | None = None,
        sweep: list[str] | None = None,
        force: bool = False,
        force_upstream: bool = False,
        jobs: int | None = None,
        executor: Executor | None = None,
        progress: Progress | None = None,
        tags: list[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.root = root
        self.state_dir = project.state_dir(root)
        self.pipeline = specmod.load(root / project.CONFIG_FILE)
        self.graph: Graph = build(self.pipeline)
        self.param_args = parse_assignments(params or [], "-p")
        self.sweep_args = {
            k: v if isinstance(v, list) else [v]
            for k, v in (
                (k, split_list(v, f"--sweep {shown(k)}"))
                for k, v in parse_assignments(sweep or [], "--sweep")
            )
        }
        self.force = force  # the named stages (all when none is named) run even if up to date
        self.force_upstream = force_upstream  # and every stage they depend on
        self.forced: set[str] = set()
        self.tags = {str(k): param_str(v) for k, v in parse_assignments(tags or [], "--tag")}
        if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise ParameterError(
                f"--timeout must be a positive number of seconds (at most {MAX_TIMEOUT:g}), "
                f"got {timeout:g}",
                "e.g. --timeout 3600",
            )
        if jobs is not None and not 1 <= jobs <= MAX_JOBS:
            raise ParameterError(
                f"--jobs must be a whole number from 1 to {MAX_JOBS}, got {jobs}",
                "e.g. --jobs 2 (the default is the number of CPUs)",
            )
        self.timeout = timeout
        self.outcome: PipelineOutcome | None = None  # what the last run() did (for --summary)
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.executor = executor  # None: a LocalExecutor once a stage runs
        self.progress = progress or Progress()
        self.hashes = HashCache(root, self.state_dir)
        self._declared_cache: dict[str, dict[str, Any]] = {}
        self.broken: dict[str, ConfigError] = {}  # stage -> why its notebook cannot be read
        self.recovered = self._recover_dead_executions()
        self.state = State(self.state_dir)

    def _recover_dead_executions(self) -> list[Any]:
        """An ``nbops run`` of this project that was killed (SIGKILL, a crash, a power cut)
        left its runs RUNNING and its stages half done: end those runs KILLED, deliver what they
        logged, and record the stages for ``--resume`` (nbops.tracking.recovery)."""
        from nbops.tracking.recovery import recover_executions

        found = recover_executions(
            self.state_dir, project.tracking_uri(self.root), record_unfinished=record_failed
        )
        for dead in found:
            killed = sum(1 for o in dead.runs if o.status in ("KILLED", "unreachable"))
            todo = ", ".join(dead.unfinished) or "none"
            self.progress.note(
                f"nbops: {dead.who} was killed: {killed} of its runs ended KILLED; stages "
                f"it did not finish: {todo} (`nbops run --resume` redoes them)"
            )
            if dead.error:
                self.progress.note(
                    f"  the tracking store is unreachable ({dead.error}); those runs stay "
                    "spooled and `nbops sync` delivers them"
                )
        return found

    # --- running -------------------------------------------------------------------------------
    def run(self, names: list[str] | None = None, dry_run: bool = False) -> int:
        plans = self.plan(names)
        if dry_run:
            for label, why in self.status(names):
                state = "would run" if why else "up to date"
                if label.split("[", 1)[0] in self.broken:
                    state = "would fail"
                self.progress.line(label, state, "; ".join(why))
            return 0
        from nbops.pipeline.execution import Execution  # its imports are paid only for a run

        execution = Execution(self, plans)
        try:
            return execution.go()
        finally:
            self.outcome = execution.outcome()
