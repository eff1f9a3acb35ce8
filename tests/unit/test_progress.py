"""nbops run's display: plain lines for logs, a table redrawn in place on a terminal."""

import io

from nbops.pipeline.progress import Progress


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
    last = text.rsplit("\x1b[2F", 1)[1]
    rows = [r for r in last.split("\n") if r]
    assert len(rows) == 2
    assert "prepare" in rows[0] and "done" in rows[0] and "run r1" in rows[0]
    assert "train" in rows[1] and "running" in rows[1]


def test_a_running_row_ticks_and_a_finished_row_stands_still():
    out = io.StringIO()
    p = Progress(out, live=True)
    p.line("prepare", "running")
    p.line("prepare", "done", "0.5 s", "r1")
    p.line("train", "running")
    row = p._rows["prepare"]
    row[3], row[4] = float(row[3]) - 5, float(row[4]) - 5  # prepare ended 5 s ago, after ~0 s
    p._rows["train"][3] = float(p._rows["train"][3]) - 7  # train has been running for 7 s
    p._last_draw = 0.0
    before = len(out.getvalue())
    p.tick()
    last = out.getvalue()[before:]
    rows = [r for r in last.split("\n") if r]
    assert len(rows) == 2
    assert "7." in rows[1]  # the running row's elapsed time moved on
    assert "5." not in rows[0] and "0.0s" in rows[0]  # the finished row kept its duration


def test_tick_draws_nothing_when_nothing_runs_or_not_a_terminal():
    out = io.StringIO()
    p = Progress(out, live=True)
    p.line("prepare", "done", "0.5 s")
    p._last_draw = 0.0
    before = out.getvalue()
    p.tick()
    assert out.getvalue() == before
    plain = io.StringIO()
    q = Progress(plain)
    q.line("prepare", "running")
    q.tick()
    assert len(plain.getvalue().splitlines()) == 1
