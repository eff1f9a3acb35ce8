"""One ``nbops run`` executing its plan: the loop that starts the stages whose upstream is done
(in parallel, up to ``--jobs``), collects each point's result, completes a stage when its last
point is in (its outs versioned, the state told), and closes the execution at the end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from nbops import project
from nbops import tags as tag_names
from nbops.errors import ClusterUnavailable, ConfigError, Exit, StageFailed
from nbops.executors.base import Executor, StageJob, StageResult
from nbops.pipeline import attempt, summary
from nbops.pipeline import spec as specmod
from nbops.pipeline.cache import record_digests
from nbops.pipeline.outcome import PipelineOutcome
from nbops.pipeline.planning import Point, StagePlan, to_json
from nbops.pipeline.runs import RunBook

if TYPE_CHECKING:
    from nbops.pipeline.runner import Runner
    from nbops.tracking.run import Run

ENDED = ("done", "up to date", "failed", "skipped")
"""A stage in one of these states is done with for this execution."""


class Execution:
    """The stages of one plan, run once: ``go()`` returns the exit code."""

    def __init__(self, runner: Runner, plans: list[StagePlan]) -> None:
        self.r = runner
        self.plans = {p.name: p for p in plans}
        self.order = [p.name for p in plans]
        self.status: dict[str, str] = dict.fromkeys(self.order, "queued")
        self.runs = RunBook(
            runner.root, runner.state_dir, runner.pipeline, runner.tags, runner.progress
        )
        self.executor: Executor | None = runner.executor
        self.failures: list[StageFailed] = []
        self.pending: dict[str, int] = {}  # points of a running stage not finished yet
        self.results: dict[str, list[tuple[Point, Run, StageResult, StageFailed | None]]] = {}
        self.stop = attempt.Stop(runner.timeout)
        self.exit_code: int | None = None
        self.undelivered: list[str] = []  # what did not reach the store (exit 1)
        self.stored: dict[str, str] = {}  # digest -> out of what this execution cached (shared)
        self.workers: dict[str, str] = {}  # local run id -> the worker its nbops.worker names
        self.unreachable = False  # the cluster could not be reached: nothing started
        self.signals_before: dict[int, Any] = {}  # the handlers go() replaced
        self.t_start = time.perf_counter()

    # --- the loop -----------------------------------------------------------------------------
    def go(self) -> int:
        pool = ThreadPoolExecutor(max_workers=self.r.jobs, thread_name_prefix="nbops-stage")
        futures: dict[Future[StageResult], tuple[StagePlan, Point, Run]] = {}
        self.t_start = time.perf_counter()
        old = attempt.install_signal_handlers(self.stop.interrupt)
        self.signals_before = old
        t0 = time.perf_counter()
        self.stop.arm()
        try:
            while True:
                if not self.stop.is_set():
                    self._start_ready(pool, futures)
                if not futures:
                    break
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                self.r.progress.tick()
                self.stop.check_deadline()
                for f in done:
                    plan, pt, run = futures.pop(f)
                    self._finish(plan, pt, run, f.result())
                if self.stop.is_set() and self.executor is not None:
                    self.executor.stop()
        except (ClusterUnavailable, KeyboardInterrupt):
            # the cluster unreachable, or Ctrl-C while connecting: no run was made, no job
            # sent, and the error (or "interrupted", exit 130) says it all
            self.unreachable = not self.runs.started
            raise
        finally:
            pool.shutdown(wait=True)
            if self.executor is not None:
                self.executor.stop()
            attempt.restore_signal_handlers(old)
            if not self.unreachable:
                self._close(time.perf_counter() - t0)
        if self.stop.timed_out:
            self.exit_code = int(Exit.FAILED)
        elif self.stop.is_set():
            self.exit_code = int(Exit.INTERRUPTED)
        else:
            self.exit_code = int(Exit.FAILED if self.failures or self.undelivered else Exit.OK)
        return self.exit_code

    def _ensure_tracking(self) -> None:
        if self.runs.started:
            return
        if self.executor is None and self.r.cluster is not None:
            from nbops.executors.dask_exec import DaskExecutor

            address, where = self.r.cluster  # before any run exists: unreachable, none made
            # it may wait (a scheduler without workers): Ctrl-C and SIGTERM stop it at once,
            # as they would stop nbops before anything ran
            attempt.restore_signal_handlers(self.signals_before)
            try:
                self.executor = DaskExecutor.connect(
                    address, self.r.root, jobs=self.r.cluster_jobs, where=where
                )
            finally:
                attempt.install_signal_handlers(self.stop.interrupt)
        if self.executor is None:
            from nbops.executors.local import LocalExecutor

            self.executor = LocalExecutor(self.r.root, warm=min(self.r.jobs + 1, 3))
        if self.r.server is not None:  # team mode: later stages' lookups import no MLflow
            self.r.server.load()
        self.executor.warm_up()  # kernels start and papermill loads while MLflow waits its turn
        ended = [name for name, st in self.status.items() if st in ENDED]
        uri = project.tracking_uri(self.r.root)
        self.runs.start(uri, self.order, ended, self.executor.loaded)

    def _start_ready(
        self,
        pool: ThreadPoolExecutor,
        futures: dict[Future[StageResult], tuple[StagePlan, Point, Run]],
    ) -> None:
        for name in self.order:
            if self.status[name] != "queued":
                continue
            ups = [u for u in self.r.graph.upstream(name) if u in self.status]
            bad = [u for u in ups if self.status[u] in ("failed", "skipped")]
            if bad:
                self.status[name] = "skipped"
                self.r.progress.line(name, "skipped", f"upstream stage {bad[0]} failed")
                self.runs.ended(name)
                continue
            if any(self.status[u] in ("queued", "running") for u in ups):
                continue
            plan = self.plans[name]
            if plan.problem is not None:
                self._fail_unreadable(plan, plan.problem)
                continue
            todo = self.r.assess(plan)
            refetch, fetched = self.r.fetch(plan)  # team mode: outs that are on the server
            note = self.r.server_note()
            if note:
                self.r.progress.note(note)
            todo += refetch
            if not todo:
                self.status[name] = "up to date"
                self.r.progress.line(name, "fetched" if fetched else "up to date", fetched)
                self._forget_failure(plan)
                self.runs.ended(name)
                continue
            if fetched:
                self.r.progress.note(f"nbops run: {name}: fetched {fetched}")
            self._ensure_tracking()
            self.status[name] = "running"
            parent = self.runs.stage_run(plan) if plan.is_sweep else self.runs.pipeline_run
            self.pending[name] = len(todo)
            for pt in todo:
                run = self.runs.new_run(plan, pt, parent)
                why = "; ".join(pt.why)
                job = attempt.job(plan, pt, run, self.r.root, self.r.state_dir)
                job.on_start = self._starter(pt, run, why, job)
                job.on_note = self._noter(pt, run, job)
                self.r.progress.line(pt.label, "queued", why)
                assert self.executor is not None
                futures[pool.submit(self.executor.execute, job)] = (plan, pt, run)

    def _starter(self, pt: Point, run: Run, why: str, job: StageJob) -> Callable[[], None]:
        """What happens when the executor really starts a point: its row says running (and on
        which worker, when it runs elsewhere), its run's clock starts and, on a cluster, the run
        gets the tag ``nbops.worker``."""

        def started() -> None:
            self.runs.point_started(run)
            if job.worker:
                self._tag_worker(run, job.worker)
                self.r.progress.place(pt.label, self._where(job.worker))
            self.r.progress.line(pt.label, "running", why)

        return started

    def _noter(self, pt: Point, run: Run, job: StageJob) -> Callable[[str], None]:
        """The executor's word on a point (a retry on another worker): said on its row; a
        retry that moved it to another worker moves its row's worker and its tag there now."""

        def note(text: str) -> None:
            if job.worker and self.workers.get(run.local_id) not in (None, job.worker):
                self._tag_worker(run, job.worker)
                self.r.progress.place(pt.label, self._where(job.worker))
            self.r.progress.remark(pt.label, text)

        return note

    def _tag_worker(self, run: Run, worker: str) -> None:
        """``nbops.worker`` on a point's run: where it runs, set again if a retry moved it."""
        if self.workers.get(run.local_id) != worker and run.status == "RUNNING":
            self.workers[run.local_id] = worker
            run.set_tags({tag_names.WORKER: worker})

    def _where(self, worker: str) -> str:
        """A worker as a row names it: ``w1 (tcp://10.0.0.5:4711)``, or its address."""
        name_of = getattr(self.executor, "worker_name", None)
        name = name_of(worker) if callable(name_of) else None
        return f"{name} ({worker})" if name and name != worker else worker

    # --- a stage that does not run ------------------------------------------------------------
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
        self.runs.ended(plan.name)

    # --- results ------------------------------------------------------------------------------
    def _finish(self, plan: StagePlan, pt: Point, run: Run, res: StageResult) -> None:
        """A point is done: check it, keep its executed notebook; the stage completes when its
        last point does."""
        if res.worker:  # a retry may have moved it to another worker than it started on
            self._tag_worker(run, res.worker)
            self.r.progress.place(pt.label, self._where(res.worker))
        err = res.error if not res.ok else attempt.check(plan, pt, run)
        if res.job.output.exists():
            run.log_artifact(res.job.output, "notebook")
        if err is None and plan.is_sweep:  # the point's run is ended below: its outs go now
            err = self._record_point_outs(plan, pt, run)
        self.results.setdefault(plan.name, []).append((pt, run, res, err))
        if err is not None:
            self.failures.append(err)
            self.r.state.failed[pt.label] = err.message
            self.status[plan.name] = "failed"
            if self.stop.timed_out:
                self.r.progress.line(pt.label, "failed", f"timed out after {self.r.timeout:g} s")
            elif self.stop.is_set():
                self.r.progress.line(pt.label, "killed", "interrupted (Ctrl-C / SIGTERM)")
            else:
                self.r.progress.line(pt.label, "failed", err.message)
        if plan.is_sweep:  # each point of a sweep is its own run; the stage's outs go to the parent
            self.stop.mark(run)
            run.end(self.stop.end_status(err is not None))
            if err is None:
                self.r.progress.line(pt.label, "done", "", run.id_if_ready())
        self.pending[plan.name] -= 1
        if self.pending[plan.name] == 0:
            self._complete(plan)
        self.r.state.save()
        self.r.hashes.save()
        if self.status[plan.name] in ENDED:
            self.runs.ended(plan.name)  # after the state knows: a kill now redoes nothing

    def _missing_out(self, plan: StagePlan, outs: list[str], who: str) -> StageFailed | None:
        """The failure of ``who`` (a stage or a sweep point) that did not write one of ``outs``."""
        missing = [o for o in outs if not (self.r.root / o).exists()]
        if not missing:
            return None
        return StageFailed(
            f"{who} did not write its out {missing[0]}",
            "write it in the notebook, or remove it from outs: in nbops.yaml",
            stage=plan.name,
        )

    def _record(self, run: Run, record: dict[str, Any]) -> None:
        """``outs.json`` and the ``nbops.out.<path>`` tags of a run (and its contents are among
        those this execution shares)."""
        self.stored.update(record_digests(record))
        run.log_text(to_json(record), "outs.json")
        run.set_tags(
            {
                f"{tag_names.OUT_PREFIX}{k}": v["digest"] or ""
                for k, v in record.items()
                if len(k) < 200
            }
        )

    def _record_point_outs(self, plan: StagePlan, pt: Point, run: Run) -> StageFailed | None:
        """A sweep point that succeeded: its own outs (the ``${...}`` outs expanded) into the
        cache, and on its run as ``outs.json`` and ``nbops.out.*``; its failure if one is
        missing."""
        from nbops.pipeline.cache import OutCache

        err = self._missing_out(plan, pt.outs, f"sweep point {pt.label}")
        if err is None:
            cache = OutCache(self.r.root, self.r.state_dir, self.r.hashes)
            self._record(run, cache.store(pt.outs))
        return err

    def _complete(self, plan: StagePlan) -> None:
        """The stage's last point is in: version its outs into the cache and on its run (a
        sweep's parent run records every point's outs and the shared ones), record each point
        in the state; or end its runs FAILED/KILLED."""
        from nbops.pipeline.cache import OutCache

        results = self.results.pop(plan.name, [])
        sweep = plan.is_sweep
        owner = self.runs.stage_runs.get(plan.name) if sweep else results[0][1]
        err = next((e for _, _, _, e in results if e is not None), None)
        if err is None:
            outs = plan.shared if sweep else plan.outs_of(results[0][0])
            err = self._missing_out(plan, outs, f"stage {plan.name}")
            shared_file = [o for o in plan.shared if sweep and (self.r.root / o).is_file()]
            if err is None and shared_file:
                cfg = specmod.shared_file_error(
                    self.r.pipeline, plan.name, shared_file[0], list(plan.points[0].sweep)
                )
                err = StageFailed(cfg.message, cfg.hint, stage=plan.name)
            if err is not None:
                self.failures.append(err)
                self.r.progress.line(plan.name, "failed", err.message)
        if err is None:
            assert owner is not None
            cache = OutCache(self.r.root, self.r.state_dir, self.r.hashes)
            outs_record = cache.store(plan.all_outs() if sweep else plan.outs_of(results[0][0]))
            self._record(owner, outs_record)
            if sweep:  # what every point shares, so a point's checkout and diff can say so
                owner.set_tags({tag_names.SHARED_OUTS: json.dumps(plan.shared)})
            digests = {o: r["digest"] for o, r in outs_record.items()}
            ran = set()
            for pt, run, res, _ in results:
                ran.add(pt.key)
                if not sweep:
                    run.end("FINISHED")
                # never wait for the store here: the next stages start now
                rid = run.id_if_ready()
                assert pt.fp is not None
                mine = {o: digests.get(o) for o in plan.outs_of(pt)}
                record = pt.fp.record(mine, rid, time.time())
                self.runs.keep_notebook(run, rid, res.job.output.parent, record)
                self.r.state.put(plan.name, pt.key, record)
                self.r.state.failed.pop(pt.label, None)
                self.r.state.failed.pop(plan.name, None)  # a sweep stage killed as a whole
                if not sweep:
                    self.r.progress.line(pt.label, "done", "", rid)
            for pt in plan.points:  # the points that were up to date see the shared outs now
                kept = self.r.state.get(plan.name, pt.key)
                if pt.key not in ran and kept is not None:
                    kept.outs.update({o: digests.get(o) for o in plan.shared})
            self.status[plan.name] = "done"
        else:
            self.status[plan.name] = "failed"
            if not sweep:
                self.stop.mark(results[0][1])
                results[0][1].end(self.stop.end_status(True))
        if sweep and owner is not None:
            self.stop.mark(owner)
            owner.end(self.stop.end_status(err is not None))  # KILLED/FAILED as its points

    # --- the end ------------------------------------------------------------------------------
    def _close(self, seconds: float) -> None:
        progress = self.r.progress
        if not self.runs.started:
            self.r.hashes.save()
            progress.summary(self.status, seconds, None)
            for f in self.failures:
                progress.note(str(f))
            return
        status = self.stop.end_status(bool(self.failures))
        for run in [*self.runs.stage_runs.values(), self.runs.pipeline_run]:
            if run is not None and run.status == "RUNNING":
                self.stop.mark(run)
                run.end(status)
        sink = self.runs.sink
        assert sink is not None
        delivered = sink.close(on_wait=lambda left: summary.tell_delivering(progress, left))
        if self.runs.record is not None:
            if self.stop.is_set():  # Ctrl-C / SIGTERM: what did not finish is for --resume
                for name in self.order:
                    if self.status[name] not in ENDED:
                        self.r.state.failed.setdefault(name, "interrupted (Ctrl-C / SIGTERM)")
                self.r.state.save()
            self.runs.record.remove()  # this execution ended as it should: nothing to recover
        self.runs.name_late_runs(self.r.state)
        rid = self.runs.pipeline_run.id_if_ready() if self.runs.pipeline_run else None
        progress.summary(self.status, seconds, rid)
        told = self.executor.report() if self.executor is not None else None
        if told:  # a cluster's: jobs per worker, bytes shipped
            progress.say(told)
        self.undelivered = summary.report_delivery(progress, sink, delivered)
        self._share(delivered, refused=sink.denied is not None)
        if self.stop.timed_out:
            progress.note(
                f"nbops run: timed out after {self.r.timeout:g} s: kernels stopped, runs FAILED"
            )
        for f in self.failures:
            progress.note(str(f))

    def _share(self, delivered: bool, refused: bool = False) -> None:
        """Team mode: upload the out contents this execution cached that the tracking server
        lacks (once per content). Never fails the run: what is not sent stays in
        ``.nbops/cache/`` and ``nbops push`` sends it."""
        from nbops.errors import NbopsError
        from nbops.pipeline.cache import OutCache
        from nbops.pipeline.sharing import is_server, share

        uri = project.tracking_uri(self.r.root)
        if not self.stored or not is_server(uri):
            return
        later = "they stay in .nbops/cache/ and `nbops push` sends them"
        if not delivered:
            self.r.progress.note(
                f"nbops run: {len(self.stored)} out file{'s' if len(self.stored) != 1 else ''} "
                f"not shared: the tracking server "
                f"{'refused the login or a permission' if refused else 'is unreachable'}; {later}"
            )
            return
        try:
            done = share(uri, OutCache(self.r.root, self.r.state_dir, self.r.hashes), self.stored)
        except NbopsError as err:
            self.r.progress.note(f"nbops run: outs not shared: {err.message}; {later}")
            return
        self.r.progress.note(f"nbops run: shared outs: {done.line('uploaded')}")

    def outcome(self) -> PipelineOutcome:
        return summary.outcome(
            order=self.order,
            status=self.status,
            failures=self.failures,
            runs=self.runs,
            stop=self.stop,
            undelivered=self.undelivered,
            exit_code=self.exit_code,
            seconds=time.perf_counter() - self.t_start,
        )
