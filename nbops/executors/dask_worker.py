"""The dask executor, the worker's side: the task that runs one job on a worker
(:func:`run_job`), and the functions the runner calls on workers with ``Client.run``: which blobs
a worker has (:func:`has_blobs`), one chunk of a blob (:func:`put_blob`), stop jobs
(:func:`cancel`). Imported on workers by reference (pickled as ``nbops.executors.dask_worker.X``):
every worker needs nbops installed."""

from __future__ import annotations

from nbops.executors.dask_protocol import JobReturn, JobSpec

JOBS_RUN = 0
"""How many jobs this worker process has run (tests: a no-op re-run touches no worker)."""


def has_blobs(digests: list[str]) -> list[str]:
    raise NotImplementedError


def put_blob(digest: str, offset: int, data: bytes, final: bool) -> None:
    raise NotImplementedError


def cancel(keys: list[str]) -> int:
    raise NotImplementedError


def run_job(spec: JobSpec) -> JobReturn:
    raise NotImplementedError
