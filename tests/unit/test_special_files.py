"""track_data and log_artifact refuse FIFOs, sockets and devices instead of hanging on them
(a FIFO blocks the read forever, /dev/zero never ends), directly or inside a directory."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbops.errors import InvalidInput
from nbops.tracking.run import Run


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    (tmp_path / ".nbops").mkdir()

    def hung(*_: object) -> None:
        raise AssertionError("hung on a special file")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    r = Run("e", None, root=tmp_path, uri="http://127.0.0.1:9", capture=False, spawn_writer=False)
    yield r
    signal.alarm(0)
    r.end("FINISHED", timeout=0)


def _specials(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "d"
    d.mkdir()
    os.mkfifo(d / "pipe")
    (tmp_path / "zero").symlink_to("/dev/zero")
    nested = tmp_path / "nested" / "deeper"
    nested.mkdir(parents=True)
    (nested / "zero").symlink_to("/dev/zero")
    return {
        "fifo": d / "pipe",
        "device": tmp_path / "zero",
        "dir-with-fifo": d,
        "dir-with-device": tmp_path / "nested",
    }


def test_special_files_are_refused_by_track_data_and_log_artifact(run: Run, tmp_path: Path):
    before = dict(run.counts)
    for case, path in _specials(tmp_path).items():
        for call in (run.track_data, run.log_artifact):
            with pytest.raises(InvalidInput) as err:
                call(path)
            assert "not a file" in err.value.message, (case, err.value)
    assert run.counts == before  # nothing was logged


def test_a_directory_of_plain_files_with_a_symlink_loop_still_fingerprints(run, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.csv").write_text("x,y\n1,2\n")
    (d / "loop").symlink_to("..")  # os.walk does not follow it; neither does the check
    fp = run.track_data(d)
    assert fp["files"] == 1 and fp["format"] == "directory"
