"""A killed ``nbops run`` (SIGKILL of the runner and its process group, as a crash would do) is
recovered by the next nbops command on the project: its runs end KILLED naming the dead runner,
what they logged is delivered, and ``--resume`` redoes the stages it did not finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nbops.pipeline.state import record_failed
from nbops.tracking import recovery
from tests.conftest import nbops_cli, notebook

YAML = """\
experiment: crash
stages:
  prep:
    notebook: prep.ipynb
    outs: [data.txt]
  slow:
    notebook: slow.ipynb
    deps: [data.txt]
    outs: [slow.txt]
  after:
    notebook: after.ipynb
    deps: [slow.txt]
    outs: [after.txt]
"""


def _project(root: Path) -> None:
    notebook(root / "prep.ipynb", "open('data.txt', 'w').write('1')")
    notebook(
        root / "slow.ipynb",
        # logs, says it started, then waits for the test (at most 2 min: no orphan hangs on)
        "import os, time, nbops\nnbops.log_metric('progress', 0.5)\n"
        "open('started', 'w').write('1')\n"
        "t = time.monotonic()\n"
        "while not os.path.exists('go') and time.monotonic() - t < 120:\n"
        "    time.sleep(0.05)\n"
        "open('slow.txt', 'w').write('2')",
    )
    notebook(root / "after.ipynb", "open('after.txt', 'w').write(open('slow.txt').read())")
    (root / "nbops.yaml").write_text(YAML)


def _wait_for(cond: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _runs(client: Any) -> list[Any]:
    exp = client.get_experiment_by_name("crash")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_killed_run_is_recovered_by_the_next_command_and_resume_redoes_what_it_left(
    project: Path, client: Any
) -> None:
    _project(project)
    with open(project / "run.log", "w") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "nbops", "run"],
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(lambda: (project / "started").exists(), "the slow stage to start")
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its process group: a crash
        runner.wait()

    status = nbops_cli("status", cwd=project)
    assert status.returncode == 0, status.stderr
    assert f"nbops run (pid {runner.pid}" in status.stderr and "was killed" in status.stderr
    assert "slow, after" in status.stderr and "--resume" in status.stderr, status.stderr
    runs = _runs(client)
    by_stage = {r.data.tags.get("nbops.stage", "pipeline"): r for r in runs}
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert by_stage["prep"].info.status == "FINISHED"
    slow = by_stage["slow"]
    assert slow.info.status == "KILLED"
    assert f"nbops run (pid {runner.pid}" in slow.data.tags["nbops.end_reason"]
    assert slow.data.metrics["progress"] == 0.5  # what it logged before the kill is there
    assert slow.data.tags["mlflow.parentRunId"] == by_stage["pipeline"].info.run_id
    assert by_stage["pipeline"].info.status == "KILLED"
    assert "after" not in by_stage  # it never started
    assert "stale" in status.stdout and "slow" in status.stdout

    (project / "go").write_text("1")
    resumed = nbops_cli("run", "--resume", cwd=project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = resumed.stdout
    assert "was killed" not in resumed.stderr  # recovered once, by `nbops status`
    assert "prep" in out and "up to date" in out.split("slow")[0], out  # not redone
    done = [
        ln.split("]", 1)[1].split()[0]
        for ln in out.splitlines()
        if ln.startswith("[") and " done " in ln
    ]
    # a row's run id may come on a later line of its own, with its state again: count rows
    assert list(dict.fromkeys(done)) == ["slow", "after"], out
    assert (project / "after.txt").read_text() == "2"
    runs = _runs(client)
    assert sum(r.data.tags.get("nbops.stage") == "prep" for r in runs) == 1
    assert {r.info.status for r in runs if r.data.tags.get("nbops.stage") == "slow"} == {
        "KILLED",
        "FINISHED",
    }
    again = nbops_cli("run", "--resume", cwd=project)
    assert again.returncode == 0 and "nothing failed or was skipped" in again.stdout, again.stdout


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _record(state: Path, pid: int, start: str | None, stages: list[str], done: list[str]) -> Path:
    rec = recovery.ExecutionRecord(state, stages)
    rec.path = rec.path.with_name(f"{pid}.json")
    rec.data.update(pid=pid, start=start)
    for s in done:
        rec.finished(s)
    rec.save()
    return rec.path


def test_only_dead_executions_are_recovered_and_a_reused_pid_counts_as_dead(
    project: Path,
) -> None:
    from nbops.pipeline.state import State

    state = project / ".nbops"
    alive = _record(state, os.getpid(), recovery.process_start(os.getpid()), ["a", "b"], [])
    dead = _record(state, _dead_pid(), "123", ["a", "b", "c"], ["a"])
    # this process' pid, but another start time: the pid was reused, the runner is gone
    reused = alive.with_name("1.json")
    reused.write_text(json.dumps({**json.loads(alive.read_text()), "pid": 1, "start": "0"}))
    (state / "pipeline" / "executions" / "9.json").write_text("[not json")
    found = recovery.recover_executions(state, record_unfinished=record_failed)
    assert sorted(d.unfinished for d in found) == [["a", "b"], ["b", "c"]]
    assert alive.exists() and not dead.exists() and not reused.exists()
    assert (state / "pipeline" / "executions" / "9.json.unreadable").exists()
    failed = State(state).failed
    assert set(failed) == {"a", "b", "c"} and "was killed before this stage" in failed["c"]
    assert (
        recovery.recover_executions(state, record_unfinished=record_failed) == []
    )  # recovered once


def test_the_stages_a_dead_execution_left_go_to_the_recorder_the_caller_passes(
    project: Path,
) -> None:
    state = project / ".nbops"
    _record(state, _dead_pid(), "123", ["a", "b", "c"], ["a"])
    recorded: list[tuple[Path, list[str], str]] = []
    found = recovery.recover_executions(
        state, record_unfinished=lambda st, stages, why: recorded.append((st, stages, why))
    )
    assert [d.unfinished for d in found] == [["b", "c"]]
    assert [(st, stages) for st, stages, _ in recorded] == [(state, ["b", "c"])]
    assert "was killed before this stage finished" in recorded[0][2]
    # tracking wrote nothing of the pipeline's own: the recorder is the caller's
    assert not (state / "pipeline" / "state.json").exists()


def test_a_dead_execution_with_its_store_unreachable_is_ended_in_its_spool_for_sync(
    project: Path,
) -> None:
    """The store cannot be reached: the runs are ended KILLED in their spools (so `nbops sync`
    delivers them so), tried once, and the stages are still recorded for --resume."""
    from nbops.pipeline.state import State
    from nbops.tracking.spool import Spool, spool_root

    script = (
        "import os\nfrom pathlib import Path\nfrom nbops.tracking.run import Run\n"
        "from nbops.tracking.recovery import ExecutionRecord\n"
        "root = Path(os.environ['NBOPS_PROJECT_ROOT'])\n"
        "kw = dict(root=root, uri='http://127.0.0.1:9', capture=False, spawn_writer=False)\n"
        "top = Run('e', 'pipeline', **kw)\nstage = Run('e', 'train', **kw)\n"
        "stage.log_metric('loss', 0.25)\n"
        "rec = ExecutionRecord(root / '.nbops', ['prep', 'train'])\nrec.finished('prep')\n"
        "rec.add_run(top.local_id, None, 'pipeline')\n"
        "rec.add_run(stage.local_id, top.local_id, 'train')\nrec.save()\n"
        "print(os.getpid(), top.local_id, stage.local_id)\nos._exit(9)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    pid, *spools = child.stdout.split()
    (dead,) = recovery.recover_executions(project / ".nbops", record_unfinished=record_failed)
    assert dead.pid == int(pid) and dead.unfinished == ["train"] and dead.error
    assert [o.status for o in dead.runs] == ["unreachable", "unreachable"]
    assert dead.runs[1].message == "not tried"  # one wait for a dead store, not one per run
    for local_id in spools:
        sp = Spool(spool_root(project / ".nbops") / local_id)
        recs = [r.encode() for _, r in sp.records_from(0)]
        assert recs[-1][:2] == ["end", "KILLED"]
        assert recs[-2] == ["t", "nbops.end_reason", dead.reason]
    assert "was killed before this stage finished" in State(project / ".nbops").failed["train"]


def test_nbops_sync_recovers_a_dead_execution_for_resume(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbops import cli
    from nbops.pipeline.state import State

    pid = _dead_pid()
    _record(project / ".nbops", pid, "123", ["a", "b"], ["a"])
    assert cli.main(["sync"]) == 0
    said = capsys.readouterr().out
    assert f"nbops run (pid {pid}" in said and "stages it did not finish: b" in said, said
    assert "nothing to deliver" not in said
    assert set(State(project / ".nbops").failed) == {"b"}
