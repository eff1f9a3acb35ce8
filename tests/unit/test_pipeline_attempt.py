"""One stage attempt without a kernel: the job a point becomes, the checks on what its notebook
logged (read back from the run's real spool), and how a stopped execution ends its runs."""

from __future__ import annotations

from pathlib import Path

from nbops import envvars, tags
from nbops.pipeline import attempt
from nbops.pipeline.runner import Runner
from nbops.tracking.run import Run
from nbops.tracking.spool import Tag
from tests.conftest import notebook


def _project(root: Path, checks: str) -> Path:
    root.mkdir()
    notebook(root / "train.ipynb", ("C = 1.0", ["parameters"]), "x = C")
    (root / "nbops.yaml").write_text(
        f"stages:\n  train:\n    notebook: train.ipynb\n    checks: {checks}\n"
    )
    return root


def _run(root: Path) -> Run:
    return Run("e", "train", root=root, uri=f"sqlite:///{root}/x.db", spawn_writer=False)


def test_a_check_reads_the_last_value_the_notebook_logged_into_the_spool(tmp_path):
    root = _project(tmp_path / "p", "{acc: '>= 0.8'}")
    (plan,) = Runner(root).plan(["train"])
    run = _run(root)
    run.log_metric("acc", 0.9, step=1)
    run.log_metric("acc", 0.5, step=2)  # the last step is what counts
    err = attempt.check(plan, plan.points[0], run)
    assert err is not None
    assert err.message == "stage train: check acc >= 0.8 failed (acc = 0.5)"
    run.log_metric("acc", 0.85, step=3)
    assert attempt.check(plan, plan.points[0], run) is None


def test_a_check_on_a_metric_never_logged_says_so_and_how_to_log_it(tmp_path):
    root = _project(tmp_path / "p", "{loss: '< 1'}")
    (plan,) = Runner(root).plan(["train"])
    err = attempt.check(plan, plan.points[0], _run(root))
    assert err is not None and "never logged 'loss'" in err.message
    assert err.hint == "log it with nbops.log_metric or %track metric"


def test_the_job_of_a_point_attaches_the_kernel_to_the_runs_spool(tmp_path):
    root = _project(tmp_path / "p", "{}")
    (plan,) = Runner(root).plan(["train"])
    run = _run(root)
    job = attempt.job(plan, plan.points[0], run, root, root / ".nbops")
    assert job.env[envvars.ATTACH_SPOOL] == str(run.spool.dir)
    assert job.env[envvars.PROJECT_ROOT] == str(root)
    assert job.output == root / ".nbops" / "runs" / run.local_id / "train.ipynb"
    assert job.cwd == plan.notebook.parent and job.parameters == {"C": 1.0}


def test_a_stop_ends_runs_killed_and_a_timeout_ends_them_failed_with_the_reason(tmp_path):
    stop = attempt.Stop(None)
    assert (stop.end_status(False), stop.end_status(True)) == ("FINISHED", "FAILED")
    stop.interrupt()
    assert stop.end_status(False) == "KILLED" and not stop.timed_out

    late = attempt.Stop(1e-9)
    late.arm()
    late.check_deadline()  # the deadline (a nanosecond after arming) has passed
    assert late.timed_out and late.is_set() and late.end_status(False) == "FAILED"
    root = _project(tmp_path / "p", "{}")
    run = _run(root)
    late.mark(run)
    assert Tag(tags.END_REASON, "timeout: 1e-09 s") in [r for _, r in run.spool.records_from(0)]
