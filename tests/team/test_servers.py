"""The team fixtures themselves: a real PostgreSQL holds what a real mlflow server stores, and the
basic-auth server refuses a wrong password."""

from __future__ import annotations

import urllib.error

import pytest

from tests.team.conftest import unique
from tests.team.servers import MlflowServer, Postgres, request


def test_the_server_stores_into_postgresql(postgres: Postgres, team_server: MlflowServer) -> None:
    name = unique("fixture")
    made = request(team_server.url, "POST", "/api/2.0/mlflow/experiments/create", {"name": name})
    rows = postgres.psql(
        f"SELECT experiment_id FROM experiments WHERE name = '{name}'", database="mlflow"
    )
    assert rows.strip() == made["experiment_id"]


def test_the_auth_server_refuses_a_wrong_password(auth_server: MlflowServer) -> None:
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert request(auth_server.url, "GET", path, auth=("admin", auth_server.admin_password))
    with pytest.raises(urllib.error.HTTPError) as info:
        request(auth_server.url, "GET", path, auth=("admin", "wrong"))
    assert info.value.code == 401
    pw = auth_server.add_user(unique("reader"))
    assert pw
