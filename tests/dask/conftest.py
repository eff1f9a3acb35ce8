"""Scale-out under test: one real dask cluster per session (a ``dask scheduler`` process and two
``dask worker`` processes, see :mod:`tests.dask.cluster`), shared by the tests that do not harm
it; a test that kills a worker starts its own with :func:`tests.dask.cluster.own_cluster`.

Fixtures:
- ``dask_hidden``: the folder every worker sees as empty; tests put their projects in it
  (:func:`dask_project`), so a stage can only see what nbops ships.
- ``dask_cluster``: the shared cluster: worker ``w0`` (no resources) and ``w1`` (``GPU=1``).
- ``dask_project``: a fresh copy of the example pipeline under ``dask_hidden`` with its own
  embedded store; ``dask_env(root)`` the environment for ``nbops`` subprocesses in it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.dask.cluster import Cluster, WorkerSpec, start_cluster


@pytest.fixture(scope="session")
def dask_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nbops-dask-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def dask_hidden(dask_base: Path) -> Path:
    hidden = dask_base / "projects"
    hidden.mkdir()
    (hidden / "MARKER").write_text("the workers must not see this\n")
    return hidden


@pytest.fixture(scope="session")
def dask_cluster(dask_base: Path, dask_hidden: Path) -> Iterator[Cluster]:
    cluster = start_cluster(
        dask_base / "cluster",
        dask_hidden,
        [WorkerSpec("w0"), WorkerSpec("w1", resources={"GPU": 1})],
    )
    yield cluster
    cluster.stop()


def dask_env(root: Path) -> dict[str, str]:
    """The environment of an ``nbops`` subprocess working on project ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBOPS_", "MLFLOW_"))}
    env["NBOPS_PROJECT_ROOT"] = str(root)
    env["CI"] = "true"
    return env


@pytest.fixture
def dask_project(dask_hidden: Path) -> Callable[[str], Path]:
    """``dask_project(name)``: a copy of the example pipeline (nbops.yaml and its notebooks)
    under ``dask_hidden``, with an empty ``.nbops/``."""

    def make(name: str = "proj") -> Path:
        root = dask_hidden / f"{name}-{uuid.uuid4().hex[:8]}"
        src = REPO / "example_notebooks"
        root.mkdir()
        for p in src.iterdir():
            if p.suffix in (".ipynb", ".yaml") or p.name == "nbops.yaml":
                shutil.copy2(p, root / p.name)
        (root / ".nbops").mkdir()
        return root

    return make
