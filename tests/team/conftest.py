"""Team mode under test: one real PostgreSQL cluster and real ``mlflow server`` processes on it,
started once per test session and shared (each test works in experiments of its own names:
:func:`unique`). A test that stops or kills a server starts its own with :func:`own_server`.

Fixtures:
- ``postgres``: the cluster (``Postgres``: ``uri(db)``, ``create_database``, ``psql``).
- ``team_server``: ``mlflow server`` on PostgreSQL, proxied artifacts, no auth.
- ``auth_server``: the same with MLflow's basic-auth app (admin / ``auth_server.admin_password``;
  ``add_user``, ``grant``).
- ``team_project``: a project root whose environment points at ``team_server``
  (``MLFLOW_TRACKING_URI``), with an empty ``.nbops/``; ``team_env`` the env for subprocesses.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.team.servers import MlflowServer, Postgres


def unique(prefix: str) -> str:
    """A name no other test on the shared server uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def team_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nbops-team-"))
    yield base


@pytest.fixture(scope="session")
def postgres(team_base: Path) -> Iterator[Postgres]:
    pg = Postgres(team_base / "pg").start()
    yield pg
    pg.stop()


def own_server(
    postgres: Postgres, base: Path, auth: bool = False, workers: int = 1
) -> MlflowServer:
    """A server of one test's own (on a new database): for tests that stop, kill or restart it.
    The caller stops it."""
    name = unique("mlflow").replace("-", "_")
    uri = postgres.create_database(name)
    return MlflowServer(base / name, uri, auth=auth, workers=workers).start()


@pytest.fixture(scope="session")
def team_server(postgres: Postgres, team_base: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(team_base / "server", postgres.create_database("mlflow")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_server(postgres: Postgres, team_base: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(
        team_base / "auth-server", postgres.create_database("mlflow_auth"), auth=True
    ).start()
    yield server
    server.stop()


@pytest.fixture
def team_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, team_server: MlflowServer
) -> Iterator[Path]:
    """A project root on the shared server: MLFLOW_TRACKING_URI set here and for subprocesses."""
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(root)
    yield root
    from nbops.tracking import fluent

    if fluent.active_run() is not None:
        fluent.end_run()
    from tests.conftest import _reap_writers

    _reap_writers(root)


@pytest.fixture
def team_env(team_project: Path, team_server: MlflowServer) -> dict[str, str]:
    """The environment of a subprocess (nbops CLI, kernels) working in ``team_project``."""
    env = dict(os.environ)
    env.update(team_server.env_for())
    env["NBOPS_PROJECT_ROOT"] = str(team_project)
    return env
