"""The direct PostgreSQL reader beside a basic-auth MLflow server: the database login can read
every experiment, the sidebar answers directly only for those the server lets the user read
(its experiment list), and everything else is the server's own answer (its refusal included)."""

from __future__ import annotations

from typing import Any

import pytest

from nbops import envvars
from nbops.errors import AccessDenied
from nbops.mlflow.readers.client import MlflowReader
from nbops.mlflow.readers.postgres import PostgresReader
from tests.team.conftest import unique
from tests.team.servers import MlflowServer, Postgres
from tests.team.test_team_readers import read_only_role


def _runs(client: Any, exp: str, n: int) -> list[str]:
    from mlflow.entities import Metric, Param

    ids = []
    for i in range(n):
        rid = client.create_run(exp, start_time=1_760_000_000_000 + i, run_name=f"r{i}").info.run_id
        client.log_batch(
            rid,
            metrics=[Metric("acc", 0.1 * i + s, 0, s) for s in range(3)],
            params=[Param("i", str(i))],
            synchronous=True,
        )
        ids.append(rid)
    return ids


def test_the_direct_path_needs_the_servers_login_too(
    auth_server: MlflowServer, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database login reads every experiment; the sidebar still asks the MLflow server
    which experiments this user may read, so a user the server refuses (wrong password) gets
    the server's refusal from the direct path too, never the database's rows. (MLflow 3.17's
    basic-auth no longer grants NO_PERMISSIONS on one experiment, and this server's default
    permission is READ: a user who logs in reads every experiment.)"""
    from mlflow.tracking import MlflowClient

    seeder = MlflowClient(auth_server.backend_uri)  # the server's database, as its admin would
    exp = seeder.create_experiment(unique("team"))
    runs = _runs(seeder, exp, 3)
    user = unique("alice")
    pw = auth_server.add_user(user)
    monkeypatch.setenv(envvars.MLFLOW_TRACKING_USERNAME, user)
    monkeypatch.setenv(envvars.MLFLOW_TRACKING_PASSWORD, pw)
    # basic-auth checks the password hash on every request: slow on a loaded machine
    monkeypatch.setenv(envvars.MLFLOW_HTTP_REQUEST_TIMEOUT, "120")
    client = MlflowReader(auth_server.url)
    login = read_only_role(postgres, "mlflow_auth")
    direct = PostgresReader(login, lambda: client)
    try:
        assert direct.direct() is True
        page = direct.run_list(exp, "", [], 10, None)
        assert page.source == "postgres" and page.total == 3
        assert [r.run_id for r in page.runs] == runs[::-1]
        assert direct.compare(runs) == client.compare(runs)
    finally:
        direct.close()
    monkeypatch.setenv(envvars.MLFLOW_TRACKING_PASSWORD, "wrong-" + pw)
    refused = PostgresReader(login, lambda: client)
    try:
        calls = [
            lambda r: r.run_list(exp, "", [], 10, None),
            lambda r: r.run_info(runs[0]),
            lambda r: r.compare(runs),
        ]
        for call in calls:
            with pytest.raises(AccessDenied) as a:
                call(refused)
            with pytest.raises(AccessDenied) as b:
                call(client)
            assert str(a.value) == str(b.value)
    finally:
        refused.close()
