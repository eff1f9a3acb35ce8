"""No foreign noise (issue 13, item 2): on a fresh store, nbops' commands print nbops' own lines
only: no MLflow INFO lines (``Creating initial MLflow database tables...``), no ``Downloading
artifacts`` bars, no library warnings; ``--verbose`` (before or after the command) brings them
back (README "### CLI", ``NBOPS_VERBOSE``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import execute, nbops_cli, notebook, outputs_text

# what other programs print: MLflow's and uvicorn's log lines, tqdm bars, Python warnings
FOREIGN = re.compile(
    r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING|DEBUG)"
    r"|INFO mlflow|alembic|Downloading artifacts|Uploading artifacts|it/s\]|\d+%\|"
    r"|Warning:|DeprecationWarning|\[MLflow\]|Registry store URI|Traceback"
)


def foreign(*texts: str) -> list[str]:
    return [line for t in texts for line in t.splitlines() if FOREIGN.search(line)]


def _quiet(*args: str, cwd: Path) -> str:
    out = nbops_cli(*args, cwd=cwd)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    assert not foreign(out.stdout, out.stderr), (args, foreign(out.stdout, out.stderr))
    return out.stdout


def test_a_fresh_store_is_created_without_mlflow_lines_unless_verbose(tmp_path: Path) -> None:
    quiet, loud = tmp_path / "quiet", tmp_path / "loud"
    for root in (quiet, loud):
        (root / ".nbops").mkdir(parents=True)
    env_q = _env(quiet)
    out = nbops_cli("sync", cwd=quiet, env=env_q)  # opens the store: creates its schema
    assert out.returncode == 0 and (quiet / ".nbops" / "mlflow.db").is_file(), out.stderr
    assert not foreign(out.stdout, out.stderr), out.stderr
    assert out.stdout == "nbops sync: nothing to deliver\n"
    out = nbops_cli("--verbose", "sync", cwd=loud, env=_env(loud))
    assert out.returncode == 0, out.stderr
    assert "Creating initial MLflow database tables" in out.stderr


def test_a_pipeline_on_a_fresh_store_and_every_command_on_its_run_print_only_nbops_lines(
    project: Path,
) -> None:
    """One real run: the sink's process creates the store (its INFO lines once appeared in the
    live table), checkout and verify download artifacts (their bars once appeared); `-v` after
    the command and `--verbose` before it show MLflow's bar again."""
    notebook(
        project / "make.ipynb",
        ("n = 3", ["parameters"]),
        "from pathlib import Path\nimport nbops\n"
        "Path('out').mkdir(exist_ok=True)\nPath('out/result.txt').write_text(str(n * 2))\n"
        "nbops.log_metric('double', n * 2)",
    )
    (project / "nbops.yaml").write_text(
        "experiment: quiet\nstages:\n  make:\n    notebook: make.ipynb\n    outs: [out]\n"
    )
    assert not (project / ".nbops" / "mlflow.db").exists()
    table = _quiet("run", cwd=project)
    assert "make" in table and "done" in table
    runs = json.loads(_quiet("runs", "--json", cwd=project))
    run = next(r["run_id"] for r in runs if r["name"] == "make")
    (project / "out" / "result.txt").unlink()
    assert "restored out" in _quiet("checkout", run, cwd=project)
    assert (project / "out" / "result.txt").read_text() == "6"
    for cmd in (["status"], ["show", run], ["lineage", run], ["audit"], ["sync"]):
        _quiet(*cmd, cwd=project)
    assert "reproduced" in _quiet("verify", run, cwd=project)
    for verbose in (["checkout", run, "-v"], ["--verbose", "checkout", run]):
        out = nbops_cli(*verbose, cwd=project)
        assert out.returncode == 0 and "Downloading artifacts" in out.stderr, (verbose, out)


def test_the_kernel_prints_no_mlflow_lines_on_a_fresh_store(project: Path) -> None:
    """`%load_ext nbops`, the first `%track` and `nbops.runs()` in a user's kernel: the
    kernel opens the fresh store itself (nbops.runs) and its writer delivers the run."""
    nb = notebook(
        project / "user.ipynb",
        "import nbops\nprint(len(nbops.runs()))",
        "%load_ext nbops",
        "%track start -e quiet -n first",
        "x = 2\n%track metric x",
        "%track stop",
        "print(list(nbops.runs('quiet')['name']))",
    )
    done = execute(nb)
    text = "".join(outputs_text(c) for c in done.cells)
    assert not foreign(text), foreign(text)
    assert "['first']" in outputs_text(done.cells[-1])


def _env(root: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["NBOPS_PROJECT_ROOT"] = str(root)
    env.pop("NBOPS_VERBOSE", None)
    return env
