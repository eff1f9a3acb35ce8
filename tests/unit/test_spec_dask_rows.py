"""What ``nbops run`` shows of a point that runs on a cluster: the worker on its row while it
runs and once it is done (not when it is queued or failed: the failure names the worker
itself), the executor's note on a retry, and the report line after the summary; both forms
(plain lines and the live table)."""

from __future__ import annotations

import io
import re

from nbops.pipeline.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_name_the_worker_of_a_running_and_a_done_point_and_say_a_retry():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=False, clock=clock)
    p.line("train[C=1]", "queued", "never run")
    p.place("train[C=1]", "w1 (tcp://10.0.0.5:4711)")
    p.line("train[C=1]", "running", "never run")
    clock.t += 2
    p.remark("train[C=1]", "worker w1 (tcp://10.0.0.5:4711) died; retry 1 of 1 on w0")
    p.place("train[C=1]", "w0 (tcp://10.0.0.6:4712)")
    clock.t += 1.5
    p.line("train[C=1]", "done", "", "r1")
    p.line("other", "queued", "never run")
    p.place("other", "w0 (tcp://10.0.0.6:4712)")
    p.line("other", "failed", "cell 2 raised ValueError on worker w0 (tcp://10.0.0.6:4712)")
    p.summary({"train": "done", "other": "failed"}, 3.5, "pipe1")
    p.say("dask: 2 jobs on 2 workers (w0 1, w1 1)")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("queued     never run")  # no worker yet
    assert lines[1].endswith("running    never run; on w1 (tcp://10.0.0.5:4711)")
    assert "running    worker w1 (tcp://10.0.0.5:4711) died; retry 1 of 1 on w0" in lines[2]
    assert lines[3].endswith("done       in 3.5 s on w0 (tcp://10.0.0.6:4712) run r1")
    assert lines[5].endswith(
        "failed     cell 2 raised ValueError on worker w0 (tcp://10.0.0.6:4712)"
    )
    assert lines[-2] == "nbops run: 1 done, 1 failed in 3.5 s; pipeline run pipe1"
    assert lines[-1] == "dask: 2 jobs on 2 workers (w0 1, w1 1)"


def test_the_live_table_shows_the_worker_beside_the_run_id():
    out = io.StringIO()
    p = Progress(out, live=True, clock=Clock())
    p.line("prepare", "queued", "never run")
    p.place("prepare", "w1 (tcp://10.0.0.5:4711)")
    p.line("prepare", "running", "never run")
    p.identify("prepare", "r9")
    last = re.split(r"\x1b\[\d+F", out.getvalue())[-1]
    row = re.sub(r"\x1b\[[0-9;]*[mK]", "", last).strip()
    assert row.startswith("prepare") and "running" in row
    assert row.endswith("run r9  never run; on w1 (tcp://10.0.0.5:4711)"), row
    p.line("prepare", "done", "", "r9")
    last = re.split(r"\x1b\[\d+F", out.getvalue())[-1]
    row = re.sub(r"\x1b\[[0-9;]*[mK]", "", last).strip()
    assert row.endswith("run r9  on w1 (tcp://10.0.0.5:4711)"), row


def test_a_point_that_runs_here_shows_no_worker():
    out = io.StringIO()
    p = Progress(out, live=False, clock=Clock())
    p.line("prepare", "running", "never run")
    p.line("prepare", "done", "", "r1")
    assert " on " not in out.getvalue()
