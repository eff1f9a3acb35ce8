"""The dask executor when things go wrong, through the API, each on a cluster of its own: a
worker SIGKILLed under a stage (run again on the other worker and said, or failed naming it
with ``retries: 0``), ``stop()`` in the middle of a stage, a scheduler with no worker.

The stage (tests.dask.test_dask_faults.SLOW) writes its kernel's pid to a marker under
``tmp_path`` (which the workers see) once it is in its long cell; a retry finds the marker and
goes on at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nbops.errors import ClusterUnavailable
from nbops.executors.dask_exec import DaskExecutor
from tests.dask.cluster import SCHEDULER, Cluster, WorkerSpec, own_cluster
from tests.dask.test_dask_exec import Watching, run_on, small_project
from tests.dask.test_dask_faults import alive, project, reaping, wait_until, worker_of

TWO = [WorkerSpec("east"), WorkerSpec("west")]


class Background:
    """``Runner.run`` on ``executor`` in a thread of its own."""

    def __init__(self, executor: Watching, root: Path) -> None:
        self.code: int | None = None
        self.out = ""
        self.ended = threading.Event()

        def go() -> None:
            try:
                self.code, self.out = run_on(executor, root)
            finally:
                self.ended.set()

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def marker(self, path: Path) -> int:
        """The kernel pid the stage wrote once in its long cell."""
        deadline = time.monotonic() + 120
        while not path.exists():
            assert not self.ended.is_set(), f"the run ended first ({self.code}):\n{self.out}"
            assert time.monotonic() < deadline, "the stage never reached its long cell"
            time.sleep(0.05)  # polling for a file another process writes
        return int(path.read_text())

    def join(self, timeout: float) -> float:
        """Seconds until the run ended."""
        t = time.monotonic()
        assert self.ended.wait(timeout), "the run did not end"
        return time.monotonic() - t


@contextmanager
def cluster_of(tmp_path: Path, hidden: Path) -> Iterator[Cluster]:
    with own_cluster(tmp_path / "c", hidden, TWO) as cluster:
        yield cluster


def test_a_worker_killed_under_a_stage_runs_it_again_on_the_other_and_says_so(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker)
    with cluster_of(tmp_path, dask_hidden) as cluster, reaping(marker):
        executor = Watching(DaskExecutor.connect(cluster.address, root))
        run = Background(executor, root)
        name, address = worker_of(cluster, run.marker(marker))
        (other,) = [(n, w["address"]) for n, w in cluster.worker_info().items() if n != name]
        cluster.kill_worker(name)
        run.join(180)
        assert run.code == 0, run.out + cluster.log_text()
        slow = [r for r in executor.results if r.job.label == "slow"]
        assert len(slow) == 1 and slow[0].ok, slow  # one result: the retry is not a new job
        assert slow[0].worker == slow[0].job.worker == other[1]
        # it started once for the runner (one run, one clock), where it ran first
        assert [s for s in executor.starts if s[0] == "slow"] == [("slow", address)]
        assert executor.notes == [
            ("slow", f"worker {name} ({address}) died; retry 1 of 1 on {other[0]}")
        ]
        assert executor.inner.retries == 1
        report = executor.report()
        assert report is not None and "1 retry after a worker died" in report, report
        assert (root / "out" / "after.txt").read_text() == "slow after"


def test_a_killed_worker_with_no_retry_left_fails_the_stage_at_once_naming_it(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker, "\n    retries: 0")
    with cluster_of(tmp_path, dask_hidden) as cluster, reaping(marker):
        executor = Watching(DaskExecutor.connect(cluster.address, root))
        run = Background(executor, root)
        name, address = worker_of(cluster, run.marker(marker))
        cluster.kill_worker(name)
        took = run.join(120)
        assert run.code == 1, run.out
        assert took < 20, f"it took {took:.0f} s to notice the worker died"
        (slow,) = executor.results  # after is skipped
        assert not slow.ok and slow.error is not None
        text = str(slow.error)
        assert f"the dask worker {name} ({address}) died while running it" in text, text
        assert "killed, crashed or out of memory" in text and "retries:" in text, text
        assert executor.notes == [] and executor.inner.retries == 0
        assert not (root / "out" / "slow.txt").exists()
        # nothing of it is left on the cluster (dask would have run it again on the other one)
        with cluster.client() as c:
            wait_until(
                "the scheduler still holds its task",
                lambda: c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0,
            )


def test_stop_in_the_middle_of_a_stage_returns_at_once_and_leaves_no_kernel(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker)
    with cluster_of(tmp_path, dask_hidden) as cluster, reaping(marker):
        executor = Watching(DaskExecutor.connect(cluster.address, root))
        run = Background(executor, root)
        kernel = run.marker(marker)
        t = time.monotonic()
        stopper = threading.Thread(target=executor.stop)
        stopper.start()
        executor.stop()  # twice, from two threads: idempotent
        stopper.join(30)
        assert time.monotonic() - t < 15, "stop() did not return promptly"
        assert run.join(15) < 15
        (slow,) = executor.results
        assert not slow.ok and slow.error is not None
        assert "the pipeline was stopped" in slow.error.message, slow.error
        wait_until(f"the stage's kernel {kernel} outlived stop()", lambda: not alive(kernel))
        assert executor.inner.client.status == "closed"
        with cluster.client() as c:
            wait_until(
                "the scheduler still holds tasks",
                lambda: c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0,
            )
        assert len(cluster.worker_info()) == 2  # the workers are fine
        # a job after stop() is refused at once
        assert executor.inner.execute(slow.job).error is not None


@contextmanager
def scheduler_alone(base: Path) -> Iterator[str]:
    """A ``dask scheduler`` process with no worker: its address."""
    info = base / "scheduler.json"
    argv = [*SCHEDULER, "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    proc = subprocess.Popen(
        [*argv, "--scheduler-file", str(info)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (info.exists() and info.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "no scheduler"
            time.sleep(0.05)  # polling for the file the scheduler writes once it listens
        yield str(json.loads(info.read_text())["address"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_a_scheduler_without_a_worker_is_cluster_unavailable_after_a_bounded_wait(
    tmp_path: Path,
) -> None:
    with scheduler_alone(tmp_path) as address:
        t = time.monotonic()
        with pytest.raises(ClusterUnavailable) as err:
            DaskExecutor.connect(address, tmp_path, where="nbops.yaml:9", worker_wait=1)
        assert time.monotonic() - t < 10
        text = str(err.value)
        assert f"nbops.yaml:9: the dask scheduler {address} has no worker" in text, text
        assert f"`dask worker {address}`" in text, text


# a real `dask worker` (no nanny: this very process) in a Python where nbops cannot be imported
BARE_WORKER = (
    "import sys\nsys.modules['nbops'] = None\nsys.argv[0] = 'dask worker'\n"
    "from distributed.cli.dask_worker import main\nmain()\n"
)


def test_a_worker_without_nbops_fails_the_stage_at_once_saying_what_to_install_where(
    tmp_path: Path, dask_hidden: Path
) -> None:
    root = small_project(dask_hidden)
    with scheduler_alone(tmp_path) as address:
        argv = [sys.executable, "-c", BARE_WORKER, address, "--no-nanny", "--nthreads", "1"]
        worker = subprocess.Popen(
            [*argv, "--name", "bare", "--no-dashboard"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            executor = Watching(DaskExecutor.connect(address, root))
            t = time.monotonic()
            code, out = run_on(executor, root)
            assert code == 1, out
            assert time.monotonic() - t < 30, "the job waited on a worker that cannot run it"
            (res,) = executor.results
            assert res.error is not None
            text = str(res.error)
            assert "the dask worker bare (tcp://127.0.0.1:" in text, text
            assert "cannot import nbops" in text and "install nbops" in text, text
            assert "`dask worker`" in text, text
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)


def test_a_cluster_that_loses_every_worker_fails_the_stage_after_a_bounded_wait(
    tmp_path: Path, dask_hidden: Path
) -> None:
    marker = tmp_path / "marker"
    root = project(dask_hidden, marker)
    with own_cluster(tmp_path / "c", dask_hidden, [WorkerSpec("east")]) as cluster, reaping(marker):
        executor = Watching(DaskExecutor.connect(cluster.address, root))
        executor.inner.lost_after = 3.0
        run = Background(executor, root)
        run.marker(marker)
        (address,) = [w["address"] for w in cluster.worker_info().values()]
        os.killpg(cluster.workers["east"].pid, signal.SIGKILL)  # the worker and its nanny
        took = run.join(60)
        assert run.code == 1, run.out
        assert took < 20, f"it waited {took:.0f} s on a cluster with no worker"
        (slow,) = executor.results
        assert slow.error is not None
        text = str(slow.error)
        assert "has no worker left that can run it (none for 3 s)" in text, text
        assert f"east ({address}) died" in text, text
