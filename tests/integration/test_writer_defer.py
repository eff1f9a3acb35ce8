"""A run's writer leaves the cores to a busy kernel: started inside a cell, it creates the run
(importing MLflow) only when the kernel is quiet, when someone waits for the store (``run.id``,
``flush``, ``end_run``), or after ``NBOPS_WRITER_DEFER`` s; outside IPython it starts at once.
Each case runs a real IPython shell in a fresh process, whose cells fire IPython's events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PRELUDE = textwrap.dedent(
    """
    import json, time
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    out = {}
    def cell(src):
        r = shell.run_cell(src)
        assert r.success, r
    def created():
        import nbops
        return nbops.active_run().spool.run_info() is not None
    def wait_created(limit):
        t0 = time.monotonic()
        while not created() and time.monotonic() - t0 < limit:
            time.sleep(0.05)
        return created()
    shell.user_ns.update(created=created, wait_created=wait_created)
    cell("%load_ext nbops")
    import nbops
    """
)

# a cell that starts a run and keeps the kernel busy for 5 s (the old writer made it in ~2.5 s)
BUSY = (
    'cell("%track start -e defer\\nimport time\\nt0 = time.monotonic()\\n'
    "while time.monotonic() - t0 < 5: sum(range(10000))\\n"
    '_created_busy = created()")\n'
    'out["created_while_busy"] = shell.user_ns["_created_busy"]\n'
)


def _run(project: Path, body: str, env: dict[str, str] | None = None) -> dict[str, object]:
    full_env = {**os.environ, **(env or {})}
    if env is None:
        full_env.pop("NBOPS_WRITER_DEFER", None)
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + body + "\nprint(json.dumps(out))"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=project,
        env=full_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_run_started_in_a_busy_cell_is_created_once_the_kernel_is_quiet(
    project: Path,
) -> None:
    out = _run(
        project,
        BUSY
        + textwrap.dedent(
            """
    out["created_after"] = wait_created(120)  # idle now: no flush, no run.id
    import nbops
    out["ended"] = nbops.end_run()
    """
        ),
    )
    assert out == {"created_while_busy": False, "created_after": True, "ended": True}


def test_run_id_in_a_busy_cell_does_not_wait_for_the_kernel_to_be_quiet(project: Path) -> None:
    out = _run(
        project,
        textwrap.dedent(
            """
    cell("%track start -e defer-id\\nimport nbops\\n_rid = nbops.active_run().id")
    out["id"] = shell.user_ns["_rid"]
    out["ended"] = nbops.end_run()
    """
        ),
    )
    assert isinstance(out["id"], str) and len(out["id"]) == 32 and out["ended"] is True


@pytest.mark.parametrize("defer", ["0", "0.5"])
def test_nbops_writer_defer_bounds_the_wait(project: Path, defer: str) -> None:
    out = _run(
        project,
        textwrap.dedent(
            """
    cell("%track start -e defer-env\\n_seen = wait_created(120)")
    out["created_while_busy"] = shell.user_ns["_seen"]
    import nbops
    out["ended"] = nbops.end_run()
    """
        ),
        env={"NBOPS_WRITER_DEFER": defer},
    )
    assert out == {"created_while_busy": True, "ended": True}


def test_a_bad_nbops_writer_defer_is_named_when_the_run_starts(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import nbops; nbops.start_run('bad-defer')"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=project,
        env={**os.environ, "NBOPS_WRITER_DEFER": "soon"},
    )
    assert done.returncode != 0
    assert "NBOPS_WRITER_DEFER='soon' is not a number of seconds" in done.stderr
