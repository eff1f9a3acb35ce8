"""The scheduler's SQLite store and its file locks (real files in tmp_path)."""

from __future__ import annotations

import subprocess
import sys

from nbops.scheduler.core import Pending, Running, Slot
from nbops.scheduler.lock import FileLock, daemon_lock, is_held
from nbops.scheduler.model import Schedule
from nbops.scheduler.store import ScheduleStore


def test_history_rows_round_trip_newest_first(tmp_path):
    store = ScheduleStore(tmp_path)
    a = store.add_history("s", fire_time=10.0, reason="cron", status="running", started=11.0)
    store.update_history(a, status="ok", run_ids=["r1", "r2"], pipeline_run_id="p", duration=2.5)
    b = store.add_history("s", fire_time=20.0, status="skipped", error="still running")
    rows = store.history("s")
    assert [r.id for r in rows] == [b, a]
    assert rows[1].run_ids == ["r1", "r2"] and rows[1].pipeline_run_id == "p"
    assert store.last("s").status == "skipped"
    assert store.last("s", executed=True).id == a


def test_prune_keeps_the_newest_rows_of_each_schedule(tmp_path):
    store = ScheduleStore(tmp_path)
    ids = {n: [store.add_history(n, status="ok") for _ in range(5)] for n in ("a", "b")}
    assert store.prune(keep=2) == 6
    assert [r.id for r in store.history("a")] == ids["a"][:-3:-1]
    assert [r.id for r in store.history("b")] == ids["b"][:-3:-1]


def test_slots_and_requests_persist_across_store_objects(tmp_path):
    slot = Slot(5.0, [Pending(4.0, "retry", 1, 9.0)], Running(3.0, "cron", 0, 3.5, None, 7))
    ScheduleStore(tmp_path).save_slots({"s": slot})
    assert ScheduleStore(tmp_path).slots() == {"s": slot}
    ScheduleStore(tmp_path).request_run("s")
    assert ScheduleStore(tmp_path).take_requests() == ["s"]
    assert ScheduleStore(tmp_path).take_requests() == []


def test_a_schedule_name_is_taken_once(tmp_path):
    store = ScheduleStore(tmp_path)
    spec = Schedule(name="n", cron="0 2 * * *")
    assert store.add_schedule(spec) and not store.add_schedule(spec)
    (row,) = store.schedule_rows()
    assert row.name == "n" and Schedule.model_validate_json(row.spec) == spec
    assert store.remove_schedule("n") and not store.remove_schedule("n")


def test_the_daemon_lock_is_exclusive_across_processes_and_freed_on_exit(tmp_path):
    lock = daemon_lock(tmp_path)
    assert lock.acquire()
    assert is_held(lock.path)
    probe = (
        "import pathlib\nfrom nbops.scheduler.lock import FileLock\n"
        f"print(FileLock(pathlib.Path({str(lock.path)!r})).acquire())"
    )
    other = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert other.stdout.strip() == "False"
    lock.release()
    assert not is_held(lock.path)
    again = FileLock(lock.path)
    assert again.acquire()
    again.release()
