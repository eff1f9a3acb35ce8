"""A run's writer process yields the CPU to the notebook: it runs at a niceness 10 above the
logging process (``NBOPS_WRITER_NICE`` sets the step; 0 keeps the same priority)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _writer_nice_of_new_run() -> tuple[int, Path]:
    import nbops

    run = nbops.start_run("nice")
    try:
        writer = run._writer
        assert writer is not None
        assert run.id  # the writer has started (and created the run): its niceness is set
        nice = os.getpriority(os.PRIO_PROCESS, writer.pid)
        return nice, run.spool.dir
    finally:
        assert nbops.end_run()


@pytest.mark.parametrize(("setting", "step"), [(None, 10), ("0", 0), ("19", 19), ("50", 19)])
def test_the_writer_runs_below_the_notebook(
    project: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, step: int
) -> None:
    if setting is None:
        monkeypatch.delenv("NBOPS_WRITER_NICE", raising=False)
    else:
        monkeypatch.setenv("NBOPS_WRITER_NICE", setting)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    nice, _ = _writer_nice_of_new_run()
    assert nice == min(19, ours + step)


def test_a_bad_setting_is_named_in_the_writer_log_and_the_default_used(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBOPS_WRITER_NICE", "high")
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    import nbops

    run = nbops.start_run("nice-bad")
    writer = run._writer
    assert writer is not None
    assert run.id
    assert os.getpriority(os.PRIO_PROCESS, writer.pid) == min(19, ours + 10)
    text = (run.spool.dir / "writer.log").read_text()
    assert nbops.end_run()
    assert "NBOPS_WRITER_NICE='high' is not a whole number from 0 to 19; using 10" in text
