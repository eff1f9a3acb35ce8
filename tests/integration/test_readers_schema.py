"""The SQLite reader reads MLflow's tables only at a schema revision its SQL was written for;
at any other revision the same answers come through MlflowClient (``source`` says which)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nbops.mlflow.readers.client import MlflowReader
from nbops.mlflow.readers.sqlite import KNOWN_SCHEMA_REVISIONS, SqliteReader
from tests.integration.server_seed import small_experiment


@pytest.fixture
def seeded(project: Path) -> dict[str, Any]:
    return small_experiment(project)


def _revision(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("SELECT version_num FROM alembic_version").fetchone()[0])
    finally:
        con.close()


def _reader(db: Path, known: frozenset[str] = KNOWN_SCHEMA_REVISIONS) -> SqliteReader:
    client: list[MlflowReader] = []

    def fallback() -> MlflowReader:
        if not client:
            client.append(MlflowReader(f"sqlite:///{db}"))
        return client[0]

    return SqliteReader(db, fallback, known)


def test_the_installed_mlflows_schema_is_one_the_direct_reader_knows(
    project: Path, seeded: dict[str, Any]
) -> None:
    # fails after an MLflow upgrade that moves the schema: check the SQL, then add the revision
    from nbops.mlflow.schema import head_revision

    assert head_revision() in KNOWN_SCHEMA_REVISIONS
    assert _revision(project / ".nbops" / "mlflow.db") == head_revision()


def test_a_known_revision_is_read_with_sql(project: Path, seeded: dict[str, Any]) -> None:
    reader = _reader(project / ".nbops" / "mlflow.db")
    page = reader.run_list("iris", "params.kind = 'rf'", ["metrics.acc DESC"], 10, None)
    assert reader.direct() is True
    assert page.source == "sqlite" and page.total == 4
    assert [r.run_name for r in page.runs] == ["run-4", "run-2", "run-1", "run-0"]


def test_an_unknown_revision_answers_the_same_through_the_client(
    project: Path, seeded: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store at a revision the SQL was not written for (what a newer MLflow makes): the
    reader never queries its tables, MlflowClient answers, and the log says so once."""
    db = project / ".nbops" / "mlflow.db"
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    src, dst = sqlite3.connect(db), sqlite3.connect(copy)  # the WAL too
    src.backup(dst)
    src.close()
    dst.close()
    direct = _reader(db)
    revision = _revision(copy)
    other = _reader(copy, known=frozenset(KNOWN_SCHEMA_REVISIONS - {revision}))
    ids = [seeded[f"run-{i}"] for i in range(5)]
    query = ("iris", "params.kind = 'rf' and metrics.acc > 0.55", ["metrics.acc DESC"], 10, None)
    with caplog.at_level(logging.WARNING, logger="nbops.server"):
        fast, slow = direct.run_list(*query), other.run_list(*query)
        assert other.direct() is False
        assert (fast.source, slow.source) == ("sqlite", "mlflow")
        assert [r.model_dump() for r in slow.runs] == [r.model_dump() for r in fast.runs]
        assert [r.run_name for r in slow.runs] == ["run-4", "run-2", "run-1"]
        assert other.experiments() == direct.experiments()
        assert other.run_info(ids[0]) == direct.run_info(ids[0])
        assert other.metric_history(ids[1], "acc") == direct.metric_history(ids[1], "acc")
        assert other.compare(ids) == direct.compare(ids)
    said = [r.getMessage() for r in caplog.records if "schema revision" in r.getMessage()]
    assert len(said) == 1
    assert revision in said[0] and str(copy) in said[0] and "MlflowClient" in said[0]
