"""The fixture itself: real processes, and the project folder really hidden from every worker."""

from __future__ import annotations

import os
from pathlib import Path

from tests.dask.cluster import Cluster


def test_the_workers_are_real_processes_that_cannot_see_the_projects(
    dask_cluster: Cluster, dask_hidden: Path
) -> None:
    info = dask_cluster.worker_info()
    assert set(info) == {"w0", "w1"}
    assert info["w1"]["resources"] == {"GPU": 1}
    assert all(w["pid"] != os.getpid() for w in info.values())
    assert (dask_hidden / "MARKER").exists()  # here it is
    with dask_cluster.client() as c:
        seen = c.run(os.listdir, str(dask_hidden))
    assert seen and all(names == [] for names in seen.values()), seen  # there it is not
