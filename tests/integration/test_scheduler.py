"""The real `nbops scheduler` process on a throwaway project: real kernels, a real SQLite MLflow
store. Slow (each execution starts a kernel): few tests, generous deadlines, polling not sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nbops.scheduler import api
from nbops.scheduler.daemon import Daemon
from nbops.scheduler.execution import alive, descendants
from nbops.scheduler.model import Schedule
from nbops.scheduler.store import ScheduleStore
from tests.conftest import nbops_cli, notebook

YAML = """\
experiment: sched
stages:
  tick:
    notebook: tick.ipynb
  slow:
    notebook: slow.ipynb
  broken:
    notebook: broken.ipynb
schedules:
  nightly: {cron: "0 3 * * *", stages: [slow]}
  capped: {cron: "0 5 * * *", stages: [slow], timeout: 8}
  failing:
    cron: "0 4 * * *"
    stages: [broken]
    on_failure: 'env | grep ^NBOPS_ > hook.txt'
"""


@pytest.fixture
def sched(project: Path) -> Path:
    notebook(
        project / "tick.ipynb", ("n = 1", ["parameters"]), "import nbops\nnbops.log_metric('n', n)"
    )
    notebook(
        project / "slow.ipynb", "import nbops, time\nnbops.log_metric('x', 1)\ntime.sleep(600)"
    )
    notebook(project / "broken.ipynb", "1 / 0")
    (project / "nbops.yaml").write_text(YAML)
    return project


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)  # polling a condition with a deadline, not synchronisation by sleep
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def daemons(sched: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbops", "scheduler"],
            cwd=sched,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            tree = descendants(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                for pid in [proc.pid, *tree]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=150)
    return proc.returncode, err


def scheduled_runs(client: Any, name: str) -> list[Any]:
    exp = client.get_experiment_by_name("sched")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`nbops.schedule` = '{name}'")


def test_the_daemon_runs_a_schedule_tags_its_runs_and_a_restart_duplicates_nothing(
    sched, daemons, client
):
    api.add_schedule(
        sched, Schedule(name="every10", cron="*/10 * * * * *", stages=["tick"], catchup="latest")
    )
    store = ScheduleStore(sched)

    def executed(status: str = "ok") -> list[Any]:
        return [r for r in store.history("every10", limit=100) if r.status == status]

    first = daemons()
    row = wait_for("a first ok execution", lambda: executed() and executed()[-1])
    assert row.reason in ("cron", "catchup") and row.duration and row.pipeline_run_id
    code, err = stop(first)
    assert code == 0, err
    assert "nbops scheduler: stopped" in err

    ok_before = {r.id for r in executed()}
    second = daemons()
    wait_for(
        "an ok execution by the restarted daemon",
        lambda: {r.id for r in executed()} - ok_before,
    )
    code, err = stop(second)
    assert code == 0, err

    rows = [r for r in store.history("every10", limit=100) if r.status != "skipped"]
    fires = [r.fire_time for r in rows]
    assert len(fires) == len(set(fires)), f"a fire time ran twice: {sorted(fires)}"
    assert not [r for r in rows if r.status == "running"]
    runs = scheduled_runs(client, "every10")
    by_id = {r.info.run_id: r for r in runs}
    for r in executed():
        assert r.pipeline_run_id in by_id
        assert set(r.run_ids) <= set(by_id)
        assert by_id[r.run_ids[-1]].data.metrics["n"] == 1
    pipelines = [r for r in runs if r.data.tags.get("nbops.stage") is None]
    assert len(pipelines) == len(rows)  # one pipeline run per execution: none unrecorded
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}


def test_one_bad_stored_schedule_is_skipped_and_the_daemon_fires_the_others(sched, daemons, client):
    """A cron with no fire time, stored past the validation (as an older nbops or a hand edit
    did), plus a bad one in nbops.yaml: the daemon starts, records why it skips them, and fires
    the good schedule on its clock."""
    import sqlite3

    (sched / "nbops.yaml").write_text(YAML + '  feb31: {cron: "0 0 31 2 *", stages: [tick]}\n')
    api.add_schedule(
        sched, Schedule(name="every10", cron="*/10 * * * * *", stages=["tick"], params={"n": 7})
    )
    db = sqlite3.connect(sched / ".nbops" / "scheduler" / "scheduler.db", isolation_level=None)
    db.execute(
        "INSERT INTO schedules VALUES ('feb30', json_object('name', 'feb30', 'cron', "
        "'0 0 30 2 *', 'stages', json_array('tick')), 0)"
    )
    db.close()
    store = ScheduleStore(sched)
    daemon = daemons()
    (ok, *_) = wait_for(
        "an ok execution of the good schedule",
        lambda: [r for r in store.history("every10", limit=50) if r.status == "ok"],
    )
    runs = {r.info.run_id: r for r in scheduled_runs(client, "every10")}
    assert runs[ok.run_ids[-1]].data.metrics["n"] == 7  # the schedule's param reached it
    for name, words in (("feb30", "'0 0 30 2 *' never fires"), ("feb31", "nbops.yaml:")):
        (row,) = store.history(name)
        assert row.status == "skipped" and "invalid schedule, not run" in (row.error or "")
        assert words in (row.error or ""), row.error
    listing = nbops_cli("schedule", "list", cwd=sched, timeout=60)
    assert listing.returncode == 0 and "invalid: feb30 does not run" in listing.stdout
    code, err = stop(daemon)
    assert code == 0, err
    assert "schedule feb30 is invalid and does not run" in err


def test_sigterm_mid_run_leaves_no_kernel_and_no_running_run_and_a_second_daemon_exits_2(
    sched, daemons, client
):
    store = ScheduleStore(sched)
    daemon = daemons()
    wait_for("the daemon's heartbeat", lambda: (sched / ".nbops/scheduler/daemon.json").exists())

    second = nbops_cli("scheduler", cwd=sched, timeout=60)
    assert second.returncode == 2
    assert f"already running for {sched} (pid {daemon.pid})" in second.stderr

    queued = nbops_cli("schedule", "run", "nightly", cwd=sched, timeout=60)
    assert queued.returncode == 0 and "queued" in queued.stdout, queued.stderr
    wait_for(
        "the slow stage's run to be RUNNING in its kernel",
        lambda: [r for r in scheduled_runs(client, "nightly") if "x" in r.data.metrics],
    )
    tree = descendants(daemon.pid)
    # kernels are ipykernel processes, or forks of nbops' kernel zygote
    kernels = [p for p in tree if "ipykernel" in _cmdline(p) or "zygote" in _cmdline(p)]
    assert kernels, f"no kernel under the daemon: {[_cmdline(p) for p in tree]}"

    code, err = stop(daemon)
    assert code == 0, err
    assert not [p for p in tree if alive(p) and not _zombie(p)], "processes left behind"
    (row,) = store.history("nightly")
    assert row.status == "killed" and row.pid and row.run_ids
    runs = scheduled_runs(client, "nightly")
    assert runs and {r.info.status for r in runs} == {"KILLED"}


def test_run_now_without_a_daemon_runs_detached_and_a_failure_runs_the_hook(sched, client):
    started = api.run_now(sched, "failing")
    assert started["queued"] is False and started["pid"]
    store = ScheduleStore(sched)
    wait_for("the hook's output", lambda: (sched / "hook.txt").is_file())
    (row,) = store.history("failing")
    assert row.status == "failed" and row.reason == "manual"
    assert "ZeroDivisionError" in (row.error or "")
    hook = dict(
        line.split("=", 1) for line in (sched / "hook.txt").read_text().splitlines() if "=" in line
    )
    assert hook["NBOPS_SCHEDULE"] == "failing"
    assert hook["NBOPS_HISTORY_ID"] == str(row.id)
    assert hook["NBOPS_RUN_ID"] in row.run_ids
    assert "ZeroDivisionError" in hook["NBOPS_ERROR"]
    runs = scheduled_runs(client, "failing")
    (failed,) = [r for r in runs if r.info.run_id == hook["NBOPS_RUN_ID"]]
    assert failed.info.status == "FAILED"


def test_a_failure_is_retried_with_backoff_then_the_hook_runs_once(sched):
    api.add_schedule(
        sched,
        Schedule(
            name="flaky",
            cron="0 4 * * *",
            stages=["broken"],
            retries=1,
            on_failure="echo $NBOPS_HISTORY_ID >> hooks.txt",
        ),
    )
    daemon = Daemon(sched, poll=0.2)
    daemon.core.backoff_base = 0.5
    thread = threading.Thread(target=daemon.serve)
    thread.start()
    try:
        store = ScheduleStore(sched)
        store.request_run("flaky")
        wait_for("the hook after the retry", lambda: (sched / "hooks.txt").is_file())
    finally:
        daemon.stop()
        thread.join(180)
    rows = sorted(store.history("flaky"), key=lambda r: r.id)
    assert [(r.reason, r.attempt, r.status) for r in rows] == [
        ("manual", 0, "failed"),
        ("retry", 1, "failed"),
    ]
    assert rows[1].started - rows[0].ended >= 0.5  # the back-off
    assert (sched / "hooks.txt").read_text().split() == [str(rows[1].id)]


def test_a_daemon_killed_mid_run_is_cleaned_up_by_the_next_one(sched, daemons, client):
    store = ScheduleStore(sched)
    first = daemons()
    wait_for("the daemon's heartbeat", lambda: api.daemon_status(sched)["alive"])
    assert nbops_cli("schedule", "run", "nightly", cwd=sched, timeout=60).returncode == 0
    wait_for(
        "the slow stage's run",
        lambda: [r for r in scheduled_runs(client, "nightly") if "x" in r.data.metrics],
    )
    orphans = descendants(first.pid)
    os.kill(first.pid, signal.SIGKILL)  # a crash: its runner and kernels live on
    first.wait(30)
    assert any(alive(p) for p in orphans)
    second = daemons()
    wait_for(
        "the lost execution to be recorded", lambda: store.history("nightly")[0].status == "lost"
    )
    wait_for("the orphans to end", lambda: not [p for p in orphans if alive(p) and not _zombie(p)])
    assert {r.info.status for r in scheduled_runs(client, "nightly")} == {"KILLED"}
    code, err = stop(second)
    assert code == 0, err


def test_a_timeout_stops_the_kernel_and_marks_the_run_failed(sched, client):
    out = nbops_cli("schedule", "run", "capped", cwd=sched, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    (row,) = ScheduleStore(sched).history("capped")
    assert row.status == "timeout" and row.run_ids
    assert row.duration is not None and 8 <= row.duration < 120
    runs = scheduled_runs(client, "capped")
    stage_runs = [r for r in runs if r.data.tags.get("nbops.stage") == "slow"]
    assert stage_runs and all(r.info.status == "FAILED" for r in stage_runs)
    reasons = {r.data.tags.get("nbops.end_reason") or "" for r in stage_runs}
    assert all(reason.startswith("timeout") for reason in reasons), reasons


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
