"""When ``nbops run`` returns, what its stages logged is in the store (models included, on a
busy machine), or it says which runs still hold what, and exits 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import nbops_cli, notebook, store_uri

SWEEP = """\
experiment: deliver
stages:
  train:
    notebook: train.ipynb
    sweep: {C: [0.5, 2.0]}
"""


@pytest.fixture
def burners() -> Iterator[None]:
    """A core kept busy by a plain Python loop while the test runs (with the sweep's two
    kernels and the runner, more work than the machine's two cores: a busy machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(1)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_every_model_is_in_the_store_when_nbops_run_returns_on_a_busy_machine(
    project: Path, client: Any, burners: None
) -> None:
    from nbops.mlflow.store import open_store
    from nbops.ops.registry import model_artifact

    notebook(
        project / "train.ipynb",
        ("C = 1.0", ["parameters"]),
        "import nbops\nfrom sklearn.linear_model import LogisticRegression\n"
        "model = LogisticRegression(C=C).fit([[0], [1], [0], [1]], [0, 1, 0, 1])\n"
        "nbops.log_metric('acc', model.score([[0], [1]], [0, 1]))\n"
        "nbops.log_model(model, 'model')",
    )
    (project / "nbops.yaml").write_text(SWEEP)
    store = open_store(store_uri(project))
    # both points' kernels at once, plus the burners
    out = nbops_cli("run", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    exp = client.get_experiment_by_name("deliver")
    points = client.search_runs([exp.experiment_id], "tags.`nbops.sweep_point` LIKE 'train[%'")
    assert len(points) == 2
    for run in points:  # what `nbops promote RUN` looks up, right after nbops run
        assert run.info.status == "FINISHED"
        assert model_artifact(store, run) == "model"
        files = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
        assert "model/MLmodel" in files, files
        assert run.data.metrics["acc"] == 1.0


def test_a_store_busy_past_the_flush_timeout_is_named_and_exit_is_1(
    project: Path, client: Any
) -> None:
    notebook(
        project / "nb.ipynb",
        "import nbops\nnbops.log_metric('m', 3.0)\nopen('out.txt', 'w').write('x')\n"
        "nbops.log_artifact('out.txt', 'results')",
    )
    (project / "nbops.yaml").write_text("experiment: busy\nstages:\n  s:\n    notebook: nb.ipynb\n")
    client.search_experiments()  # the store's schema exists; now another process locks it
    db = sqlite3.connect(project / ".nbops" / "mlflow.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        env = dict(os.environ, NBOPS_FLUSH_TIMEOUT="3")
        out = nbops_cli("run", cwd=project, env=env)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert out.returncode == 1, out.stdout + out.stderr
    err = out.stderr
    assert "Traceback" not in err
    assert "run(s) are not all in the store" in err and "nbops sync" in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("  s (")]
    assert "1 metric values" in line and "artifacts results" in line and "end of the run" in line
    assert "s" in out.stdout and "done" in out.stdout  # the stage itself ran
    synced = nbops_cli("sync", cwd=project)  # nothing was lost: sync delivers it
    assert synced.returncode == 0, synced.stdout + synced.stderr
    exp = client.get_experiment_by_name("busy")
    (run,) = client.search_runs([exp.experiment_id], "tags.`nbops.stage` = 's'")
    assert run.data.metrics["m"] == 3.0 and run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "results")] == [
        "results/out.txt"
    ]
