"""A worker process SIGKILLed mid-job, on a cluster of this test's own: the job's kernel dies
with it (nothing keeps computing on a dead worker's behalf), and the next worker process, which
shares the blob cache (``NBOPS_WORKER_CACHE``), removes the dead job's scratch folder and keeps
what a live process owns."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from nbops.executors import dask_worker, shipping
from nbops.executors.dask_protocol import CACHE_ENV
from tests.dask.cluster import WorkerSpec, own_cluster
from tests.dask.test_dask_worker import _project, _send


def _use_cache(cache: str) -> str:
    os.environ[CACHE_ENV] = cache
    return cache


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_a_killed_workers_kernel_dies_with_it_and_its_scratch_is_swept(
    tmp_path: Path, dask_hidden: Path
) -> None:
    cache = tmp_path / "cache" / "nbops-blobs"  # outside dask_hidden: every process sees it
    pidfile = tmp_path / "kernel.pid"
    job, _ = _project(
        dask_hidden,
        f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)",
        dep=False,
    )
    spec, blobs = shipping.spec_of(job, f"k-{uuid.uuid4().hex[:6]}")
    with own_cluster(tmp_path / "c", dask_hidden, [WorkerSpec("a")]) as cluster:
        with cluster.client() as c:
            c.run(_use_cache, str(cache))
            _send(c, blobs)
            fut = c.submit(dask_worker.run_job, spec, pure=False)
            deadline = time.monotonic() + 60
            while not (pidfile.exists() and pidfile.read_text()):
                assert time.monotonic() < deadline and not fut.done(), cluster.log_text()
                time.sleep(0.05)  # waiting for the kernel to say it runs
            kernel = int(pidfile.read_text())
            jobs = cache.parent / dask_worker.JOBS
            (scratch,) = [p for p in jobs.iterdir() if p.is_dir()]
            assert (scratch / "stage.ipynb").exists()
            fut.cancel()  # dask would run it again on the new worker process
            worker_pid = cluster.kill_worker("a")
            deadline = time.monotonic() + 30
            while not _gone(kernel):
                assert time.monotonic() < deadline, f"kernel {kernel} outlived its worker"
                time.sleep(0.05)  # the zygote's kernels die with it (PR_SET_PDEATHSIG)
            assert _gone(worker_pid)
            cluster.wait_for_workers(1)
            deadline = time.monotonic() + 60
            while worker_pid in c.run(os.getpid).values() or not c.run(os.getpid):
                assert time.monotonic() < deadline
                time.sleep(0.05)  # the nanny's new worker process registers
            c.run(_use_cache, str(cache))
            live = jobs / "live-job"  # a job of another live process sharing the cache
            live.mkdir()
            (jobs / ("live-job" + dask_worker.OWNER)).write_text(str(os.getpid()))
            assert scratch.exists()  # left behind by the killed process
            quick, quick_blobs = shipping.spec_of(
                _project(dask_hidden, "x = 2", dep=False)[0], f"k-{uuid.uuid4().hex[:6]}"
            )
            _send(c, quick_blobs)
            ret: Any = c.submit(dask_worker.run_job, quick, pure=False).result(timeout=120)
    assert ret.ok, ret.error
    assert not scratch.exists()  # swept by the next worker process
    assert not (jobs / (scratch.name + dask_worker.OWNER)).exists()
    assert live.exists()
