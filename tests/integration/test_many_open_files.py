"""A process that holds more than 1024 files (a long-lived kernel, a Jupyter server, a test
session) still tracks runs: waiting for the writer must not use ``select.select``, which refuses
descriptors at or above FD_SETSIZE with ``ValueError: filedescriptor out of range``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import store_uri

SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    import nbops
    nbops.start_run("many-files")
    for i in range(50):
        nbops.log_metric("m", i * 1.0, step=i)
    ok = nbops.end_run()
    print(json.dumps({"ok": ok, "highest": max(held)}))
    """
)


def test_a_process_holding_over_1024_files_ends_its_run_delivered(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=project
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["highest"] >= 1100  # the run's own pipes are numbered above FD_SETSIZE
    assert out["ok"] is True, done.stderr
    import sqlite3

    db = store_uri(project).removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        (status,) = con.execute("SELECT status FROM runs").fetchone()
        (n,) = con.execute("SELECT COUNT(*) FROM metrics WHERE key = 'm'").fetchone()
    assert (status, n) == ("FINISHED", 50)
