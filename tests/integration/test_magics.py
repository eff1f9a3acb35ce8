"""%track / %%track in real kernels, executed the way users run notebooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, execute, notebook, outputs_text


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return client.search_runs([exp.experiment_id])


def test_track_cell_logs_params_metrics_figure_source_and_duration(project, client):
    nb = notebook(
        project / "train.ipynb",
        ("alpha = 0.5", ["parameters"]),
        "%load_ext nbops",
        "%track start -e magic -n first -t team=vision -t owner=ana",
        "%%track -n fit\nlr = 0.1\nkind = 'rf'\nimport math\nacc = math.sqrt(0.81)\n"
        "n_rows = len([1, 2, 3])\nlabel = ' '.join(['computed', 'text'])\n"
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nacc",
        "%track status",
        "%track stop",
    )
    out = execute(nb)
    cell = outputs_text(out.cells[3])
    assert "0.9" in cell  # the cell's value is still displayed
    assert "nbops: cell fit logged params lr, kind; metrics acc; 1 figure" in cell
    status = outputs_text(out.cells[4])
    assert "experiment   magic" in status and "metric values" in status
    assert "ended (FINISHED)" in outputs_text(out.cells[5])
    (run,) = _runs(client, "magic")
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.params == {"lr": "0.1", "kind": "rf"}
    assert run.data.metrics["acc"] == 0.9  # a computed number named like a score
    assert "n_rows" not in run.data.metrics  # a dataset size is not a metric
    assert "label" not in run.data.metrics
    assert run.data.metrics["cells/fit/duration_s"] > 0
    assert run.data.tags["team"] == "vision" and run.data.tags["owner"] == "ana"
    files = {a.path for a in client.list_artifacts(run.info.run_id, "cells/fit")}
    assert files == {"cells/fit/source.py", "cells/fit/figure-1.png"}
    png = client.download_artifacts(run.info.run_id, "cells/fit/figure-1.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_notebook_path_parameters_and_the_executed_snapshot_under_papermill(project, client):
    nb = notebook(
        project / "sweep_me.ipynb",
        ("C = 1.0\nseed = 0", ["parameters"]),
        "%load_ext nbops",
        "%track start",
        "print('this cell ran with C =', C)",
        "%track stop",
    )
    (project / "elsewhere").mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            "sweep_me.ipynb",
            "out.ipynb",  # relative to papermill's directory, not the kernel's (--cwd)
            "--cwd",
            "elsewhere",
            "-p",
            "C",
            "10.0",
            "--inject-paths",
            "--no-progress-bar",
        ],
        cwd=project,
        env={**os.environ, "PWD": str(project)},  # as a shell in the project starts it
        check=True,
        capture_output=True,
        timeout=180,
    )
    (run,) = _runs(client, "sweep_me")  # experiment defaults to the notebook's name
    assert run.data.params == {"C": "10.0", "seed": "0"}
    assert run.data.tags["nbops.notebook"] == str(nb)
    assert run.data.tags["mlflow.source.type"] == "NOTEBOOK"
    snap = [a.path for a in client.list_artifacts(run.info.run_id, "notebook")]
    assert snap == ["notebook/out.ipynb"]  # what ran: papermill's output, not the input
    executed = json.loads(
        Path(client.download_artifacts(run.info.run_id, "notebook/out.ipynb")).read_text()
    )
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in code)
    printed = [o for c in code for o in c["outputs"] if o.get("name") == "stdout"]
    assert any("this cell ran with C = 10.0" in "".join(o["text"]) for o in printed)
    assert all(c["execution_count"] for c in code[:4])  # every cell before %track stop ran


def test_the_jupyter_session_names_the_notebook(project, client, monkeypatch):
    nb = notebook(project / "in_lab.ipynb", "%load_ext nbops", "%track start", "%track stop")
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))  # what jupyter_server gives a kernel
    execute(nb)
    (run,) = _runs(client, "in_lab")
    assert run.data.tags["mlflow.source.name"] == str(nb)


def test_first_track_starts_a_run_and_line_forms_log_values(project, client):
    (project / "d.csv").write_text("x,y\n1,2\n")
    (project / "w.bin").write_bytes(b"\0" * 10)
    nb = notebook(
        project / "lines.ipynb",
        "%load_ext nbops",
        "lr = 0.01\nepochs = 3\nacc = 0.75",
        "%track param lr epochs",
        "%track metric acc --step 2",
        "%track artifact w.bin --path weights",
        "%track data d.csv --role output",
        "%track stop --status killed",
    )
    out = execute(nb)
    started = outputs_text(out.cells[2])
    assert "nbops: no run was active: started run 'ipython-" in started
    assert "in experiment 'Default' (no notebook path: a kernel without a Jupyter session" in (
        started
    )
    assert "name one with %track start -e NAME" in started
    assert "1 rows x 2 cols" in outputs_text(out.cells[5])
    (run,) = _runs(client, "Default")
    assert run.info.status == "KILLED"
    assert run.info.run_name in started  # the name said is the run's, not a random one
    assert run.data.params == {"lr": "0.01", "epochs": "3"}
    hist = client.get_metric_history(run.info.run_id, "acc")
    assert [(m.step, m.value) for m in hist] == [(2, 0.75)]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "weights")] == ["weights/w.bin"]
    assert "nbops.data.output.d.csv" in run.data.tags


def test_an_error_in_a_tracked_cell_propagates_unchanged_after_logging(project, client):
    nb = notebook(
        project / "err.ipynb",
        "%load_ext nbops",
        "%%track -n boom\nlr = 0.3\nscore = 0.5 * 2\nraise ValueError('user bug 42')",
        "%track stop",
    )
    out = execute(nb, allow_errors=True)
    errors = [o for o in out.cells[1].outputs if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [("ValueError", "user bug 42")]
    tb = "\n".join(errors[0].traceback)
    assert "magics.py" not in tb  # nbops' frames are hidden from the user's traceback
    (run,) = _runs(client, "Default")
    assert run.data.params == {"lr": "0.3"} and run.data.metrics["score"] == 1.0
    assert "cells/boom/duration_s" in run.data.metrics


def test_misused_magics_give_a_usage_line_without_traceback(project):
    nb = notebook(
        project / "misuse.ipynb",
        "%load_ext nbops",
        "%track",
        "%track bogus",
        "%track stop",
        "%track metric",
        "%track start --status nope extra",
        "%track stop --status maybe",
        "%%track extra words\nx = 1",
        "%track start -t malformed",
        "%track metric undefined_name",
        "x = float('nan')\n%track metric x",
        "%track data missing.csv",
    )
    out = execute(nb, allow_errors=True)
    for i in range(1, 8):
        text = outputs_text(out.cells[i])  # IPython prints a UsageError on stderr, no traceback
        assert text.startswith("UsageError: "), (i, text)
        assert "usage: " in text and "%track" in text.split("usage: ")[1], (i, text)
        assert "Traceback" not in text
    for i, needle in (
        (8, "'malformed' is not KEY=VALUE"),
        (9, "'undefined_name'"),
        (10, "not finite"),
        (11, "missing.csv"),
    ):
        text = outputs_text(out.cells[i])
        assert needle in text, (i, text)
        assert "Traceback" not in text and "File " not in text, (i, text)


def test_help_comes_from_magic_arguments(project):
    nb = notebook(
        project / "help.ipynb",
        "%load_ext nbops",
        "print(get_ipython().find_magic('track').__doc__)",
    )
    text = outputs_text(execute(nb).cells[1])
    assert "%track start [-e EXPERIMENT]" in text and "--no-figures" in text


def test_nbops_failure_inside_a_cell_warns_once_and_never_breaks_it(project, client):
    nb = notebook(
        project / "fault.ipynb",
        "%load_ext nbops",
        "%track start",
        "import shutil, nbops\nrun = nbops.active_run()\nshutil.rmtree(run.spool.dir / 'files')\n"
        "(run.spool.dir / 'files').write_text('not a directory any more')",
        "%%track -n a\nv = 1 + 1\nprint('cell a ran', v)",
        "%%track -n b\nw = 2 + 2\nprint('cell b ran', w)",
        "lr = 0.1\n%track param lr",
        "%%track -n c\nlr = 0.2",
    )
    out = execute(nb)
    a, b = outputs_text(out.cells[3]), outputs_text(out.cells[4])
    assert "cell a ran 2" in a and "cell b ran 4" in b
    assert "nbops: could not log cell a" in a
    assert "could not log" not in b  # warned once, not on every cell
    c = outputs_text(out.cells[6])
    assert "param 'lr' is already '0.1'" in c and "%track start" in c


def test_the_spool_is_removed_once_everything_is_delivered(project, client):
    nb = notebook(
        project / "gone.ipynb",
        "%load_ext nbops",
        "%track start",
        "import nbops\nnbops.log_metric('m', 1.0)\nrun = nbops.active_run()\nrun.id",
        "%track stop",
    )
    execute(nb)
    (run,) = _runs(client, "Default")
    assert run.info.status == "FINISHED" and run.data.metrics["m"] == 1.0
    spool = project / ".nbops" / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []  # cleaned up after delivery
    shutil.rmtree(project / ".nbops" / "artifacts", ignore_errors=True)


def test_a_tracked_cell_still_runs_when_nbops_cannot_even_start(project):
    shutil.rmtree(project / ".nbops")
    (project / ".nbops").write_text("a file where nbops wants its state directory")
    nb = notebook(
        project / "nostate.ipynb",
        "%load_ext nbops",
        "%%track -n a\nv = 21 * 2\nprint('cell ran', v)",
    )
    text = outputs_text(execute(nb).cells[1])
    assert "cell ran 42" in text
    assert "tracking is off for this cell" in text


def test_after_a_failed_start_the_implicit_run_says_what_it_did(project, client):
    nb = notebook(
        project / "fallback.ipynb",
        "%load_ext nbops",
        "%track start --bogus",
        "x = 0.5\n%track metric x",
        "%track stop",
    )
    out = execute(nb, allow_errors=True)
    assert outputs_text(out.cells[1]).startswith("UsageError: ")
    said = outputs_text(out.cells[2])
    assert "no run was active (the last %track start failed: unrecognized arguments" in said
    assert "experiment 'Default' (no notebook path: a kernel without a Jupyter session" in said
    (run,) = _runs(client, "Default")
    assert run.info.run_name.startswith("ipython-") and f"run {run.info.run_name!r}" in said
    assert run.data.metrics["x"] == 0.5


def test_plain_ipython_says_it_has_no_notebook_and_names_the_run(project, client):
    script = project / "session.ipy"
    script.write_text(
        "%load_ext nbops\nx = 0.25\n%track metric x\n%track status\n"
        "get_ipython().run_cell_magic('track', '-n fit --explain', 'lr = 0.1')\n%track stop\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("JPY_SESSION_NAME", None)
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", str(script)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "started run 'ipython-" in out and "in experiment 'Default' (no notebook path: " in out
    assert "plain IPython; name one with %track start -e NAME" in out
    assert f"{project} is not in a git work tree: no commit or diff is recorded" in out
    assert "notebook     none (no notebook path: plain IPython): no snapshot at the end" in out
    assert "literal the cell sets and does not read" in out  # --explain works here too
    (run,) = _runs(client, "Default")
    assert run.info.run_name.startswith("ipython-") and run.data.metrics["x"] == 0.25
