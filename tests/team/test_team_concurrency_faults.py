"""Faults of a server going away that cannot be timed for real: the answer to a create-run request
lost after the server made the run (it was killed mid-request), and a lingering writer's lock.
Real SQLite store under the test's project; only the lost answer is made up."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from nbops import tags
from nbops.mlflow.store import TrackingStore
from nbops.tracking.delivery import Delivery
from nbops.tracking.run import Run
from nbops.tracking.spool import try_lock
from nbops.tracking.writer import pause_unlocked
from tests.conftest import store_uri


class AnswerLost(TrackingStore):
    """A store whose first create_run creates the run, then fails as a dropped connection."""

    lost = 0

    def create_run(self, *args: Any, **kwargs: Any) -> str:
        run_id = super().create_run(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise ConnectionError("Connection aborted: the server went away mid-request")
        return run_id


def test_a_create_run_whose_answer_was_lost_is_not_created_twice(project: Path) -> None:
    uri = store_uri(project)
    run = Run("lost-answer", "once", spawn_writer=False, capture=False, uri=uri)
    run.log_metric("m", 1.0)
    store = AnswerLost(uri)
    first = Delivery(run.spool, store)
    try:
        first.ensure_run()
        raise AssertionError("the lost answer was not raised")
    except ConnectionError:
        pass
    again = Delivery(run.spool, store)  # the writer's next attempt, after its back-off
    run_id = again.ensure_run()
    again.pump()
    eid = store.experiment_id("lost-answer")
    found = store.search_runs([eid])
    assert [r.info.run_id for r in found] == [run_id]  # one run, the one the first attempt made
    assert found[0].data.tags[tags.SPOOL] == run.local_id
    assert [m.value for m in store.metric_history(run_id, "m")] == [1.0]
    assert not (run.spool.dir / "creating").exists()
    run.spool.close()


def test_a_lingering_writer_lets_sync_take_its_spool_between_attempts(
    project: Path, monkeypatch: Any
) -> None:
    run = Run("linger", "x", spawn_writer=False, capture=False, uri=store_uri(project))
    sp = run.spool
    assert try_lock(sp.dir) is None  # held by the (here: this) owner
    other: list[int] = []

    def sleep_and_take(seconds: float) -> None:
        fd = try_lock(sp.dir)  # nbops sync, during the writer's pause
        assert fd is not None
        other.append(fd)

    import nbops.tracking.writer as writer

    with monkeypatch.context() as m:
        m.setattr(writer.time, "sleep", sleep_and_take)
        assert pause_unlocked(sp, 0.5) is False  # someone else has it now: the writer stops
    os.close(other[0])
    assert pause_unlocked(sp, 0.0) is True  # nobody took it: the writer has its lock back
    fd = os.open(sp.log_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the lock was not taken back")
        except BlockingIOError:
            pass
    finally:
        os.close(fd)
    sp.close()
