"""A new embedded store survives many processes starting their first run at the same moment, and a
store left half-migrated is repaired (nothing lost) or refused with the file and the fix (more
half-migrated states, in-process: tests/unit/test_store_schema.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, nbops_cli, store_uri

PROCS = 8
ROUNDS = 3
STEPS = 20

# One driver imports nbops and MLflow once, then per round forks PROCS processes onto a new
# project; they all block on one pipe, which the driver closes: released at the same instant,
# each starts its first run, logs, ends it and delivers it with the writer's own loop
# (writer.serve, as the writer process runs it), so all of them create the store at once.
_DRIVER = """
import os, sys, traceback
from pathlib import Path
import nbops.mlflow.store  # MLflow is imported before the barrier
from nbops.tracking import writer
from nbops.tracking.run import Run

procs, steps = int(sys.argv[1]), int(sys.argv[2])
for root in sys.argv[3:]:
    barrier_r, barrier_w = os.pipe()
    kids = []
    for i in range(1, procs + 1):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(barrier_w)
                os.read(barrier_r, 1)  # EOF once the driver closes its end
                run = Run(
                    "race", name=f"p{i}", root=Path(root), spawn_writer=False, capture=False
                )
                run.log_param("i", i)
                for s in range(steps):
                    run.log_metric("m", s * i, step=s)
                run.end()
                owner_r, owner_w = os.pipe()
                os.close(owner_w)  # the "kernel" has gone: deliver everything, then exit
                code = writer.serve(run.spool, owner_r)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        kids.append(pid)
    os.close(barrier_r)
    os.close(barrier_w)  # go
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids]
    print(root, codes, flush=True)
"""


def _assert_store_whole(root: Path) -> None:
    db = root / ".nbops" / "mlflow.db"
    con = sqlite3.connect(db)
    try:
        left = con.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'"
        ).fetchall()
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        con.close()
    assert left == []
    from mlflow.store.db.utils import _get_latest_schema_revision
    from mlflow.tracking import MlflowClient

    assert version == _get_latest_schema_revision()
    client = MlflowClient(store_uri(root))  # the store opens
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in runs) == sorted(f"p{i}" for i in range(1, PROCS + 1))
    for r in runs:
        i = int(r.data.params["i"])
        assert r.info.status == "FINISHED", r.info.run_name
        history = client.get_metric_history(r.info.run_id, "m")
        assert sorted((m.step, m.value) for m in history) == [(s, s * i) for s in range(STEPS)]


def test_eight_processes_starting_their_first_run_at_the_same_instant_leave_a_whole_store(
    tmp_path,
):
    roots = []
    for n in range(ROUNDS):
        root = tmp_path / f"round{n}"
        (root / ".nbops").mkdir(parents=True)
        roots.append(root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("NBOPS_PROJECT_ROOT", None)
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(PROCS), str(STEPS), *map(str, roots)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for root in roots:
        assert f"{root} {[0] * PROCS}" in done.stdout, done.stdout + done.stderr[-3000:]
        _assert_store_whole(root)


# --- half-migrated stores ---------------------------------------------------------------------
def _store_with_a_run(root: Path) -> str:
    from nbops.mlflow.store import TrackingStore

    store = TrackingStore(store_uri(root))
    eid = store.experiment_id("kept")
    run_id = store.create_run(eid, 1, "kept-run", {})
    store.log_batch(run_id, metrics=[("acc", 0.5, 0, 1)], params=[("C", "1.0")])
    return run_id


def _tables(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def _sql(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    try:
        for s in statements:
            con.execute(s)
        con.commit()
    finally:
        con.close()


# what 8 processes racing on a new store left behind with MLflow 3.17 before the fix
RACE_STOPPED_AT = "a8c4a736bde6"
RACE_LEFT = ("latest_metrics", "metrics", "runs")


def test_an_interrupted_creation_of_an_empty_store_is_started_over(project):
    """The state the race left: a mid-chain schema revision and _alembic_tmp_ copies."""
    import shutil

    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    db = project / ".nbops" / "mlflow.db"
    uri = store_uri(project)
    engine = sqlalchemy.create_engine(uri)
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(uri)
    with engine.begin() as con:
        config.attributes["connection"] = con
        command.upgrade(config, RACE_STOPPED_AT)
    engine.dispose()
    _sql(db, *(f"CREATE TABLE _alembic_tmp_{t} AS SELECT * FROM {t} WHERE 0" for t in RACE_LEFT))
    # MLflow alone cannot open such a store any more (tried on a copy)
    copy = project / "copy.db"
    shutil.copyfile(db, copy)
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlflow.tracking import MlflowClient\n"
            f"MlflowClient('sqlite:///{copy}').search_experiments()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )
    assert plain.returncode != 0
    from nbops.mlflow.store import TrackingStore

    assert [e.name for e in TrackingStore(uri).experiments()] == ["Default"]
    assert not [t for t in _tables(db) if t.startswith("_alembic_tmp_")]


def test_a_store_that_cannot_be_finished_is_refused_at_once_and_sync_delivers_after_the_fix(
    project,
):
    _store_with_a_run(project)
    db = project / ".nbops" / "mlflow.db"
    # the copy holds the rows and the original is gone: dropping the copy would lose them
    _sql(
        db,
        "CREATE TABLE _alembic_tmp_params AS SELECT * FROM params",
        "DROP TABLE params",
    )
    code = (
        "import time, nbops\n"
        "nbops.start_run('after')\n"
        "for s in range(50):\n"
        "    nbops.log_metric('v', s, step=s)\n"
        "t = time.monotonic()\n"
        "ok = nbops.end_run()\n"
        "print('ended', ok, round(time.monotonic() - t, 1), flush=True)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NBOPS_PROJECT_ROOT": str(project),
        "NBOPS_FLUSH_TIMEOUT": "120",
    }
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ended False" in done.stdout
    assert time.monotonic() - t0 < 60  # not the 120 s flush timeout
    assert str(db) in done.stderr and "half-migrated" in done.stderr
    assert "_alembic_tmp_params" in _tables(db)  # refused, not touched
    # the fix the message names: move the store aside; the spool is still there to deliver
    aside = project / "broken"
    aside.mkdir()
    for f in db.parent.glob("mlflow.db*"):
        f.rename(aside / f.name)
    deadline = time.monotonic() + 60
    while True:  # the writer may still hold the spool for a moment
        synced = nbops_cli("sync", cwd=project, env=env)
        if "skipped" not in synced.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    # a fresh connection: this process' MLflow engine still has the moved-away file open
    con = sqlite3.connect(db)
    try:
        steps = con.execute(
            "SELECT m.step FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE e.name = 'after' AND m.key = 'v' AND r.status = 'FINISHED' ORDER BY m.step"
        ).fetchall()
    finally:
        con.close()
    assert [s for (s,) in steps] == list(range(50))
