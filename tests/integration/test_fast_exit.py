"""A tracked notebook ends fast: its kernel appends the end and lets go, and the writer (in its own
session) finishes the run after the kernel is gone; end_run of a delivered run returns when the
writer says the run is done, not after a poll interval or the writer's exit. Real kernels, real
papermill, real SQLite stores; every wait is a poll with a deadline."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from tests.conftest import REPO, notebook, writer_pids

N = 300


def _store(root: Path) -> Path:
    return root / ".nbops" / "mlflow.db"


def _runs(root: Path) -> list[dict[str, Any]]:
    db = _store(root)
    if not db.is_file():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return []  # the writer is still creating the store's schema
        out = []
        for run_id, status, exp in con.execute("SELECT run_uuid, status, experiment_id FROM runs"):
            steps = con.execute(
                "SELECT COUNT(DISTINCT step) FROM metrics WHERE run_uuid = ? AND key = 'v'",
                (run_id,),
            ).fetchone()[0]
            tags = dict(
                con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall()
            )
            out.append({"id": run_id, "status": status, "exp": exp, "steps": steps, "tags": tags})
        return out
    finally:
        con.close()


def _pending(root: Path) -> list[Path]:
    spool = root / ".nbops" / "spool"
    return [d for d in spool.iterdir() if (d / "log.jsonl").exists()] if spool.is_dir() else []


def _ended_run(root: Path, timeout: float = 90) -> dict[str, Any]:
    """The project's one run once it has ended and its spool is delivered (polled)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(root)
        if runs and runs[0]["status"] != "RUNNING" and not _pending(root):
            assert len(runs) == 1, runs
            return runs[0]
        assert time.monotonic() < deadline, f"no ended run in {root}: {runs}"
        time.sleep(0.1)


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root), "PYTHONPATH": str(REPO)}
    for name in ("MLFLOW_TRACKING_URI", "NBOPS_NOTEBOOK", "NBOPS_EXIT_GRACE"):
        env.pop(name, None)
    return env


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NBOPS_EXIT_GRACE", raising=False)
    yield root
    for pid in writer_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def kernel(root: Path) -> Iterator[tuple[Path, Any, Any]]:
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root), env=_env(root))
    yield root, km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def _execute(kc: Any, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]


def _log_cells(kc: Any) -> None:
    _execute(kc, "%load_ext nbops")
    _execute(kc, "%track start -e fast")
    _execute(kc, f"import nbops\nfor i in range({N}):\n    nbops.log_metric('v', i, step=i)")


def _wait_dead(km: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while km.is_alive():
        assert time.monotonic() < deadline, "the kernel did not die"
        time.sleep(0.02)


def test_papermill_returns_and_the_writer_then_finishes_the_run_with_its_metrics_and_snapshot(
    root: Path,
) -> None:
    notebook(
        root / "train.ipynb",
        "%load_ext nbops",
        "%track start -e fast",
        f"import nbops\nfor i in range({N}):\n    nbops.log_metric('v', i, step=i)",
        "print('last cell done')",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", "train.ipynb", "out.ipynb"],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _ended_run(root)
    assert run["status"] == "FINISHED", run["tags"].get("nbops.end_reason")
    assert run["steps"] == N
    snap = root / ".nbops" / "artifacts" / "fast" / run["id"] / "artifacts" / "notebook"
    cells = json.loads((snap / "out.ipynb").read_text())["cells"]
    assert any("last cell done" in "".join(o.get("text", "")) for o in cells[-1]["outputs"])
    spool = root / ".nbops" / "spool"
    assert not spool.exists() or not list(spool.iterdir())  # the writer tidied up after itself


def test_a_kernel_sigkilled_right_after_its_shutdown_request_still_ends_finished_with_all(
    kernel: tuple[Path, Any, Any],
) -> None:
    """The kernel appends the end when it is told to go and lets go at once: killed right then,
    the writer outlives it and delivers everything, the end included."""
    root, km, kc = kernel
    _log_cells(kc)
    msg_id = kc.shutdown()
    while True:  # the reply comes after nbops' hand-off (it wraps do_shutdown)
        reply = kc.control_channel.get_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    os.kill(int(km.provisioner.process.pid), signal.SIGKILL)
    _wait_dead(km)
    run = _ended_run(root)
    assert run["status"] == "FINISHED", run["tags"].get("nbops.end_reason")
    assert run["steps"] == N


def test_a_kernel_sigkilled_right_after_its_last_cell_ends_killed_with_everything_delivered(
    kernel: tuple[Path, Any, Any],
) -> None:
    root, km, kc = kernel
    _log_cells(kc)
    os.kill(int(km.provisioner.process.pid), signal.SIGKILL)
    _wait_dead(km)
    run = _ended_run(root)
    assert run["status"] == "KILLED"
    assert "ended without ending the run" in run["tags"]["nbops.end_reason"]
    assert run["steps"] == N


def test_end_run_of_a_delivered_run_returns_on_the_writers_word_not_a_poll_interval(
    root: Path,
) -> None:
    from nbops.tracking.run import FINISHED, Run

    run = Run("fast", "delivered", root=root, capture=False)
    assert run.id  # the store is open and the run exists
    run.log_metric("v", 1.0)
    assert run.flush(60)
    writer = run._writer
    assert writer is not None
    assert run.end(FINISHED, 60)
    # every round of the wait was ended by the writer's event, none by a timeout
    assert run.last_wait.rounds >= 1 and run.last_wait.timed_out == 0, run.last_wait
    assert run.last_wait.woken == run.last_wait.rounds
    assert not run.spool.dir.exists()  # done and tidied on return, not left for later
    (stored,) = _runs(root)
    assert stored["status"] == "FINISHED" and stored["steps"] == 1
    writer.wait(timeout=60)  # it exits by itself, after end() returned


def test_hand_off_waits_for_nothing_and_the_writer_finishes_the_run_alone(root: Path) -> None:
    from nbops.tracking import shutdown
    from nbops.tracking.run import FINISHED, Run

    assert shutdown.GRACE_S == 0.0  # a kernel's exit waits for nothing by default
    run = Run("fast", "handed-off", root=root, capture=False)
    for i in range(N):
        run.log_metric("v", i, step=i)
    run.hand_off(FINISHED, shutdown.GRACE_S)
    assert run.last_wait.rounds == 0  # it never waited for the writer
    assert run.spool.fd is None  # let go of the spool: the writer owns it now
    stored = _ended_run(root)
    assert stored["status"] == "FINISHED" and stored["steps"] == N


def test_hand_off_with_its_writer_dead_starts_one_that_finishes_the_run(root: Path) -> None:
    from nbops.tracking.run import KILLED, Run

    run = Run("fast", "writer-died", root=root, capture=False)
    run.log_metric("v", 1.0)
    writer = run._writer
    assert writer is not None
    writer.kill()
    writer.wait(timeout=30)
    run.hand_off(KILLED, 0.0, reason="the kernel got SIGTERM while cell 3 was running")
    assert run._writer is not writer and run.last_wait.rounds == 0
    stored = _ended_run(root)
    assert stored["status"] == "KILLED" and stored["steps"] == 1
    assert "SIGTERM" in stored["tags"]["nbops.end_reason"]
