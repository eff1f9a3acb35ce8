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
from typing import TYPE_CHECKING, Any

from nbops import envvars, project
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
from nbops.pipeline.state import Record, State, record_failed

if TYPE_CHECKING:
    from nbops.pipeline.sharing import ServerRecords

__all__ = [
    "MAX_JOBS",
    "MAX_TIMEOUT",
    "Point",
    "Runner",
    "StagePlan",
    "parse_assignments",
]


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
        dask: str | None = None,
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
        self.executor = executor  # None: a LocalExecutor (or DaskExecutor) once a stage runs
        self.dask = dask  # --dask as given; run() chooses the cluster (see choose_cluster)
        # the dask cluster the stages go to and where its address was named; None: here
        self.cluster: tuple[str, str] | None = None
        self.cluster_jobs = jobs  # --jobs as given: the executor's bound on a cluster
        self.jobs = max(1, jobs or os.cpu_count() or 1)  # the jobs in flight (see run())
        self.progress = progress or Progress()
        self.hashes = HashCache(root, self.state_dir)
        self._declared_cache: dict[str, dict[str, Any]] = {}
        self.broken: dict[str, ConfigError] = {}  # stage -> why its notebook cannot be read
        self.recovered = self._recover_dead_executions()
        self.state = State(self.state_dir)
        # team mode (a tracking server): records found on the server, outs to fetch
        self.uri = project.tracking_uri(root)
        self.server: ServerRecords | None = None
        self.to_fetch: dict[str, list[tuple[Point, Record, list[str]]]] = {}
        self.adopted = False  # a server record became a local one: the state is saved
        self._said_server = False
        from nbops.pipeline.sharing import ServerRecords, is_server

        if is_server(self.uri):
            self.server = ServerRecords(self.uri, self.pipeline.experiment or root.name)

    def choose_cluster(self) -> tuple[str, str] | None:
        """The dask scheduler ``run()`` sends the stages to and where it was named (``--dask``,
        ``NBOPS_DASK`` or ``nbops.yaml:LINE``), in that order of precedence; None (nothing
        named, or an executor was given): the local executor, and nothing of dask is imported.
        A malformed address is a ParameterError naming its source. Asked by ``run()`` only:
        ``nbops status`` and the planner never look at the cluster."""
        if self.executor is not None:
            return None
        cli = self.dask
        env = os.environ.get(envvars.DASK)
        config = self.pipeline.dask.scheduler if self.pipeline.dask is not None else None
        if not any(v is not None and v.strip() for v in (cli, env, config)):
            return None
        from nbops.executors import dask_exec  # none of dask itself until it connects

        chosen = dask_exec.choose(cli, env, config, self._dask_line())
        if chosen is not None:
            dask_exec.parse_address(*chosen)  # before anything runs: a ParameterError
        return chosen

    def _dask_line(self) -> str:
        """Where nbops.yaml names its scheduler: ``nbops.yaml:12``."""
        at = self.pipeline.where("dask", "scheduler", value=True)
        name = self.pipeline.path.name
        return f"{name}:{at[0]}" if at else name

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

    # --- team mode: the server's records and outs --------------------------------------------
    def assess(self, plan: StagePlan) -> list[Point]:
        """As :meth:`Planner.assess`; on a tracking server, a point that is stale here (or has
        no record here) takes the server's record of the same inputs (see
        :mod:`nbops.pipeline.sharing`), and a point whose only lack is outs that exist there
        is up to date: its outs are to be fetched (:meth:`fetch`; ``nbops status`` says so)."""
        from nbops.pipeline.staleness import fetchable, reasons

        todo = super().assess(plan)
        self.to_fetch.pop(plan.name, None)
        if self.server is None or plan.problem is not None or plan.name in self.forced:
            return todo
        must: list[Point] = []
        for pt in todo:
            assert pt.fp is not None
            outs = plan.outs_of(pt)
            rec = self.state.get(plan.name, pt.key)
            missing = fetchable(pt.fp, rec, outs, self.hashes)
            if not missing:
                found = self.server.find(plan.name, pt.fp, pt.outs, plan.shared)
                if found is not None and not reasons(pt.fp, found, outs, self.hashes):
                    self.state.put(plan.name, pt.key, found)  # the outs here are its outs
                    self.adopted = True
                    pt.why = []
                    continue
                rec = found
                missing = fetchable(pt.fp, found, outs, self.hashes)
            if missing and rec is not None and rec.run_id:
                self.to_fetch.setdefault(plan.name, []).append((pt, rec, missing))
                self.hashes.expect({o: str(rec.outs[o]) for o in missing})
                pt.why = []
                continue
            must.append(pt)
        return must

    def fetch(self, plan: StagePlan) -> tuple[list[Point], str]:
        """Restore the outs :meth:`assess` found on the server for ``plan``'s points; the
        points that must run after all (fetching failed: why is in their reasons) and what was
        fetched, said in one line ('' when nothing was to be fetched)."""
        from nbops.errors import NbopsError
        from nbops.pipeline.sharing import Transfer, restore_outs, size_text

        items = self.to_fetch.pop(plan.name, [])
        failed: list[Point] = []
        moved, restored, runs = Transfer(), 0, []
        for pt, rec, missing in items:
            self.hashes.forget(missing)
            try:
                done, got = restore_outs(self.uri, self.root, self.hashes, rec, missing)
            except NbopsError as err:
                pt.why = [*(f"out missing: {o}" for o in missing), f"not fetched: {err.message}"]
                failed.append(pt)
                continue
            self.state.put(plan.name, pt.key, rec)
            restored += len(done)
            moved.files += got.files
            moved.bytes += got.bytes
            runs.append(str(rec.run_id))
        if not runs:
            return failed, ""
        self.state.save()
        src = f"run {runs[0]}" if len(set(runs)) == 1 else f"{len(set(runs))} runs"
        outs = f"{restored} out{'s' if restored != 1 else ''}"
        files = f"{moved.files} file{'s' if moved.files != 1 else ''} downloaded"
        return failed, f"{outs} of {src} from the server, {files} ({size_text(moved.bytes)})"

    def server_note(self) -> str | None:
        """Once: why the tracking server could not be asked for the records this clone lacks."""
        if self.server is None or self.server.error is None or self._said_server:
            return None
        from nbops.mlflow import credentials

        self._said_server = True
        return (
            f"nbops: the tracking server {credentials.server(self.uri)} could not be asked "
            f"which stages are up to date there ({self.server.error}): the stages without a "
            "record here look stale"
        )

    # --- running -------------------------------------------------------------------------------
    def run(self, names: list[str] | None = None, dry_run: bool = False) -> int:
        self.cluster = self.choose_cluster()  # a malformed address stops it before anything
        if self.cluster is not None and self.cluster_jobs is None:
            # not capped at this machine's CPUs: every ready job goes, dask queues them (a row
            # says queued until a worker starts it)
            self.jobs = MAX_JOBS
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
            if self.adopted:  # the next status answers from the state, not the server
                self.state.save()
