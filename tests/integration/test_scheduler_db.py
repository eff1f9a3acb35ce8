"""The scheduler database (.nbops/scheduler/scheduler.db) when it is not as nbops wrote it: a
0-byte file, a file that is not SQLite, a directory, symlink or FIFO in its place, a lost table,
bad rows, a lock held by another process. Every `schedule` command, the daemon and the server's
list give one error naming the file and the fix (exit 2, HTTP 4xx, or the list's `problem`), or
go on soundly; nothing is ever silently replaced. Real SQLite files and real processes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops import cli
from nbops.errors import NbopsError, SchedulerDatabaseError, http_status_of
from nbops.scheduler import api
from nbops.scheduler import store as storemod
from nbops.scheduler.daemon import Daemon
from nbops.scheduler.model import Schedule
from nbops.scheduler.store import ScheduleStore
from nbops.server import schedules as server
from tests.conftest import nbops_cli, notebook

YAML = """\
stages:
  train:
    notebook: train.ipynb
schedules:
  nightly: {cron: "0 2 * * *"}
"""


@pytest.fixture
def proj(project: Path) -> Path:
    notebook(project / "train.ipynb", ("C = 1.0", ["parameters"]), "y = C")
    (project / "nbops.yaml").write_text(YAML)
    api.add_schedule(project, Schedule(name="good", cron="* * * * *", params={"C": 0.5}))
    return project


def db_path(root: Path) -> Path:
    return root / ".nbops" / "scheduler" / "scheduler.db"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`nbops ARGS` in this process (cli.main): exit code, stdout, stderr."""

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def sql(root: Path, *statements: str) -> None:
    db = sqlite3.connect(db_path(root), isolation_level=None)
    try:
        for s in statements:
            db.execute(s)
    finally:
        db.close()


def snapshot(path: Path) -> Any:
    """What is at ``path`` (kind and bytes), to prove nothing replaced it."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return ("dir", sorted(os.listdir(path)))
    if path.exists() and not path.is_file():
        return ("special", path.stat().st_mode)
    return ("file", path.read_bytes()) if path.exists() else None


# --- a file that is not the database nbops wrote -----------------------------------------------
def _zero(p: Path) -> None:
    p.write_bytes(b"")


def _text(p: Path) -> None:
    p.write_text("schedules: these are my notes\n" * 100)


def _dir(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "x").write_text("x")


def _symlink(p: Path) -> None:
    p.unlink()
    p.symlink_to("/dev/zero")


def _lost_table(p: Path) -> None:
    sql(p.parents[2], "DROP TABLE history")


def _lost_column(p: Path) -> None:
    sql(p.parents[2], "ALTER TABLE history DROP COLUMN status")


def _foreign(p: Path) -> None:
    p.unlink()
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE notes (t TEXT)")
    db.commit()
    db.close()


def _truncated(p: Path) -> None:
    sql(p.parents[2], *["INSERT INTO history (schedule, status) VALUES ('good', 'ok')"] * 300)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "0-byte": (_zero, "is empty (0 bytes)"),
    "not SQLite": (_text, "is not an SQLite database"),
    "a directory": (_dir, "is a directory"),
    "a symlink to /dev/zero": (_symlink, "is a symbolic link"),
    "a lost table": (_lost_table, "has lost its table history"),
    "a lost column": (_lost_column, "has lost column(s) status of table history"),
    "another program's database": (_foreign, "holds other tables (notes)"),
    "truncated": (_truncated, "is damaged (database disk image is malformed)"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_database_is_refused_by_every_command_and_never_replaced(proj, run, kind):
    damage, words = DAMAGE[kind]
    path = db_path(proj)
    damage(path)
    before = snapshot(path)
    for args in (
        ["schedule", "list"],
        ["schedule", "add", "x", "--cron", "@daily"],
        ["schedule", "remove", "good"],
        ["schedule", "history", "good"],
        ["schedule", "run", "good"],
    ):
        code, out, err = run(*args)
        assert code == 2, (args, out, err)
        first, *rest = err.splitlines()
        assert f"the scheduler database {path} {words}" in first, err
        assert "nbops does not replace it" in first and "Traceback" not in err
        assert rest and rest[0].startswith("  hint: move it aside: mv ") and len(rest) == 1
        assert snapshot(path) == before, f"{args} changed what is at {path}"
    listing = server.list_schedules(proj)  # GET /schedules: 200, the problem said
    assert listing.schedules == [] and listing.problem and words in listing.problem
    with pytest.raises(SchedulerDatabaseError) as refused:  # POST /schedules: the server's state
        server.create_schedule(proj, server.sm.CreateSchedule(name="x", cron="@daily"))
    assert http_status_of(refused.value) == 503
    assert snapshot(path) == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".new")]


def test_the_daemon_refuses_to_start_on_a_damaged_database_and_a_fifo_never_hangs(proj):
    path = db_path(proj)
    path.write_bytes(b"")
    out = nbops_cli("scheduler", cwd=proj, timeout=60)
    assert out.returncode == 2 and f"{path} is empty (0 bytes)" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and path.read_bytes() == b""
    path.unlink()
    os.mkfifo(path)
    out = nbops_cli("schedule", "list", cwd=proj, timeout=60)
    assert out.returncode == 2 and "is not a regular file" in out.stderr, out.stderr


def test_following_the_hint_gets_a_new_database(proj, run):
    path = db_path(proj)
    path.write_bytes(b"")
    code, _, err = run("schedule", "list")
    command = err.split("hint: move it aside: ", 1)[1].split(";")[0]
    subprocess.run(command, shell=True, check=True)
    code, out, err = run("schedule", "list")
    assert code == 0 and "nightly" in out and "good" not in out, err
    assert [p.name for p in path.parent.glob("scheduler.db.damaged-*")]


def test_an_empty_sqlite_file_gets_the_schema(project, run):
    (project / "nbops.yaml").write_text("stages: {}\n")
    path = db_path(project)
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 7")  # a valid SQLite file with no tables
    db.close()
    code, out, err = run("schedule", "list")
    assert code == 0, err
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schedules", "history", "slots", "requests"} <= tables


def test_first_use_by_many_processes_at_once_makes_one_database(project):
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from nbops.scheduler.store import ScheduleStore
        while time.time() < {time.time() + 2.0}:
            pass
        s = ScheduleStore(Path({str(project)!r}))
        s.add_history("s", status="ok")
        print(len(s.history("s", limit=100)))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(ScheduleStore(project).history("s", limit=100)) == 6
    assert sorted(p.name for p in db_path(project).parent.iterdir()) == [
        "scheduler.db",
        "scheduler.db-shm",
        "scheduler.db-wal",
    ] or not [p for p in db_path(project).parent.iterdir() if p.name.endswith(".new")]


# --- bad rows ----------------------------------------------------------------------------------
BAD_ROWS = [
    "INSERT INTO schedules VALUES ('never', json_object('name', 'never', 'cron', '0 0 30 2 *'), 0)",
    'INSERT INTO schedules VALUES (\'typo\', \'{"name": "typo", "cron": \', 0)',
    "INSERT INTO schedules VALUES ('listy', '[1, 2]', 0)",
    "INSERT INTO schedules VALUES (NULL, '{}', 0)",
    "INSERT INTO schedules VALUES ('wrongname', json_object('name', 'other', 'cron', '@daily'), 0)",
    "INSERT INTO schedules VALUES ('strretries', "
    "json_object('name', 'strretries', 'cron', '@daily', 'retries', '3'), 0)",
    "INSERT INTO schedules VALUES ('../../etc', "
    "json_object('name', '../../etc', 'cron', '@daily'), 0)",
    "INSERT INTO schedules VALUES ('nightly', json_object('name', 'nightly', 'cron', '@daily'), 0)",
    "INSERT INTO schedules VALUES ('mars', "
    "json_object('name', 'mars', 'cron', '@daily', 'timezone', 'Mars/Base'), 0)",
    "INSERT INTO schedules VALUES ('gone', "
    "json_object('name', 'gone', 'cron', '@daily', 'stages', json_array('deleted')), 0)",
    "INSERT INTO schedules VALUES ('blob', x'00ff', 0)",
    "INSERT INTO history (schedule, status) VALUES ('good', 'ok')",
    "INSERT INTO history (schedule, status) VALUES ('good', 'exploded')",
    "INSERT INTO history (schedule, status, run_ids) VALUES ('good', 'ok', '{not json')",
    "INSERT INTO history (schedule, status, fire_time) VALUES ('good', 'ok', 'yesterday')",
    "INSERT INTO slots VALUES ('good', '{\"cursor\": \"soon\"}')",
    "INSERT INTO slots VALUES ('nightly', 'garbage')",
    "INSERT INTO requests (schedule, requested) VALUES (x'00', 0)",
]
INVALID = {
    "never": "cron: '0 0 30 2 *' never fires",
    "typo": "its spec is not a JSON object",
    "listy": "its spec is not a JSON object",
    "<row 5>": "name: None is not a valid schedule name",
    "wrongname": "its spec names 'other'",
    "strretries": "retries: '3' is not a whole number",
    "../../etc": "name: '../../etc' is not a valid schedule name",
    "mars": "timezone: unknown time zone 'Mars/Base'",
    "gone": "stages: unknown stage 'deleted'",
    "blob": "its spec is not a JSON object",
}


def test_bad_rows_are_listed_invalid_and_never_stop_the_good_ones(proj, run, caplog):
    sql(proj, *BAD_ROWS)
    code, out, err = run("schedule", "list")
    assert code == 0, err
    table = {tuple(ln.split()[:1] + ln.split()[-2:-1]): ln for ln in out.splitlines()[1:] if ln}
    assert "INVALID" not in table[("good", "cli")]
    assert "INVALID" not in table[("nightly", "nbops.yaml")]
    assert "INVALID" in table[("nightly", "cli")]
    for name, words in INVALID.items():
        assert f"invalid: {name} does not run: " in out and words in out, (name, out)
    views = {(v["name"], v["source"]): v for v in api.list_schedules(proj)}
    assert views[("good", "cli")]["next_fire"] and views[("good", "cli")]["invalid"] is None
    assert views[("nightly", "nbops.yaml")]["invalid"] is None
    assert "also defined in nbops.yaml" in views[("nightly", "cli")]["invalid"]
    for name, words in INVALID.items():
        (v,) = [v for (n, _), v in views.items() if n == name]
        assert words in v["invalid"] and v["next_fire"] is None
    listing = server.list_schedules(proj)  # GET /schedules
    assert listing.problem is None and len(listing.schedules) == len(views)
    daemon = Daemon(proj)
    with caplog.at_level("WARNING", logger="nbops.scheduler"):
        daemon._reload(first=True)
        assert set(daemon.core.specs) == {"good", "nightly"}
        daemon.core.tick()
    assert "schedule never is invalid and does not run" in caplog.text
    assert "the saved state of schedule 'good' is damaged" in caplog.text
    skipped = ScheduleStore(proj).history("never")
    assert skipped and "invalid schedule, not run" in (skipped[0].error or "")
    code, out, err = run("schedule", "history", "good")
    assert code == 0, err
    assert "history row" in caplog.text or "damaged" in err
    assert run("schedule", "run", "never")[0] == 2
    for name in ("never", "<row 5>", "blob"):  # a bad row can be removed, even one without name
        code, out, err = run("schedule", "remove", name)
        assert code == 0, err
    assert ScheduleStore(proj).take_requests() == []


# --- a lock held by another process ------------------------------------------------------------
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
db.execute("INSERT INTO requests (schedule, requested) VALUES ('x', 0)")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


@pytest.fixture
def holder(proj: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    monkeypatch.setattr(storemod, "BUSY_TIMEOUT", 1.0)
    procs: list[subprocess.Popen[str]] = []

    def hold(mode: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db_path(proj)), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        procs.append(p)
        return p

    yield hold
    for p in procs:
        if p.poll() is None:
            p.communicate("", timeout=30)


def test_a_locked_database_waits_a_bounded_time_then_names_the_holder(proj, run, holder):
    p = holder("transaction")  # BEGIN EXCLUSIVE (WAL: readers go on, writers wait)
    started = time.monotonic()
    code, out, err = run("schedule", "add", "x", "--cron", "@daily")
    assert code == 2 and time.monotonic() - started < 15
    assert f"the scheduler database {db_path(proj)} stayed locked" in err, err
    assert f"pid {p.pid}: " in err and "Traceback" not in err
    code, out, err = run("schedule", "list")
    assert code == 0 and "good" in out, err
    p.communicate("", timeout=30)
    assert run("schedule", "add", "x", "--cron", "@daily")[0] == 0

    p = holder("exclusive")  # locking_mode=EXCLUSIVE: readers wait too
    code, out, err = run("schedule", "list")
    assert code == 2 and f"pid {p.pid}: " in err and "stayed locked" in err, err
    listing = server.list_schedules(proj)
    assert listing.problem and "stayed locked" in listing.problem


def test_the_daemon_survives_a_lock_and_goes_on_when_it_is_released(proj, holder, caplog):
    daemon = Daemon(proj, poll=0.2)
    thread = threading.Thread(target=daemon.serve)
    with caplog.at_level("INFO", logger="nbops.scheduler"):
        thread.start()
        try:
            _wait("the daemon's first turn", lambda: "nbops scheduler: pid" in caplog.text)
            p = holder("exclusive")
            _wait("the lock to be logged", lambda: "stayed locked" in caplog.text, 30)
            assert thread.is_alive()
            p.communicate("", timeout=30)
            ScheduleStore(proj).request_run("nope")
            _wait("the request to be taken", lambda: "'nope' ignored" in caplog.text, 30)
            _wait("the reload", lambda: "schedules reloaded: the problem is gone" in caplog.text)
        finally:
            daemon.stop()
            thread.join(60)
    assert not thread.is_alive()


def _wait(what: str, check: Callable[[], Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)  # polling a condition with a deadline
    raise AssertionError(f"timed out waiting for {what}")


# --- property: random damage, only NbopsError ---------------------------------------------------
garbage = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.sampled_from(["{", "[]", "null", '{"cursor": null}', '{"queue": [{}]}', "0 0 30 2 *"]),
)
TARGETS = {
    "schedules": ["name", "spec", "created"],
    "history": ["schedule", "status", "fire_time", "run_ids", "attempt", "started", "error"],
    "slots": ["name", "state"],
    "requests": ["schedule", "requested"],
}
damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("scribble"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(
        st.just("swap"),
        st.sampled_from(sorted(TARGETS)).flatmap(
            lambda t: st.tuples(st.just(t), st.sampled_from(TARGETS[t]))
        ),
        garbage,
    ),
    st.tuples(st.just("drop"), st.sampled_from(sorted(TARGETS))),
)


def _apply(path: Path, how: tuple[Any, ...]) -> None:
    if how[0] in ("truncate", "scribble"):
        data = bytearray(path.read_bytes())
        at = int(how[1] * len(data))
        if how[0] == "truncate":
            del data[at:]
        else:
            data[at : at + len(how[2])] = how[2]
        path.write_bytes(bytes(data))
        return
    db = sqlite3.connect(path, isolation_level=None)
    try:
        if how[0] == "drop":
            db.execute(f"DROP TABLE {how[1]}")
        else:
            (table, col), value = how[1], how[2]
            db.execute(f"UPDATE {table} SET {col} = ?", (value,))
    except (sqlite3.Error, UnicodeDecodeError):
        pass  # a NOT NULL or a damaged file (its schema's text scribbled): this one did not apply
    finally:
        db.close()


@pytest.fixture
def pristine(proj: Path, tmp_path: Path) -> Path:
    store = ScheduleStore(proj)
    api.add_schedule(proj, Schedule(name="other", cron="0 4 * * *", retries=2, timeout=60))
    for status in ("ok", "failed", "skipped"):
        store.add_history("good", status=status, fire_time=1.0, run_ids=["r1"])
    Daemon(proj)._reload(first=True)
    store.save_slots({**store.slots(), **Daemon(proj).core.slots})
    store.request_run("good")
    copy = tmp_path / "pristine.db"
    with sqlite3.connect(db_path(proj)) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    return copy


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(damage, min_size=1, max_size=3))
def test_random_damage_gives_only_nbops_errors(proj, pristine, capsys, hows):
    path = db_path(proj)
    for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        extra.unlink(missing_ok=True)
    shutil.copyfile(pristine, path)
    for how in hows:
        _apply(path, how)
    before = snapshot(path) if hows[0][0] == "truncate" else None
    code = cli.main(["schedule", "list"])  # anything but NbopsError would propagate here
    assert code in (0, 2)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    try:
        views = api.list_schedules(proj)
        assert {v["name"] for v in views} >= {"nightly"}
        api.history(proj, "good")
    except NbopsError as exc:
        assert str(path) in exc.message or "nbops.yaml" in exc.message, exc.message
    try:
        daemon = Daemon(proj)
        daemon._reload(first=True)
        daemon._recover()
        daemon.core.tick()
        daemon.core.next_wake()
    except NbopsError as exc:
        assert str(path) in exc.message, exc.message
    listing = server.list_schedules(proj)  # GET /schedules never raises: a list or a problem
    assert listing.schedules or listing.problem
    if before is not None and code == 2:
        assert snapshot(path) == before
    json.dumps(listing.model_dump())
