"""The dask executor, the runner's side: ``nbops run --dask ADDRESS`` (or ``local[:N]``) sends
each StageJob to a dask.distributed cluster as one task
(:func:`nbops.executors.dask_worker.run_job`), with what it needs shipped content-addressed
(:mod:`nbops.executors.shipping`), and applies what comes back to the project as if the job had
run here. See :mod:`nbops.executors.dask_protocol` for what the two sides exchange.

The only module of the runner's side that imports dask.
"""

from __future__ import annotations

from pathlib import Path

from nbops.executors.base import Executor, StageJob, StageResult


def resolve(cli: str | None, env: str | None, config: str | None) -> str | None:
    """Which cluster ``nbops run`` uses: ``--dask``, else ``NBOPS_DASK``, else nbops.yaml's
    ``dask: {scheduler:}``; None: the local executor. A blank value counts as unset."""
    for value in (cli, env, config):
        if value is not None and value.strip():
            return value.strip()
    return None


class DaskExecutor(Executor):
    """Runs StageJobs on a dask cluster. :meth:`connect` reaches the scheduler (or starts a
    LocalCluster for ``local[:N]``) and raises ClusterUnavailable (exit 2) when it cannot."""

    @classmethod
    def connect(cls, address: str, root: Path, jobs: int | None = None) -> DaskExecutor:
        raise NotImplementedError

    def execute(self, job: StageJob) -> StageResult:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
