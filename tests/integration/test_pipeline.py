"""nbops run on throwaway projects: real kernels (papermill), a real MLflow store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import kernel_processes, nbops_cli, notebook, states

YAML = """\
experiment: tiny
stages:
  make:
    notebook: make.ipynb
    params: {n: 3}
    outs: [a.txt]
  double:
    notebook: double.ipynb
    deps: [a.txt]
    outs: [b.txt]
    checks: {total: ">= 0"}
  other:
    notebook: other.ipynb
    outs: [c.txt]
"""


@pytest.fixture
def tiny(project: Path) -> Path:
    notebook(
        project / "make.ipynb",
        ("n = 1", ["parameters"]),
        "from pathlib import Path\nPath('a.txt').write_text(str(n) * n)",
    )
    notebook(
        project / "double.ipynb",
        ("factor = 2", ["parameters"]),
        "import nbops\nfrom pathlib import Path\ntext = Path('a.txt').read_text()\n"
        "Path('b.txt').write_text(text * factor)\n"
        "nbops.log_metric('total', len(text) * factor)",
    )
    notebook(project / "other.ipynb", "open('c.txt', 'w').write('independent')")
    (project / "nbops.yaml").write_text(YAML)
    return project


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nbops_cli("run", *args, cwd=project, timeout=300)


def stage_runs(client, stage: str) -> list:
    exp = client.get_experiment_by_name("tiny")
    return client.search_runs([exp.experiment_id], f"tags.`nbops.stage` = '{stage}'")


def test_first_run_executes_everything_then_a_rerun_is_a_noop(tiny, client):
    first = run(tiny)
    assert first.returncode == 0, first.stdout + first.stderr
    assert states(first.stdout) == {"make": "done", "double": "done", "other": "done"}
    assert (tiny / "b.txt").read_text() == "333333"
    (r,) = stage_runs(client, "double")
    assert r.info.status == "FINISHED" and r.data.metrics["total"] == 6
    assert len(r.data.tags["nbops.dep.a.txt"]) == 32  # xxh3-128 of what it read
    assert r.data.params == {"factor": "2"}
    assert r.data.tags["mlflow.parentRunId"]  # a child of the pipeline run
    assert (tiny / ".nbops" / "runs" / r.info.run_id / "double.ipynb").is_file()
    assert [a.path for a in client.list_artifacts(r.info.run_id, "notebook")] == [
        "notebook/double.ipynb"
    ]
    again = run(tiny)
    assert states(again.stdout) == dict.fromkeys(("make", "double", "other"), "up to date")
    assert len(stage_runs(client, "double")) == 1


def test_changed_param_reruns_only_that_stage_and_its_downstream(tiny, client):
    run(tiny)
    (tiny / "nbops.yaml").write_text(YAML.replace("{n: 3}", "{n: 4}"))
    status = nbops_cli("status", cwd=tiny)
    assert "params changed: n 3 → 4" in status.stdout
    assert "upstream stage make will run" in status.stdout
    out = run(tiny)
    assert states(out.stdout) == {"make": "done", "double": "done", "other": "up to date"}
    assert (tiny / "b.txt").read_text() == "4444" * 2


def test_command_line_params_override_the_yaml(tiny):
    run(tiny)
    out = run(tiny, "-p", "make.n=2")
    assert states(out.stdout)["make"] == "done"
    assert (tiny / "a.txt").read_text() == "22"


def test_touched_but_unchanged_dep_reruns_nothing(tiny):
    run(tiny)
    os.utime(tiny / "a.txt", (time.time() + 100, time.time() + 100))
    out = run(tiny)
    assert set(states(out.stdout).values()) == {"up to date"}


def test_deleted_out_reruns_its_stage(tiny):
    run(tiny)
    (tiny / "c.txt").unlink()
    assert "out missing: c.txt" in nbops_cli("status", cwd=tiny).stdout
    out = run(tiny)
    assert states(out.stdout) == {"make": "up to date", "double": "up to date", "other": "done"}


def test_checkout_restores_an_earlier_runs_outs_byte_for_byte(tiny, client):
    run(tiny)
    (first,) = stage_runs(client, "make")
    run(tiny, "-p", "make.n=5")
    assert (tiny / "a.txt").read_text() == "55555"
    done = nbops_cli("checkout", first.info.run_id, cwd=tiny)
    assert done.returncode == 0, done.stderr
    assert (tiny / "a.txt").read_bytes() == b"333"
    runs = sorted(stage_runs(client, "make"), key=lambda r: r.info.start_time)
    diff = nbops_cli("diff", runs[0].info.run_id, runs[1].info.run_id, cwd=tiny)
    assert "n: 3 → 5" in diff.stdout and "a.txt" in diff.stdout


def test_a_sweep_makes_one_child_run_per_point_under_a_parent(tiny, client):
    """A --sweep of a stage whose out is one file: every point would overwrite it, so the
    points run (each its own run under the stage's run) but the stage fails, naming the out
    at its line in nbops.yaml and the fix; the next run refuses before anything starts."""
    out = run(tiny, "double", "--sweep", "factor=1,2,3", "--jobs", "2")
    labels = states(out.stdout)
    assert {"double[factor=1]", "double[factor=2]", "double[factor=3]"} <= set(labels)
    assert "other" not in labels  # not selected, not upstream of double
    runs = stage_runs(client, "double")
    parent = [r for r in runs if "nbops.sweep_point" not in r.data.tags]
    points = [r for r in runs if "nbops.sweep_point" in r.data.tags]
    assert len(parent) == 1 and len(points) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in points} == {parent[0].info.run_id}
    assert sorted(r.data.metrics["total"] for r in points) == [3, 6, 9]
    assert out.returncode == 1, out.stdout + out.stderr
    said = r"nbops\.yaml:10:\d+: stage 'double': out 'b\.txt' is one file shared by every point"
    assert re.search(said, out.stdout + out.stderr), out.stdout + out.stderr
    assert parent[0].info.status == "FAILED"
    again = run(tiny, "double", "--sweep", "factor=1,2")
    assert again.returncode == 2 and re.search(said, again.stderr), again.stdout + again.stderr
    assert "name each point's own file with ${...} (like b-factor${factor}.txt)" in again.stderr


def test_a_failing_cell_fails_its_stage_skips_downstream_and_resume_finishes(tiny, client):
    notebook(
        tiny / "make.ipynb",
        ("n = 1", ["parameters"]),
        "x = 1",
        "raise RuntimeError('broken input ' + str(n))",
    )
    out = run(tiny)
    assert out.returncode == 1
    assert states(out.stdout) == {"make": "failed", "double": "skipped", "other": "done"}
    assert "make failed at In [4]: RuntimeError: broken input 3" in out.stderr
    executed = tiny / ".nbops" / "runs"
    (kept,) = [p for p in executed.rglob("make.ipynb")]
    assert "broken input 3" in kept.read_text()  # papermill's error banner and traceback
    (failed,) = stage_runs(client, "make")
    assert failed.info.status == "FAILED"
    notebook(
        tiny / "make.ipynb",
        ("n = 1", ["parameters"]),
        "from pathlib import Path\nPath('a.txt').write_text(str(n) * n)",
    )
    resumed = run(tiny, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert states(resumed.stdout) == {"make": "done", "double": "done"}


def test_a_failed_check_fails_the_stage(tiny):
    (tiny / "nbops.yaml").write_text(YAML.replace('{total: ">= 0"}', '{total: "> 100"}'))
    out = run(tiny)
    assert out.returncode == 1
    assert "check total > 100 failed (total = 6)" in out.stderr


def test_an_undeclared_parameter_fails_before_anything_runs(tiny):
    (tiny / "nbops.yaml").write_text(YAML.replace("params: {n: 3}", "params: {n: 3, m: 1}"))
    out = run(tiny)
    assert out.returncode == 2
    assert "parameter 'm' is not declared by make.ipynb" in out.stderr
    assert "declares: n" in out.stderr
    assert not (tiny / ".nbops" / "runs").exists()
    bad = run(tiny, "-p", "nope=1")
    assert bad.returncode == 2 and "no stage to run declares a parameter 'nope'" in bad.stderr


def _kernels_of(project: Path) -> list[int]:
    return kernel_processes(project)


def _forked_kernels_of(project: Path) -> list[int]:
    return kernel_processes(project, forked_only=True)


def test_sigint_stops_kernels_and_marks_runs_killed(tiny, client):
    notebook(tiny / "other.ipynb", "import time\nopen('started', 'w').close()\ntime.sleep(600)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbops", "run", "other", "--summary", "s.json"],
        cwd=tiny,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "other" in line and "running" in line:
            break
    deadline = time.monotonic() + 60
    while not (tiny / "started").exists():  # the notebook is in its long cell
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.05)
    assert _forked_kernels_of(tiny)  # the stage's kernel, forked by the zygote
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, rest
    assert "killed" in rest
    assert _kernels_of(tiny) == []
    (r,) = stage_runs(client, "other")
    assert r.info.status == "KILLED"
    summary = json.loads((tiny / "s.json").read_text())
    assert summary["status"] == "killed" and summary["exit_code"] == 130
    assert summary["error"].startswith("interrupted")


def test_metrics_the_notebook_logs_with_track_magics_go_to_the_stage_run(tiny, client):
    notebook(
        tiny / "other.ipynb",
        "%load_ext nbops",
        "%track start",
        "%%track -n fit\nlr = 0.5\nscore = 0.25 * 4\nopen('c.txt', 'w').write('x')",
        "%track stop",
    )
    out = run(tiny, "other")
    assert out.returncode == 0, out.stdout + out.stderr
    (r,) = stage_runs(client, "other")
    assert r.data.metrics["score"] == 1.0 and r.data.params["lr"] == "0.5"
    assert r.info.status == "FINISHED"
    assert json.loads(Path(client.download_artifacts(r.info.run_id, "outs.json")).read_text())[
        "c.txt"
    ]["digest"]


def test_timeout_stops_the_kernel_and_marks_the_run_failed_with_a_summary(tiny, client):
    notebook(tiny / "other.ipynb", "import time\ntime.sleep(600)")
    out = run(tiny, "other", "--timeout", "3", "--summary", "s.json", "--tag", "team=vision")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "timed out after 3 s" in out.stdout + out.stderr
    assert _kernels_of(tiny) == []
    (r,) = stage_runs(client, "other")
    assert r.info.status == "FAILED"
    assert r.data.tags["nbops.end_reason"] == "timeout: 3 s"
    assert r.data.tags["team"] == "vision"
    summary = json.loads((tiny / "s.json").read_text())
    assert summary["status"] == "timeout" and summary["exit_code"] == 1
    assert summary["stages"]["other"] == {"status": "failed", "run_ids": [r.info.run_id]}
    parent = client.get_run(summary["pipeline_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["team"] == "vision"


def test_summary_lists_each_stage_and_its_runs(tiny, client):
    out = run(tiny, "double", "--summary", "s.json", "--tag", "nbops.schedule=nightly")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((tiny / "s.json").read_text())
    assert summary["status"] == "ok" and summary["error"] is None
    assert set(summary["stages"]) == {"make", "double"}
    for stage, rec in summary["stages"].items():
        (r,) = stage_runs(client, stage)
        assert rec == {"status": "done", "run_ids": [r.info.run_id]}
        assert r.data.tags["nbops.schedule"] == "nightly"


def test_a_summary_is_written_even_when_nothing_can_start(tiny):
    out = run(tiny, "-p", "make.nope=1", "--summary", "s.json")
    assert out.returncode == 2
    summary = json.loads((tiny / "s.json").read_text())
    assert summary["status"] == "failed" and "nope" in summary["error"]


def test_nbops_tags_env_tags_the_runs_a_notebook_starts(project, client):
    nb = notebook(project / "nb.ipynb", "import nbops\nwith nbops.start_run('tagged'):\n    pass")
    env = {**os.environ, "NBOPS_TAGS": json.dumps({"nbops.rerun_of": "abc"})}
    subprocess.run(
        [sys.executable, "-m", "papermill", str(nb), str(project / "out.ipynb")],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    exp = client.get_experiment_by_name("tagged")
    (r,) = client.search_runs([exp.experiment_id])
    assert r.data.tags["nbops.rerun_of"] == "abc"


def test_runs_named_late_by_a_slow_store_still_get_their_notebook_folder(tiny, monkeypatch):
    """A store slower than the runner's 5-s wait for a run id (a loaded machine): the executed
    notebook is moved to .nbops/runs/<run_id>/ and the state learns the id once the sink is done.
    The slowness is simulated: a loaded machine cannot be made on demand."""
    from nbops.pipeline import sink as sinkmod
    from nbops.pipeline.runner import Runner
    from nbops.pipeline.state import State

    real = sinkmod.Sink.run_id

    def slow(self, run, timeout=60.0):
        return None if timeout <= 5 else real(self, run, timeout)

    monkeypatch.setattr(sinkmod.Sink, "run_id", slow)
    assert Runner(tiny).run(["make"]) == 0
    rec = State(tiny / ".nbops").get("make", next(iter(State(tiny / ".nbops").stages["make"])))
    assert rec is not None and rec.run_id
    assert (tiny / ".nbops" / "runs" / rec.run_id / "make.ipynb").is_file()


def test_a_stage_whose_notebook_is_broken_fails_alone_and_papermill_cells_are_accepted(
    tiny, client
):
    """An unreadable notebook fails its stage at run time (downstream skipped, exit 1) while
    the independent stages run; a parameters cell papermill can run (a magic, a line it
    skips) is accepted with the parameters papermill infers."""
    (tiny / "make.ipynb").write_text('{"cells": [')  # double depends on it: skipped
    with (tiny / "nbops.yaml").open("a") as f:  # a stage whose notebook does not exist
        f.write("  gone:\n    notebook: nowhere.ipynb\n")
    notebook(
        tiny / "other.ipynb",
        ("%config Completer.use_jedi = False\nk: int = 1  # how many\nd = k == 3", ["parameters"]),
        "open('c.txt', 'w').write(str(k))",
    )
    status = nbops_cli("status", cwd=tiny)
    assert status.returncode == 0, status.stderr
    assert re.search(r"make\s+broken\s+cannot run: .*make.ipynb is not valid JSON", status.stdout)
    assert re.search(r"other\s+stale\s+never run", status.stdout), status.stdout
    assert re.search(r"gone\s+broken\s+.*nowhere.ipynb does not exist", status.stdout)
    dry = run(tiny, "--dry-run", "-p", "k=7")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert re.search(r"make\s+would fail\s+cannot run: .*not valid JSON", dry.stdout)
    assert re.search(r"other\s+would run", dry.stdout), dry.stdout

    out = run(tiny, "-p", "k=7", "--summary", str(tiny / "s.json"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert states(out.stdout) == {
        "make": "failed",
        "double": "skipped",
        "other": "done",
        "gone": "failed",
    }
    assert (tiny / "c.txt").read_text() == "7"
    assert "Traceback" not in out.stderr and "make.ipynb is not valid JSON" in out.stderr
    summary = json.loads((tiny / "s.json").read_text())
    assert summary["stages"]["other"]["status"] == "done"
    assert "make.ipynb is not valid JSON" in summary["stages"]["make"]["error"]
    assert summary["stages"]["double"]["status"] == "skipped"
    (r,) = stage_runs(client, "other")
    assert r.data.params["k"] == "7"
