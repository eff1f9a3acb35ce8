"""The MLflow runs of one ``nbops run``: the pipeline run, a run per stage point (children of a
sweep stage's run when the stage sweeps), the sink that delivers them from this process, and the
execution record that lets a later ``nbops run`` recover them if this one is killed.

Each run carries its real times (docs: README "### Pipelines"): a point's run begins when the
executor really starts it (a kernel is ready: :meth:`RunBook.point_started`), not when it was
queued, and is created in the store only then (MLflow cannot move a start time); a sweep's run
begins with its first point; the pipeline run begins with the execution. Each run ends when it
does. The live table (``progress``) learns each run's id as the store creates it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import tags as tag_names
from nbops.pipeline.planning import Point, StagePlan, param_str
from nbops.pipeline.spec import Pipeline
from nbops.pipeline.staleness import inputs_digest
from nbops.pipeline.state import Record, State

if TYPE_CHECKING:  # imported when the first run starts: a no-op `nbops run` needs neither
    from nbops.pipeline.progress import Progress
    from nbops.pipeline.sink import Sink
    from nbops.tracking.run import Run


class RunBook:
    """Created lazily: nothing is started for an execution whose stages are all up to date."""

    def __init__(
        self,
        root: Path,
        state_dir: Path,
        pipeline: Pipeline,
        tags: dict[str, str],
        progress: Progress | None = None,
    ):
        self.began_ms = time.time_ns() // 1_000_000  # the execution's start: the pipeline run's
        self.progress = progress  # told each run's id as the store creates it
        self.root = root
        self.state_dir = state_dir
        self.pipeline = pipeline
        self.tags = tags
        self.sink: Sink | None = None
        self.record: Any = None  # recovery.ExecutionRecord, once a stage is about to run
        self.pipeline_run: Run | None = None
        self.stage_runs: dict[str, Run] = {}  # the parent run of each sweep stage
        self.point_runs: dict[str, list[Run]] = {}  # each stage's point runs, in start order
        self.unnamed: list[tuple[Run, Path, Record]] = []  # (run, kept notebook dir, record)
        self.labels: dict[str, str] = {}  # local id -> the row of the live table it belongs to
        self._parents: dict[str, Run] = {}  # local id of a point run -> its sweep's run
        self._begun: set[str] = set()  # local ids of the runs that have begun
        self._lock = threading.Lock()  # points start in the executor's threads

    @property
    def started(self) -> bool:
        return self.sink is not None

    def start(self, uri: str, order: list[str], ended: list[str], loaded: Any) -> None:
        """The sink (importing MLflow once ``loaded`` is set), the pipeline run and the
        execution record, which lists the stages already ``ended`` (up to date, skipped)."""
        from nbops.pipeline.sink import Sink
        from nbops.tracking.recovery import ExecutionRecord
        from nbops.tracking.run import Run

        self.sink = Sink(uri, self.root, not_before=loaded, on_created=self._created)
        exp = self.pipeline.experiment or self.root.name
        self.pipeline_run = Run(
            exp,
            "pipeline",
            {tag_names.PIPELINE: str(self.pipeline.path), **self.tags},
            root=self.root,
            uri=uri,
            capture=False,
            spawn_writer=False,
        )
        self.pipeline_run.begin(self.began_ms)  # it spans the execution, from its start
        self._begun.add(self.pipeline_run.local_id)
        self.sink.add(self.pipeline_run)
        self.record = ExecutionRecord(self.state_dir, order)
        self.record.add_run(self.pipeline_run.local_id, None, "pipeline")
        for name in ended:
            self.record.finished(name)
        self.record.save()

    def stage_run(self, plan: StagePlan) -> Run:
        """The run of a sweep stage, parent of its points' runs."""
        run = self.new_run(plan, None, self._pipeline_run())
        self.stage_runs[plan.name] = run
        if self.progress is not None:
            self.progress.stage(plan.name)
        return run

    def new_run(self, plan: StagePlan, pt: Point | None, parent: Run | None) -> Run:
        """The run of one point (or with ``pt`` None a sweep stage's run) under ``parent``."""
        assert self.sink is not None
        pipeline_run = self._pipeline_run()
        params = (
            pt.params
            if pt
            else {k: v for k, v in plan.points[0].params.items() if k not in plan.stage.sweep}
        )
        tags = {
            **self.tags,
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
            # what a fresh clone looks up on a tracking server (pipeline/sharing.py)
            tags[tag_names.INPUTS] = inputs_digest(pt.fp)
            tags[tag_names.ENV] = pt.fp.env
        from nbops.tracking.run import Run

        run = Run(
            pipeline_run.experiment,
            pt.label if pt else plan.name,
            tags,
            params={k: param_str(v) for k, v in params.items()},
            root=self.root,
            uri=pipeline_run.uri,
            capture=False,
            spawn_writer=False,
        )
        # created in the store when it begins (point_started), with its real start time
        self.sink.add(run, parent, held=True)
        label = pt.label if pt else plan.name
        self.labels[run.local_id] = label
        if pt is not None and parent is not None and parent is self.stage_runs.get(plan.name):
            self._parents[run.local_id] = parent
            if self.progress is not None:
                self.progress.member(plan.name, label)
        if self.record is not None and parent is not None:
            self.record.add_run(run.local_id, parent.local_id, pt.label if pt else plan.name)
            self.record.save()
        if pt is not None:
            self.point_runs.setdefault(plan.name, []).append(run)
        return run

    def point_started(self, run: Run) -> None:
        """The executor has really started ``run``'s point (called in its thread): the run
        begins now and is created in the store; a sweep's run begins with its first point."""
        assert self.sink is not None
        with self._lock:
            parent = self._parents.get(run.local_id)
            for r in (parent, run):
                if r is None or r.local_id in self._begun or r.status != "RUNNING":
                    continue
                self._begun.add(r.local_id)
                r.begin()
                self.sink.release(r)
            if self.progress is not None:  # its row shows the run's own times
                self.progress.follow(self.labels.get(run.local_id, run.name or ""), run)

    def _created(self, run: Run, run_id: str) -> None:
        """The sink created ``run`` in the store (its thread): its row shows the id."""
        label = self.labels.get(run.local_id)
        if label is not None and self.progress is not None:
            self.progress.identify(label, run_id)

    def _pipeline_run(self) -> Run:
        assert self.pipeline_run is not None
        return self.pipeline_run

    def ended(self, name: str) -> None:
        """A stage is done with (after the state knows: a kill now redoes nothing)."""
        if self.record is not None:
            self.record.finished(name)
            self.record.save()

    def keep_notebook(self, run: Run, rid: str | None, kept: Path, record: Record) -> None:
        """The executed notebook of a finished point goes to ``.nbops/runs/<run_id>/`` (``rid``:
        the run's id as the state ``record`` has it). Never waits for the store: a run it has
        not created yet is named by :meth:`name_late_runs` once the sink is done."""
        if rid is None:
            self.unnamed.append((run, kept, record))
        elif kept.is_dir():  # .nbops/runs/<run_id>/ (docs/architecture.md)
            os.replace(kept, kept.with_name(rid))

    def name_late_runs(self, state: State) -> None:
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
            state.save()

    def run_ids(self, name: str, wait: float) -> list[str]:
        """The MLflow ids of a stage's point runs, waiting up to ``wait`` s for each."""
        runs = self.point_runs.get(name, []) if self.sink is not None else []
        sink = self.sink
        ids = [sink.run_id(r, timeout=wait) if wait and sink else r.id_if_ready() for r in runs]
        return [i for i in ids if i]
