"""The audit log's second witness in real use: a tracked run's writer process keeps the log's
head in the project's store, so deleting the log and audit.head after runs is found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import nbops_cli

RUN = """
import nbops
with nbops.start_run("audited"):
    nbops.log_metric("accuracy", 0.9)
"""


def test_deleting_log_and_head_after_tracked_runs_is_found(project: Path) -> None:
    for _ in range(2):
        subprocess.run([sys.executable, "-c", RUN], cwd=project, check=True, timeout=180)
    ok = nbops_cli("audit", "--verify", cwd=project)
    assert ok.returncode == 0, ok.stderr
    assert "4 records" in ok.stdout and "the tracking store" in ok.stdout
    (project / ".nbops" / "audit.jsonl").unlink()
    (project / ".nbops" / "audit.head").unlink()
    bad = nbops_cli("audit", "--verify", cwd=project)
    assert bad.returncode == 1
    last = bad.stderr.strip().splitlines()[-1]
    assert "line 1 (record 1): the log ends at record 0 but the store's head" in last
    assert "says record 4 was written last" in last
