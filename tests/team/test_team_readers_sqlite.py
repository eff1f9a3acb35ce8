"""Siblings of the PostgreSQL reader's checks on the embedded store's reader (the SQL they
share): LIKE is case-sensitive as in MLflow's SQLite sessions, and a deleted run is the client's
NotFound on every direct read, not a row of the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbops.mlflow.readers.client import MlflowReader
from nbops.mlflow.readers.sqlite import SqliteReader
from tests.conftest import store_uri
from tests.integration.server_seed import small_experiment


def test_sqlite_reader_like_and_deleted_runs_answer_as_mlflowclient(
    project: Path, client: Any
) -> None:
    ids = small_experiment(project)
    uri = store_uri(project)
    slow = MlflowReader(uri)
    fast = SqliteReader(project / ".nbops" / "mlflow.db", lambda: slow)
    exp = ids["experiment"]
    for flt in ("params.kind LIKE 'RF'", "params.kind LIKE 'r%'", "params.kind ILIKE 'RF'"):
        want = [r.model_dump() for r in slow.search([exp], flt, [], 50, None).runs]
        got = fast.search([exp], flt, [], 50, None)
        assert got.source == "sqlite" and [r.model_dump() for r in got.runs] == want, flt
    assert fast.search([exp], "params.kind LIKE 'RF'", [], 50, None).runs == []
    assert len(fast.search([exp], "params.kind ILIKE 'RF'", [], 50, None).runs) == 4

    gone = ids["run-3"]
    client.delete_run(gone)
    for call in (
        lambda r: r.run_info(gone),
        lambda r: r.summaries([ids["run-0"], gone]),
        lambda r: r.metric_history(gone, "acc"),
        lambda r: r.compare([ids["run-0"], gone]),
    ):
        with pytest.raises(Exception) as a:
            call(fast)
        with pytest.raises(Exception) as b:
            call(slow)
        assert (type(a.value), str(a.value)) == (type(b.value), str(b.value))
        assert "deleted" in str(a.value)
