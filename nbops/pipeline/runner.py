"""``nbops run``: plan the selected stages, skip what is up to date, execute the rest through an
executor (in parallel where the DAG allows), version outs, record every execution as an MLflow
run (children of one pipeline run; sweep points children of their stage's run)."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops import envvars, project
from nbops import tags as tag_names
from nbops.comparisons import CHECK_OPS
from nbops.errors import ConfigError, ParameterError, StageFailed
from nbops.executors.base import Executor, Job, Result
from nbops.pipeline import notebook as nbmod
from nbops.pipeline import spec as specmod
from nbops.pipeline.graph import Graph, build
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.outcome import PipelineOutcome
from nbops.pipeline.progress import Progress
from nbops.pipeline.staleness import Fingerprint, fingerprint, point_key, reasons
from nbops.pipeline.state import State


@dataclass
class Point:
    """One execution of a stage: its parameters (one sweep point, or the only one)."""

    label: str
    params: dict[str, Any]
    sweep: dict[str, Any]
    key: str
    fp: Fingerprint | None = None
    why: list[str] = field(default_factory=list)


@dataclass
class StagePlan:
    name: str
    stage: Any  # spec.Stage
    notebook: Path
    code: str
    points: list[Point]
    problem: ConfigError | None = None  # the notebook cannot be read: the stage fails at run time


MAX_TIMEOUT = 30 * 86400.0  # seconds: as a schedule's timeout
MAX_JOBS = 1024


def parse_assignments(items: list[str], what: str) -> list[tuple[str, Any]]:
    """``k=v`` strings → (k, typed v), each value read by :func:`nbops.values.parse_value`
    (``1`` → int, ``0.1`` → float; aliases, deep nesting and huge numbers refused, naming
    ``what k``)."""
    from nbops.values import parse_value

    out = []
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ParameterError(
                f"{what} {_shown(item)} is not NAME=VALUE",
                f"write it as {what} C=0.1 (or {what} train.C=0.1)",
            )
        out.append((k.strip(), parse_value(v, f"{what} {_shown(k.strip())}")))
    return out


def _shown(text: str, limit: int = 80) -> str:
    """A user's text in an error message: as typed if it is a plain name (``train.C``), else
    quoted, and cut if it is long."""
    if len(text) <= limit and text.replace(".", "").replace("-", "").replace("_", "").isalnum():
        return text
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


class Runner:
    def __init__(
        self,
        root: Path,
        *,
        params: list[str] | None = None,
        sweep: list[str] | None = None,
        force: bool = False,
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
                (k, _split_list(v, f"--sweep {_shown(k)}"))
                for k, v in parse_assignments(sweep or [], "--sweep")
            )
        }
        self.force = force
        self.tags = {str(k): _param_str(v) for k, v in parse_assignments(tags or [], "--tag")}
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
        self._executor = executor
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

        found = recover_executions(self.state_dir, project.tracking_uri(self.root))
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

    # --- planning ------------------------------------------------------------------------------
    def plan(self, names: list[str] | None = None) -> list[StagePlan]:
        selected = self.graph.select(names) if names else list(self.graph.order)
        per_stage: dict[str, dict[str, Any]] = {s: {} for s in selected}
        for k, v in self.param_args:
            stage, dot, rest = k.partition(".")
            if dot and stage in self.pipeline.stages:
                if stage not in per_stage:
                    raise ParameterError(
                        f"-p {k}: stage {stage!r} is not among those to run",
                        f"run it too: nbops run {stage}",
                    )
                per_stage[stage][rest] = v
            else:
                takers = [s for s in selected if k in self._declared(s)]
                if not takers and any(s in self.broken for s in selected):
                    continue  # maybe a parameter of the stage that cannot be read: it fails
                if not takers:
                    raise ParameterError(
                        f"-p {k}: no stage to run declares a parameter {k!r}",
                        "declared: "
                        + "; ".join(
                            f"{s}: {', '.join(self._declared(s)) or '-'}" for s in selected
                        ),
                    )
                for s in takers:
                    per_stage[s][k] = v
        plans = []
        for name in selected:
            st = self.pipeline.stages[name]
            nb = (self.root / st.notebook).resolve()
            declared = self._declared(name)
            base = specmod.resolve_params(st, per_stage[name])
            sweep = dict(st.sweep)
            sweep.update({k: v for k, v in self.sweep_args.items() if k in declared})
            for k in [*base, *sweep]:
                if k not in declared and name not in self.broken:
                    where = self.pipeline.where("stages", name, "params", k)
                    at = f"{self.pipeline.path}:{where[0]}: " if where else ""
                    raise ParameterError(
                        f"{at}stage {name!r}: parameter {k!r} is not declared by {st.notebook}",
                        "its parameters cell declares: "
                        + (", ".join(declared) or "nothing")
                        + " (tag a cell `parameters` in Jupyter to declare more)",
                    )
            points = []
            # --sweep values replace the yaml's values of the same key (one point: `--sweep C=5`)
            extra = {k: v for k, v in self.sweep_args.items() if k in declared}
            grid = specmod.sweep_points(st, extra or None) if sweep else [{}]
            for combo in grid:
                full = {**{k: v for k, v in declared.items() if v is not None}, **base, **combo}
                label = name + (
                    "[" + ",".join(f"{k}={v}" for k, v in combo.items()) + "]" if combo else ""
                )
                points.append(Point(label, full, combo, point_key(combo)))
            problem = self.broken.get(name)
            code = ""
            if problem is None:
                try:
                    code = nbmod.code_digest(nb)
                except ConfigError as err:
                    problem = self.broken[name] = err
            plans.append(StagePlan(name, st, nb, code, points, problem))
        unused = [k for k in self.sweep_args if not any(k in self._declared(p.name) for p in plans)]
        if unused and not any(p.problem for p in plans):
            raise ParameterError(
                f"--sweep {unused[0]}: no stage to run declares it",
                "sweep a parameter of a stage's parameters cell",
            )
        return plans

    def _declared(self, stage: str) -> dict[str, Any]:
        """The parameters a stage's notebook declares ({} when it cannot be read: that is
        kept in ``broken`` and fails the stage when it would run, not the whole pipeline)."""
        if stage not in self._declared_cache:
            nb = self.root / self.pipeline.stages[stage].notebook
            try:
                self._declared_cache[stage] = nbmod.declared_parameters(nb)
            except ConfigError as err:
                self.broken[stage] = err
                self._declared_cache[stage] = {}
        return self._declared_cache[stage]

    def assess(self, plan: StagePlan) -> list[Point]:
        """Fingerprint every point of a stage now; return those that must run."""
        todo = []
        for pt in plan.points:
            pt.fp = fingerprint(plan.code, pt.params, list(plan.stage.deps), self.hashes)
            pt.why = reasons(
                pt.fp, self.state.get(plan.name, pt.key), list(plan.stage.outs), self.hashes
            )
            if self.force and not pt.why:
                pt.why = ["forced"]
            if pt.why:
                todo.append(pt)
        return todo

    def status(self, names: list[str] | None = None) -> list[tuple[str, list[str]]]:
        """(label, reasons) per point, as things are now; downstream of a stale stage is stale."""
        out = []
        stale: set[str] = set()
        for plan in self.plan(names):
            if plan.problem is None:
                self.assess(plan)
            ups = [u for u in self.graph.upstream(plan.name) if u in stale]
            for pt in plan.points:
                why = list(pt.why)
                if plan.problem is not None:
                    why = [f"cannot run: {plan.problem.message}"]
                if ups and not why:
                    why = [f"upstream stage {ups[0]} will run"]
                if why:
                    stale.add(plan.name)
                out.append((pt.label, why))
        self.hashes.save()
        return out

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
        execution = _Execution(self, plans)
        try:
            return execution.go()
        finally:
            self.outcome = execution.outcome()


def _split_list(v: Any, what: str) -> list[Any]:
    """A ``--sweep`` value: a list as typed (``[1, 2]``), or text split at commas, each item
    read as a value of its own (``0.1,1,10`` → three floats)."""
    from nbops.values import parse_value

    if isinstance(v, list):
        if not v:
            raise ParameterError(f"{what}: the list of values is empty", "give values: C=0.1,1,10")
        return v
    if v == "":
        raise ParameterError(f"{what}: no values given", "give values: --sweep C=0.1,1,10")
    if isinstance(v, str) and "," in v:
        return [parse_value(x, f"{what} (item {i + 1})") for i, x in enumerate(v.split(","))]
    return [v]


class _Execution:
    """One ``nbops run``: the loop that starts ready stages and collects results."""

    def __init__(self, runner: Runner, plans: list[StagePlan]) -> None:
        self.r = runner
        self.plans = {p.name: p for p in plans}
        self.order = [p.name for p in plans]
        self.status: dict[str, str] = dict.fromkeys(self.order, "queued")
        self.sink: Any = None
        self.record: Any = None  # recovery.ExecutionRecord, once a stage is about to run
        self.pipeline_run: Any = None
        self.executor: Executor | None = runner._executor
        self.failures: list[StageFailed] = []
        self.pending: dict[str, int] = {}
        self.stage_runs: dict[str, Any] = {}
        self.results: dict[str, list[tuple[Point, Any, Result, StageFailed | None]]] = {}
        self.stop = threading.Event()
        self.timed_out = False
        self.point_runs: dict[str, list[Any]] = {}
        self.unnamed: list[tuple[Any, Path, Any]] = []  # (run, kept notebook dir, state record)
        self.exit_code: int | None = None
        self.undelivered: list[str] = []  # what did not reach the store (exit 1)
        self.t_start = time.perf_counter()

    def _ensure_tracking(self) -> None:
        if self.sink is not None:
            return
        from nbops.pipeline.sink import Sink
        from nbops.tracking.run import Run

        uri = project.tracking_uri(self.r.root)
        if self.executor is None:
            from nbops.executors.local import LocalExecutor

            self.executor = LocalExecutor(self.r.root, warm=min(self.r.jobs + 1, 3))
        self.executor.warm_up()  # kernels start and papermill loads while MLflow waits its turn
        self.sink = Sink(uri, self.r.root, not_before=self.executor.loaded)
        exp = self.r.pipeline.experiment or self.r.root.name
        self.pipeline_run = Run(
            exp,
            "pipeline",
            {"nbops.pipeline": str(self.r.pipeline.path), **self.r.tags},
            root=self.r.root,
            uri=uri,
            capture=False,
            spawn_writer=False,
        )
        self.sink.add(self.pipeline_run)
        from nbops.tracking.recovery import ExecutionRecord

        self.record = ExecutionRecord(self.r.state_dir, self.order)
        self.record.add_run(self.pipeline_run.local_id, None, "pipeline")
        for name, st in self.status.items():
            if st in _ENDED:
                self.record.finished(name)
        self.record.save()

    def _new_run(self, plan: StagePlan, pt: Point | None, parent: Any) -> Any:
        from nbops.tracking.run import Run

        params = (
            pt.params
            if pt
            else {k: v for k, v in plan.points[0].params.items() if k not in plan.stage.sweep}
        )
        tags = {
            **self.r.tags,
            tag_names.STAGE: plan.name,
            tag_names.NOTEBOOK: str(plan.notebook),
            tag_names.MLFLOW_SOURCE_NAME: str(plan.notebook),
            tag_names.MLFLOW_SOURCE_TYPE: "NOTEBOOK",
        }
        if pt is not None and pt.sweep:
            tags[tag_names.SWEEP_POINT] = pt.label
        if pt is not None and pt.fp is not None:  # the exact content of what the stage read
            tags.update(
                {
                    f"{tag_names.DEP_PREFIX}{d}": h or "missing"
                    for d, h in pt.fp.deps.items()
                    if len(d) < 200
                }
            )
        run = Run(
            self.pipeline_run.experiment,
            pt.label if pt else plan.name,
            tags,
            params={k: _param_str(v) for k, v in params.items()},
            root=self.r.root,
            uri=self.pipeline_run.uri,
            capture=False,
            spawn_writer=False,
        )
        self.sink.add(run, parent)
        if self.record is not None:
            self.record.add_run(run.local_id, parent.local_id, pt.label if pt else plan.name)
            self.record.save()
        if pt is not None:
            self.point_runs.setdefault(plan.name, []).append(run)
        return run

    def go(self) -> int:
        pool = ThreadPoolExecutor(max_workers=self.r.jobs, thread_name_prefix="nbops-stage")
        futures: dict[Future[Result], tuple[StagePlan, Point, Any]] = {}
        self.t_start = time.perf_counter()
        old = _install_signal_handlers(self._interrupt)
        t0 = time.perf_counter()
        deadline = t0 + self.r.timeout if self.r.timeout else None
        try:
            while True:
                if not self.stop.is_set():
                    self._start_ready(pool, futures)
                if not futures:
                    break
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                self.r.progress.tick()
                late = deadline is not None and time.perf_counter() > deadline
                if late and not self.stop.is_set():
                    self.timed_out = True
                    self.stop.set()
                for f in done:
                    plan, pt, run = futures.pop(f)
                    self._finish(plan, pt, run, f.result())
                if self.stop.is_set() and self.executor is not None:
                    self.executor.stop()
        finally:
            pool.shutdown(wait=True)
            if self.executor is not None:
                self.executor.stop()
            _restore_signal_handlers(old)
            self._close(time.perf_counter() - t0)
        if self.timed_out:
            self.exit_code = 1
        elif self.stop.is_set():
            self.exit_code = 130
        else:
            self.exit_code = 1 if self.failures or self.undelivered else 0
        return self.exit_code

    def _end_status(self, failed: bool) -> str:
        """How a run ends. One that was stopped: FAILED when it ran out of time, KILLED when a
        person or a signal stopped it."""
        if self.stop.is_set():
            return "FAILED" if self.timed_out else "KILLED"
        return "FAILED" if failed else "FINISHED"

    def outcome(self) -> PipelineOutcome:
        stages = {}
        for name in self.order:
            runs = self.point_runs.get(name, []) if self.sink is not None else []
            wait = 0 if self.undelivered else 5  # a store that was given up is not waited for
            ids = [self.sink.run_id(r, timeout=wait) if wait else r.id_if_ready() for r in runs]
            stages[name] = {"status": self.status[name], "run_ids": [i for i in ids if i]}
            why = next((f.message for f in self.failures if f.stage == name), None)
            if why is not None and not self.stop.is_set():  # a stopped run says why once
                stages[name]["error"] = why
        code = self.exit_code if self.exit_code is not None else 1
        status = (
            "timeout"
            if self.timed_out
            else "killed"
            if self.stop.is_set()
            else "failed"
            if code
            else "ok"
        )
        error = None
        if self.timed_out:
            error = f"timed out after {self.r.timeout:g} s"
        elif self.stop.is_set():
            error = "interrupted (SIGINT or SIGTERM): kernels stopped, runs KILLED"
        elif self.failures:
            error = self.failures[0].message
        elif self.undelivered:
            error = f"{len(self.undelivered)} run(s) not all in the store: {self.undelivered[0]}"
        return PipelineOutcome(
            pipeline_run_id=self.pipeline_run.id_if_ready() if self.pipeline_run else None,
            exit_code=code,
            status=status,
            stages=stages,
            error=error,
            seconds=time.perf_counter() - self.t_start,
            undelivered=list(self.undelivered),
        )

    def _start_ready(
        self, pool: ThreadPoolExecutor, futures: dict[Future[Result], tuple[StagePlan, Point, Any]]
    ) -> None:
        for name in self.order:
            if self.status[name] != "queued":
                continue
            ups = [u for u in self.r.graph.upstream(name) if u in self.status]
            bad = [u for u in ups if self.status[u] in ("failed", "skipped")]
            if bad:
                self.status[name] = "skipped"
                self.r.progress.line(name, "skipped", f"upstream stage {bad[0]} failed")
                self._ended(name)
                continue
            if any(self.status[u] in ("queued", "running") for u in ups):
                continue
            plan = self.plans[name]
            if plan.problem is not None:
                self._fail_unreadable(plan, plan.problem)
                continue
            todo = self.r.assess(plan)
            if not todo:
                self.status[name] = "up to date"
                self.r.progress.line(name, "up to date")
                self._forget_failure(plan)
                self._ended(name)
                continue
            self._ensure_tracking()
            self.status[name] = "running"
            parent = self.pipeline_run
            if len(plan.points) > 1:
                parent = self._new_run(plan, None, self.pipeline_run)
                self.stage_runs[name] = parent
            self.pending[name] = len(todo)
            for pt in todo:
                run = self._new_run(plan, pt, parent)
                out = self.r.state_dir / "runs" / run.local_id / plan.notebook.name
                job = Job(
                    name,
                    pt.label,
                    plan.notebook,
                    out,
                    pt.params,
                    plan.notebook.parent,  # the kernel runs where the notebook is, as in Jupyter
                    env={
                        envvars.ATTACH_SPOOL: str(run.spool.dir),
                        envvars.NOTEBOOK: str(plan.notebook),
                        envvars.PROJECT_ROOT: str(self.r.root),
                    },
                )
                self.r.progress.line(pt.label, "running", "; ".join(pt.why))
                assert self.executor is not None
                futures[pool.submit(self.executor.execute, job)] = (plan, pt, run)

    def _forget_failure(self, plan: StagePlan) -> None:
        """A stage that is up to date has not failed, whatever an earlier execution recorded
        (a sweep killed after its last point was saved, say): --resume must not redo it."""
        labels = [plan.name, *(pt.label for pt in plan.points)]
        if any(label in self.r.state.failed for label in labels):
            for label in labels:
                self.r.state.failed.pop(label, None)
            self.r.state.save()

    def _fail_unreadable(self, plan: StagePlan, problem: ConfigError) -> None:
        """A stage whose notebook cannot be read fails alone, as papermill would fail it: its
        row and the state say why, its downstream is skipped, the other stages run."""
        err = StageFailed(
            f"stage {plan.name}: {problem.message}",
            problem.hint,
            stage=plan.name,
            notebook=str(plan.notebook),
        )
        self.failures.append(err)
        self.status[plan.name] = "failed"
        self.r.state.failed[plan.name] = err.message
        self.r.state.save()
        self.r.progress.line(plan.name, "failed", problem.message)
        self._ended(plan.name)

    def _finish(self, plan: StagePlan, pt: Point, run: Any, res: Result) -> None:
        """A point is done: check it, keep its executed notebook; the stage completes when its
        last point does."""
        err = res.error if not res.ok else self._check(plan, pt, run)
        if res.job.output.exists():
            run.log_artifact(res.job.output, "notebook")
        self.results.setdefault(plan.name, []).append((pt, run, res, err))
        if err is not None:
            self.failures.append(err)
            self.r.state.failed[pt.label] = err.message
            self.status[plan.name] = "failed"
            if self.timed_out:
                self.r.progress.line(pt.label, "failed", f"timed out after {self.r.timeout:g} s")
            elif self.stop.is_set():
                self.r.progress.line(pt.label, "killed", "interrupted (Ctrl-C / SIGTERM)")
            else:
                self.r.progress.line(pt.label, "failed", err.message)
        sweep = len(plan.points) > 1
        if sweep:  # each point of a sweep is its own run; the stage's outs go to the parent
            self._mark_timeout(run)
            run.end(self._end_status(err is not None))
            if err is None:
                self.r.progress.line(pt.label, "done", f"{res.seconds:.1f} s", run.id_if_ready())
        self.pending[plan.name] -= 1
        if self.pending[plan.name] == 0:
            self._complete(plan)
        self.r.state.save()
        self.r.hashes.save()
        if self.status[plan.name] in _ENDED:
            self._ended(plan.name)  # after the state knows: a kill now redoes nothing

    def _ended(self, name: str) -> None:
        if self.record is not None:
            self.record.finished(name)
            self.record.save()

    def _complete(self, plan: StagePlan) -> None:
        from nbops.pipeline.cache import OutCache

        results = self.results.pop(plan.name, [])
        sweep = len(plan.points) > 1
        owner = self.stage_runs.get(plan.name) if sweep else results[0][1]
        err = next((e for _, _, _, e in results if e is not None), None)
        if err is None:
            missing = [o for o in plan.stage.outs if not (self.r.root / o).exists()]
            if missing:
                err = StageFailed(
                    f"stage {plan.name} did not write its out {missing[0]}",
                    "write it in the notebook, or remove it from outs:",
                    stage=plan.name,
                )
                self.failures.append(err)
                self.r.progress.line(plan.name, "failed", err.message)
        if err is None:
            record = OutCache(self.r.root, self.r.state_dir, self.r.hashes).store(
                list(plan.stage.outs)
            )
            owner.log_text(_json(record), "outs.json")
            owner.set_tags(
                {
                    f"{tag_names.OUT_PREFIX}{k}": v["digest"] or ""
                    for k, v in record.items()
                    if len(k) < 200
                }
            )
            outs = {o: r["digest"] for o, r in record.items()}
            for pt, run, res, _ in results:
                if not sweep:
                    run.end("FINISHED")
                # never wait for the store here: the next stages start now; a run the store has
                # not created yet is named when the sink is done (_name_late_runs)
                rid = run.id_if_ready()
                kept = res.job.output.parent
                assert pt.fp is not None
                record = pt.fp.record(outs, rid, time.time())
                if rid is None:
                    self.unnamed.append((run, kept, record))
                elif kept.is_dir():  # .nbops/runs/<run_id>/ (docs/architecture.md)
                    os.replace(kept, kept.with_name(rid))
                self.r.state.put(plan.name, pt.key, record)
                self.r.state.failed.pop(pt.label, None)
                self.r.state.failed.pop(plan.name, None)  # a sweep stage killed as a whole
                if not sweep:
                    self.r.progress.line(pt.label, "done", f"{res.seconds:.1f} s", rid)
            self.status[plan.name] = "done"
        else:
            self.status[plan.name] = "failed"
            if not sweep:
                self._mark_timeout(results[0][1])
                results[0][1].end(self._end_status(True))
        if sweep and owner is not None:
            self._mark_timeout(owner)
            owner.end(self._end_status(err is not None))  # KILLED/FAILED as its points

    def _check(self, plan: StagePlan, pt: Point, run: Any) -> StageFailed | None:
        """``checks:`` on the metrics the notebook logged into the run."""
        if not plan.stage.checks:
            return None
        logged = _latest_metrics(run)
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
                    f"stage {pt.label}: check {metric} {expr} failed "
                    f"({metric} = {logged[metric]:.6g})",
                    stage=plan.name,
                )
        return None

    def _name_late_runs(self) -> None:
        """Runs whose MLflow id came after their stage finished: their executed notebooks move
        to ``.nbops/runs/<run_id>/`` and the state learns their ids, now that the sink is done."""
        for run, kept, record in self.unnamed:
            rid = run.id_if_ready()
            if rid is None:
                continue  # still spooled (store down): `nbops sync` delivers it later
            record.run_id = rid
            if kept.is_dir() and not kept.with_name(rid).exists():
                os.replace(kept, kept.with_name(rid))
        if self.unnamed:
            self.r.state.save()

    def _tell_delivering(self, left: list[str]) -> None:
        self.r.progress.note(f"nbops run: delivering the last data of {len(left)} run(s):")
        for line in left:
            self.r.progress.note(f"  {line}")

    def _mark_timeout(self, run: Any) -> None:
        if self.timed_out:
            run.set_tags({tag_names.END_REASON: f"timeout: {self.r.timeout:g} s"})

    def _interrupt(self) -> None:
        self.stop.set()  # the main loop stops the executor within half a second

    def _close(self, seconds: float) -> None:
        if self.sink is None:
            self.r.hashes.save()
            self.r.progress.summary(self.status, seconds, None)
            for f in self.failures:
                self.r.progress.note(str(f))
            return
        status = self._end_status(bool(self.failures))
        for run in [*self.stage_runs.values(), self.pipeline_run]:
            if run.status == "RUNNING":
                self._mark_timeout(run)
                run.end(status)
        delivered = self.sink.close(on_wait=self._tell_delivering)
        if self.record is not None:
            if self.stop.is_set():  # Ctrl-C / SIGTERM: what did not finish is for --resume
                for name in self.order:
                    if self.status[name] not in _ENDED:
                        self.r.state.failed.setdefault(name, "interrupted (Ctrl-C / SIGTERM)")
                self.r.state.save()
            self.record.remove()  # this execution ended as it should: nothing to recover
        self._name_late_runs()
        rid = self.pipeline_run.id_if_ready()
        self.r.progress.summary(self.status, seconds, rid)
        if not delivered:
            left = self.sink.undelivered()
            why = (
                f"the tracking store is unreachable ({self.sink.error})"
                if self.sink.error
                else ("delivery did not finish in time (NBOPS_FLUSH_TIMEOUT)")
            )
            self.undelivered = [f"not delivered: {line}" for line in left]
            self.r.progress.note(
                f"nbops run: {len(left)} run(s) are not all in the store: {why}. What is left "
                "stays spooled under .nbops/spool/ and `nbops sync` delivers it:"
            )
            for line in left:
                self.r.progress.note(f"  {line}")
        refused = self.sink.dropped()
        if refused:
            self.undelivered += [f"refused by the store: {line}" for line in refused]
            self.r.progress.note("nbops run: the tracking store refused what it was sent:")
            for line in refused:
                self.r.progress.note(f"  {line}")
        if self.timed_out:
            self.r.progress.note(
                f"nbops run: timed out after {self.r.timeout:g} s: kernels stopped, runs FAILED"
            )
        for f in self.failures:
            self.r.progress.note(str(f))


_ENDED = ("done", "up to date", "failed", "skipped")


def _latest_metrics(run: Any) -> dict[str, float]:
    """The last value of each metric in a run's spool (what the notebook logged)."""
    from nbops.tracking.spool import latest_metrics

    return latest_metrics(run.spool.log_path)


def _param_str(v: Any) -> str:
    return v if isinstance(v, str) else _json(v) if isinstance(v, (list, dict)) else str(v)


def _json(v: Any) -> str:
    import json as _j

    return _j.dumps(v, indent=1, sort_keys=True, default=str)


def _install_signal_handlers(on_stop: Callable[[], None]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}

    def handler(signum: int, frame: Any) -> None:
        on_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    return old


def _restore_signal_handlers(old: dict[int, Any]) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)
