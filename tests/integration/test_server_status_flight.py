"""GET /pipeline runs `nbops status` in a process of its own; requests that come while one runs
share its answer instead of each starting another (they held the server's worker threads)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nbops.server import status
from tests.conftest import notebook


def test_concurrent_status_requests_share_one_process(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "nbops.yaml").write_text("stages:\n  a:\n    notebook: a.ipynb\n")
    notebook(project / "a.ipynb", ("n = 1", ["parameters"]))
    real = status._status_process
    started: list[int] = []

    def first_waits_for_the_others(root: Path, timeout: float) -> Any:
        started.append(1)
        deadline = time.monotonic() + 60
        while status.joined.get(root, 0) < 3:  # the three others are waiting on this one
            assert time.monotonic() < deadline, "the other requests did not join"
            time.sleep(0.01)
        return real(root, timeout)  # the real status process

    monkeypatch.setattr(status, "_status_process", first_waits_for_the_others)
    status.joined.pop(project, None)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(status.in_subprocess(project)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(started) == 1 and len(results) == 4
    assert {r.model_dump_json() for r in results} == {results[0].model_dump_json()}
    assert [s.name for s in results[0].stages] == ["a"]
    assert status.in_subprocess(project).stages[0].status == "never run"  # a new flight later
    assert len(started) == 2
