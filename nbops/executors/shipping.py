"""What a job sends to a dask worker and what the runner does with what comes back: the
:class:`~nbops.executors.dask_protocol.JobSpec` of a StageJob (its notebook and deps as digests
of project-relative files), and a :class:`~nbops.executors.dask_protocol.JobReturn` applied to
the project (outs written where they belong, the executed notebook kept, the run's spool given
the records and files the kernel left on the worker). Standard library and xxhash only."""

from __future__ import annotations

from pathlib import Path

from nbops.executors.base import StageJob
from nbops.executors.dask_protocol import JobReturn, JobSpec


def spec_of(job: StageJob, key: str) -> tuple[JobSpec, dict[str, Path]]:
    """The JobSpec of ``job`` and, for each digest it names, the local file that holds it."""
    raise NotImplementedError


def apply(ret: JobReturn, job: StageJob) -> None:
    """Write what a finished job sent back into the project, as if it had run here."""
    raise NotImplementedError
