"""A notebook that ran to its end ends FINISHED with everything it logged and its snapshot, however
its kernel is shut down: papermill's shutdown_request then SIGTERM, slow atexit handlers (joblib's
process pool, a user's), a bare SIGTERM after the last cell. Real kernels, real papermill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from tests.conftest import REPO, notebook

TRAIN = (
    "%%track -n train\n"
    "from sklearn.datasets import make_classification\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import cross_val_score\n"
    "X, y = make_classification(n_samples=200, random_state=0)\n"
    "C = 1.0\n"
    "score = float(cross_val_score(LogisticRegression(C=C), X, y, cv=3, n_jobs=2).mean())"
)
# registered after nbops' own exit hook, so Python runs it first: longer than Jupyter's grace
SLOW_ATEXIT = "import atexit, time\natexit.register(time.sleep, 8)"


def _runs(db: Path) -> list[dict[str, Any]]:
    if not db.is_file():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        out: list[dict[str, Any]] = []
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return out  # the writer outlives the kernel: it may not have made the schema yet
        for run_id, status in con.execute("SELECT run_uuid, status FROM runs"):
            metrics = dict(
                con.execute(
                    "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run_id,)
                ).fetchall()
            )
            tags = dict(
                con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall()
            )
            out.append({"id": run_id, "status": status, "metrics": metrics, "tags": tags})
        return out
    finally:
        con.close()


def _ended_run(root: Path, timeout: float = 90) -> dict[str, Any]:
    """The project's one run once it has ended (its writer may finish after the kernel)."""
    db = root / ".nbops" / "mlflow.db"
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(db)
        if runs and runs[0]["status"] != "RUNNING" and not _pending_spools(root):
            assert len(runs) == 1, runs
            return runs[0]
        assert time.monotonic() < deadline, f"no ended run in {root}: {runs}"
        time.sleep(0.2)


def _pending_spools(root: Path) -> list[Path]:
    spool = root / ".nbops" / "spool"
    return [d for d in spool.iterdir() if (d / "log.jsonl").exists()] if spool.is_dir() else []


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root), "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("NBOPS_NOTEBOOK", None)
    return env


def test_joblib_notebooks_run_by_papermill_end_finished_with_metrics_and_snapshot(tmp_path):
    """Three at once (a busy machine): one with joblib's pool only, two with a slow atexit too,
    which before the fix ended KILLED every time without the notebook snapshot."""
    cases = {"plain": [], "slow-a": [SLOW_ATEXIT], "slow-b": [SLOW_ATEXIT]}
    procs = {}
    for name, extra in cases.items():
        root = tmp_path / name
        (root / ".nbops").mkdir(parents=True)
        notebook(
            root / "train.ipynb",
            "%load_ext nbops",
            TRAIN,
            "import nbops\nnbops.log_metric('final', score)\nprint('last cell done')",
            *extra,
        )
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "papermill", "train.ipynb", "out.ipynb"],
            cwd=root,
            env=_env(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    for p in procs.values():
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    for name in cases:
        root = tmp_path / name
        run = _ended_run(root)
        assert run["status"] == "FINISHED", (name, run["tags"].get("nbops.end_reason"))
        assert "nbops.end_reason" not in run["tags"]
        assert run["metrics"]["final"] == pytest.approx(run["metrics"]["score"])
        assert run["tags"]["nbops.notebook"] == str(root / "train.ipynb")
        exp_dir = root / ".nbops" / "artifacts" / "train" / run["id"] / "artifacts"
        snap = json.loads((exp_dir / "notebook" / "out.ipynb").read_text())
        # the executed notebook, outputs included
        assert any(
            "last cell done" in "".join(o.get("text", ""))
            for c in snap["cells"]
            for o in c.get("outputs", [])
        )


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    root = tmp_path / "proj"
    (root / ".nbops").mkdir(parents=True)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(root))
    yield root, km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def _execute(kc: Any, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]


def _kernel_pid(km: Any) -> int:
    return int(km.provisioner.process.pid)


def _wait_dead(km: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while km.is_alive():
        assert time.monotonic() < deadline, "the kernel did not die of SIGTERM"
        time.sleep(0.05)


def test_a_kernel_sigtermed_right_after_its_last_cell_ends_finished_with_its_data(kernel):
    root, km, kc = kernel
    _execute(kc, "%load_ext nbops")
    _execute(kc, "import nbops\nfor i in range(1000):\n    nbops.log_metric('v', i, step=i)")
    _execute(kc, "nbops.log_param('n', 1000)")
    os.kill(_kernel_pid(km), signal.SIGTERM)
    _wait_dead(km)
    run = _ended_run(root)
    assert run["status"] == "FINISHED", run["tags"].get("nbops.end_reason")
    con = sqlite3.connect(root / ".nbops" / "mlflow.db")
    try:
        steps = con.execute("SELECT COUNT(DISTINCT step) FROM metrics WHERE key = 'v'").fetchone()
        params = con.execute("SELECT key, value FROM params").fetchall()
    finally:
        con.close()
    assert steps == (1000,) and params == [("n", "1000")]


def test_a_kernel_sigtermed_in_the_middle_of_a_cell_ends_killed_saying_so(kernel):
    root, km, kc = kernel
    _execute(kc, "%load_ext nbops")
    _execute(kc, "import nbops\nnbops.log_metric('before', 1.0)")
    kc.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(120)")
    deadline = time.monotonic() + 60
    while True:  # wait until the cell runs
        msg = kc.get_iopub_msg(timeout=60)
        if msg["msg_type"] == "stream" and "sleeping" in msg["content"]["text"]:
            break
        assert time.monotonic() < deadline
    os.kill(_kernel_pid(km), signal.SIGTERM)
    _wait_dead(km)
    run = _ended_run(root)
    assert run["status"] == "KILLED"
    assert "SIGTERM" in run["tags"]["nbops.end_reason"]
    assert run["metrics"]["before"] == 1.0
