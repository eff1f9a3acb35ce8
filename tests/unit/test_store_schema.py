"""ensure_schema on stores left in random half-migrated states: it repairs them without losing a
row, or refuses them with a SchemaRefused that names the file, and never changes a refused one."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.mlflow import schema

TABLES = ("params", "metrics", "runs", "tags", "latest_metrics")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A current store holding one run with a param, a metric and a tag."""
    from nbops.mlflow.store import TrackingStore

    d = tmp_path_factory.mktemp("template") / ".nbops"
    d.mkdir()
    store = TrackingStore(f"sqlite:///{d / 'mlflow.db'}")
    eid = store.experiment_id("kept")
    run_id = store.create_run(eid, 1, "kept-run", {})
    store.log_batch(run_id, metrics=[("acc", 0.5, 0, 1)], params=[("C", "1")], tags=[("t", "x")])
    # a self-contained copy (this process' MLflow engine keeps the store open)
    out = d.parent / "template.db"
    src, dst = sqlite3.connect(d / "mlflow.db"), sqlite3.connect(out)
    src.backup(dst)
    src.close()
    dst.execute("PRAGMA journal_mode=DELETE")
    dst.close()
    return out


def _counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        out = {}
        for t in TABLES:
            name = t if t in names else f"_alembic_tmp_{t}"
            out[t] = con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
        return out
    finally:
        con.close()


mutation = st.fixed_dictionaries(
    {
        # table -> None (untouched), "copy" (leftover beside it), "moved" (only the copy is left)
        "tables": st.dictionaries(st.sampled_from(TABLES), st.sampled_from(["copy", "moved"])),
        "unknown_version": st.booleans(),
    }
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(m=mutation)
def test_a_half_migrated_store_is_repaired_losing_nothing_or_refused_untouched(
    template: Path, tmp_path: Path, m: dict[str, object]
) -> None:
    d = tmp_path / uuid.uuid4().hex / ".nbops"
    d.mkdir(parents=True)
    db = d / "mlflow.db"
    shutil.copyfile(template, db)
    before = _counts(db)
    con = sqlite3.connect(db)
    tables: dict[str, str] = m["tables"]  # type: ignore[assignment]
    for t, how in tables.items():
        con.execute(f"CREATE TABLE _alembic_tmp_{t} AS SELECT * FROM {t}")
        if how == "moved":
            con.execute(f"DROP TABLE {t}")
    if m["unknown_version"]:
        con.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    con.commit()
    con.close()
    image = db.read_bytes()
    refuse = m["unknown_version"] or "moved" in tables.values()
    if refuse:
        with pytest.raises(schema.SchemaRefused) as err:
            schema.ensure_schema(f"sqlite:///{db}")
        assert str(db) in err.value.message and err.value.hint
        if m["unknown_version"]:
            assert "ffffffffffff" in err.value.message and "upgrade mlflow" in err.value.hint
        else:
            assert "half-migrated" in err.value.message
        assert db.read_bytes() == image  # refused stores are left as they are
        assert not list(d.glob("mlflow.db.before-*"))
    else:
        schema.ensure_schema(f"sqlite:///{db}")
        state = schema.read_state(db)
        assert schema.is_current(state)
        assert _counts(db) == before
        if tables:
            assert len(list(d.glob("mlflow.db.before-*"))) == 1


def test_the_common_path_takes_no_lock_and_imports_no_migration(template: Path, tmp_path: Path):
    d = tmp_path / ".nbops"
    d.mkdir()
    db = d / "mlflow.db"
    shutil.copyfile(template, db)
    schema.ensure_schema(f"sqlite:///{db}")
    assert not schema.lock_path(db).exists()  # current already: no lock file was even made


def test_other_stores_are_left_to_mlflow(tmp_path: Path) -> None:
    schema.ensure_schema("http://127.0.0.1:9/")  # no SQLite file: nothing to do, no error
    schema.ensure_schema(f"file://{tmp_path}/mlruns")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["directory", "not sqlite", "symlink to /dev/zero"])
def test_a_store_file_that_is_no_database_is_refused_without_hanging(tmp_path: Path, kind: str):
    d = tmp_path / ".nbops"
    d.mkdir()
    db = d / "mlflow.db"
    if kind == "directory":
        db.mkdir()
    elif kind == "not sqlite":
        db.write_text("garbage " * 100)
    else:
        db.symlink_to("/dev/zero")
    with pytest.raises(schema.SchemaRefused) as err:
        schema.ensure_schema(f"sqlite:///{db}")
    assert str(db) in err.value.message and "move it aside" in (err.value.hint or "")
