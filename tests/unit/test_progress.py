"""nbops run's display: plain lines for logs, a table redrawn in place on a terminal. A fake
clock stands for time: each row's elapsed time is from its real start to its end."""

from __future__ import annotations

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.pipeline.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _last_table(text: str) -> list[str]:
    """The rows of the last redraw of a live table, colours removed."""
    last = re.split(r"\x1b\[\d+F", text)[-1]
    plain = re.sub(r"\x1b\[[0-9;]*[mK]", "", last)
    return [r for r in plain.split("\n") if r]


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(out)
    p.line("train[C=1]", "running", "never run")
    p.line("train[C=1]", "done", "1.2 s", "abc123")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert "train[C=1]" in lines[1] and "done" in lines[1] and "run abc123" in lines[1]


def test_a_terminal_gets_one_row_per_stage_redrawn_in_place():
    out = io.StringIO()
    p = Progress(out, live=True)
    p.line("prepare", "running")
    p.line("train", "running")
    p.line("prepare", "done", "0.5 s", "r1")
    text = out.getvalue()
    assert "\x1b[2F" in text  # the second redraw moves back over the two rows
    rows = _last_table(text)
    assert len(rows) == 2
    assert "prepare" in rows[0] and "done" in rows[0] and "run r1" in rows[0]
    assert "train" in rows[1] and "running" in rows[1]


def test_elapsed_counts_from_the_real_start_not_the_queue_and_a_finished_row_stands_still():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=True, clock=clock)
    p.line("prepare", "queued", "never run")
    p.line("train", "queued", "never run")
    clock.t += 9  # both wait 9 s for a kernel
    p.line("prepare", "running", "never run")
    clock.t += 2
    p.line("prepare", "done")
    p.line("train", "running", "never run")
    clock.t += 7
    p.tick()
    rows = _last_table(out.getvalue())
    assert re.search(r"prepare\s+done\s+2\.0s", rows[0]), rows  # not 11 s: 9 s were queued
    assert re.search(r"train\s+running\s+7\.0s", rows[1]), rows
    clock.t += 30
    p.tick()
    rows = _last_table(out.getvalue())
    assert "2.0s" in rows[0] and "37.0s" in rows[1]  # the finished row kept its duration


def test_a_queued_row_shows_no_time_and_a_row_that_never_ran_none_either():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=True, clock=clock)
    p.line("train", "queued", "never run")
    clock.t += 5
    p.line("train", "killed", "interrupted (Ctrl-C / SIGTERM)")
    (row,) = _last_table(out.getvalue())
    assert re.match(r"train\s+killed\s+interrupted", row), row  # no "5.0s": it never ran


def test_a_long_detail_is_cut_on_a_terminal_but_never_the_run_id():
    out = io.StringIO()
    p = Progress(out, live=True)
    p.line("train", "failed", "stage train failed at In [3]: ValueError: " + "x" * 300, "abc123")
    (row,) = _last_table(out.getvalue())
    assert "run abc123  stage train failed" in row and len(row) <= 132


def test_tick_draws_nothing_when_nothing_runs_or_not_a_terminal():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=True, clock=clock)
    p.line("prepare", "done", "0.5 s")
    p.line("train", "queued")
    clock.t += 10
    before = out.getvalue()
    p.tick()
    assert out.getvalue() == before
    plain = io.StringIO()
    q = Progress(plain)
    q.line("prepare", "running")
    q.tick()
    assert len(plain.getvalue().splitlines()) == 1


def test_the_live_table_fills_in_a_run_id_when_the_store_creates_the_run_after_the_row_ended():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=True, clock=clock)
    p.line("train", "running")
    clock.t += 1
    p.line("train", "done", "", None)  # the sink has not created the run yet
    assert "run " not in _last_table(out.getvalue())[0]
    p.identify("train", "f00d")
    assert re.match(r"train\s+done\s+1\.0s\s+run f00d$", _last_table(out.getvalue())[0])


def test_plain_lines_say_each_run_id_exactly_once_and_never_on_a_queued_line():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, clock=clock)
    p.line("a", "queued", "never run")
    p.identify("a", "id-a")  # arrives while queued (the race of start and creation)
    p.line("a", "running", "never run")  # says it here
    p.line("b", "queued")
    p.line("b", "running")
    p.identify("b", "id-b")  # arrives while running: said at once, on a line of its own
    clock.t += 1.5
    p.line("b", "done", "", "id-b")  # not again
    p.line("c", "running")
    p.line("c", "done")
    p.identify("c", "id-c")  # after the row ended: a line of its own
    text = out.getvalue()
    for rid in ("id-a", "id-b", "id-c"):
        assert text.count(rid) == 1, text
    lines = text.splitlines()
    assert re.search(r"\ba\s+running\s+never run run id-a$", lines[1]), lines
    assert not any("queued" in ln and "run id" in ln for ln in lines)
    assert re.search(r"\bb\s+done\s+in 1\.5 s$", lines[5]), lines  # its real elapsed time
    assert re.search(r"\bc\s+done\s+run id-c$", lines[-1]), lines


def test_a_sweep_stage_row_spans_its_points_and_carries_the_sweep_run_id():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=True, clock=clock)
    p.stage("train")
    for c in (1, 2, 3):
        p.member("train", f"train[C={c}]")
        p.line(f"train[C={c}]", "queued", "never run")
    rows = _last_table(out.getvalue())
    assert rows[0].startswith("train ") and "queued" in rows[0] and "3 points" in rows[0]
    clock.t += 4  # queued, waiting for kernels
    p.line("train[C=1]", "running")
    p.identify("train", "parent")
    clock.t += 1
    p.line("train[C=2]", "running")
    clock.t += 2
    p.line("train[C=1]", "done")
    p.line("train[C=3]", "running")
    clock.t += 3
    p.line("train[C=2]", "done")
    p.tick()
    rows = _last_table(out.getvalue())
    assert re.search(
        r"^train\s+running\s+6\.0s\s+run parent\s+3 points: 2 done, 1 running$", rows[0]
    )
    assert sum(bool(re.search(r"\]\s+running", r)) for r in rows) == 1  # C=3 only
    clock.t += 1
    p.line("train[C=3]", "done")
    clock.t += 50  # the stage's row stands still once its last point ended
    p.tick()
    p.identify("train[C=3]", "late")
    rows = _last_table(out.getvalue())
    assert re.search(r"^train\s+done\s+7\.0s\s+run parent\s+3 points: 3 done$", rows[0]), rows
    assert re.match(r"train\[C=3\]\s+done\s+4\.0s\s+run late$", rows[3]), rows


def test_plain_lines_of_a_sweep_say_when_the_stage_starts_and_when_it_ends_with_its_span():
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, clock=clock)
    p.stage("train")
    for c in (1, 2):
        p.member("train", f"train[C={c}]")
        p.line(f"train[C={c}]", "queued", "never run")
    p.identify("train", "parent")  # before any point runs: said with the stage's first line
    clock.t += 3
    p.line("train[C=1]", "running")
    clock.t += 2
    p.line("train[C=1]", "done")
    p.line("train[C=2]", "running")
    clock.t += 2
    p.line("train[C=2]", "failed", "stage train[C=2] failed at In [2]: ValueError: x")
    stage_lines = [ln for ln in out.getvalue().splitlines() if re.match(r"\[.*\] train\s", ln)]
    assert len(stage_lines) == 2, out.getvalue()
    assert re.search(r"train\s+running\s+2 points: 1 running, 1 queued run parent$", stage_lines[0])
    assert re.search(r"train\s+failed\s+2 points: 1 done, 1 failed in 4\.0 s$", stage_lines[1])
    assert out.getvalue().count("parent") == 1


def test_a_sweep_stage_told_a_failure_of_its_own_says_it_once():
    out = io.StringIO()
    p = Progress(out)
    p.stage("train")
    p.member("train", "train[C=1]")
    p.line("train[C=1]", "running")
    p.line("train[C=1]", "done")
    p.line("train", "failed", "stage train did not write its out models")
    text = out.getvalue()
    assert text.count("did not write its out") == 1
    assert [
        ln.split("] ")[1].split()[1] for ln in text.splitlines() if re.match(r"\[.*\] train\s", ln)
    ] == [
        "running",
        "done",
        "failed",
    ]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["queued", "running", "done", "failed", "id"]),
        st.floats(min_value=0, max_value=5),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(EVENTS)
def test_whatever_the_order_of_events_a_run_id_is_said_at_most_once_and_times_never_run_back(
    events,
):
    clock = Clock()
    out = io.StringIO()
    live = io.StringIO()
    p, q = Progress(out, clock=clock), Progress(live, live=True, clock=clock)
    for label, what, dt in events:
        clock.t += dt
        for prog in (p, q):
            if what == "id":
                prog.identify(label, f"rid-{label}")
            else:
                prog.line(label, what)
    for label in "abc":
        assert out.getvalue().count(f"rid-{label}") <= 1
    for line in out.getvalue().splitlines():
        assert not re.search(r"queued.*run rid", line)
        m = re.search(r"in (-?[\d.]+) s", line)
        assert m is None or float(m.group(1)) >= 0
    for row in _last_table(live.getvalue()) if live.getvalue() else []:
        m = re.search(r"\s(-?[\d.]+)s\b", row)
        assert m is None or float(m.group(1)) >= 0


class FakeRun:
    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.ended_ms: int | None = None


def test_a_followed_row_shows_its_runs_own_times_and_saving_while_the_next_one_runs():
    """With one job, the next point starts as soon as a kernel is done, while the runner still
    checks and versions the previous one: that one says ``saving``, never a second running."""
    clock = Clock()
    out = io.StringIO()
    p = Progress(out, live=True, clock=clock)
    a, b = FakeRun(100_000), FakeRun(0)
    p.line("a", "queued")
    p.line("b", "queued")
    p.follow("a", a)
    p.line("a", "running")
    clock.t = 103.0
    a.ended_ms = 102_500  # its kernel finished at 102.5 s
    b.start_ms = 102_600
    p.follow("b", b)
    p.line("b", "running")
    rows = _last_table(out.getvalue())
    assert re.match(r"a\s+saving\s+2\.5s", rows[0]), rows  # stands still at its run's end
    assert re.match(r"b\s+running\s+0\.4s", rows[1]), rows
    clock.t = 104.0
    p.line("a", "done")  # its bookkeeping took until 104 s: the run ended at 102.5 s
    rows = _last_table(out.getvalue())
    assert re.match(r"a\s+done\s+2\.5s", rows[0]), rows
    plain = io.StringIO()
    q = Progress(plain, clock=clock)
    q.follow("a", a)
    q.line("a", "running")
    q.line("a", "done")
    assert plain.getvalue().splitlines()[-1].endswith("done       in 2.5 s")
