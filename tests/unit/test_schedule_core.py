"""The scheduler's pure core over a fake clock: catch-up after downtime, no overlap, retries with
back-off, the timeout backstop, persistence of the cursor. No sleeping, no processes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nbops.scheduler.core import Core, Pending, Skip, Slot, Start, backoff
from nbops.scheduler.model import Schedule

T0 = datetime(2026, 3, 2, 0, 0, 0, tzinfo=timezone.utc).timestamp()  # a Monday, 00:00 UTC


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def spec(name: str = "s", cron: str = "*/10 * * * *", **kw: object) -> Schedule:
    return Schedule(name=name, cron=cron, timezone="UTC", **kw)  # type: ignore[arg-type]


def make(*specs: Schedule, at: float = T0 + 1, **kw: float) -> tuple[Core, Clock]:
    clock = Clock(at)
    core = Core(clock, **kw)  # type: ignore[arg-type]
    core.load(specs)
    return core, clock


def starts(actions: list) -> list[tuple[str, float, str, int]]:
    return [
        (a.name, a.pending.fire, a.pending.reason, a.pending.attempt)
        for a in actions
        if isinstance(a, Start)
    ]


def skips(actions: list) -> list[Skip]:
    return [a for a in actions if isinstance(a, Skip)]


def test_a_new_schedule_does_not_run_fire_times_from_before_it_existed():
    core, clock = make(spec())
    assert core.tick() == []
    assert core.next_fire("s") == T0 + 600


def test_a_fire_time_starts_one_execution_once():
    core, clock = make(spec())
    clock.advance(598)  # T0 + 599
    assert core.tick() == []
    clock.advance(1)
    assert starts(core.tick()) == [("s", T0 + 600, "cron", 0)]
    assert core.tick() == []  # same instant again: nothing new
    assert core.slots["s"].running is not None


@pytest.mark.parametrize(
    "catchup, expected_starts, expected_missed",
    [("none", [], 6), ("latest", [T0 + 3600], 5)],
)
def test_catchup_after_downtime(catchup, expected_starts, expected_missed):
    core, clock = make(spec(catchup=catchup))
    clock.advance(3600 + 120)  # the scheduler was down for an hour: 6 fire times missed
    actions = core.tick()
    assert [s[1] for s in starts(actions)] == expected_starts
    assert all(s[2] == "catchup" for s in starts(actions))
    (skip,) = skips(actions)
    assert skip.missed == expected_missed
    assert f"catchup: {catchup}" in skip.reason


def test_catchup_all_runs_each_missed_time_in_order_one_at_a_time():
    core, clock = make(spec(catchup="all"))
    clock.advance(3600 + 120)
    ran = []
    first = core.tick()
    assert skips(first) == []
    ran += starts(first)
    for _ in range(10):
        assert starts(core.tick()) == []  # the previous one still runs: nothing starts
        core.finished("s", ok=True)
        ran += starts(core.tick())
    assert [r[1] for r in ran] == [T0 + 600 * i for i in range(1, 7)]
    assert {r[2] for r in ran} == {"catchup"}


def test_catchup_all_is_capped_and_says_how_many_it_skipped():
    core, clock = make(spec(catchup="all"), catchup_limit=3)
    clock.advance(10 * 600 + 5)
    actions = core.tick()
    (skip,) = skips(actions)
    assert skip.missed == 7
    assert [s[1] for s in starts(actions)] == [T0 + 8 * 600]
    assert [p.fire for p in core.slots["s"].queue] == [T0 + 9 * 600, T0 + 10 * 600]


def test_catchup_none_still_runs_a_fire_time_that_is_only_seconds_late():
    core, clock = make(spec(catchup="none"), grace=60)
    clock.advance(600 + 20)
    assert starts(core.tick()) == [("s", T0 + 600, "cron", 0)]


def test_an_execution_that_outlasts_its_interval_makes_the_next_fire_skipped():
    core, clock = make(spec())
    clock.advance(600)
    assert len(starts(core.tick())) == 1
    clock.advance(600)  # still running at the next fire time
    actions = core.tick()
    assert starts(actions) == []
    (skip,) = skips(actions)
    assert (skip.fire, skip.reason) == (T0 + 1200, "still running")
    clock.advance(30)
    core.finished("s", ok=True)
    assert core.tick() == []  # the skipped time is not run late
    clock.advance(570)
    assert starts(core.tick()) == [("s", T0 + 1800, "cron", 0)]


def test_a_failure_is_retried_with_exponential_backoff_then_given_up():
    core, clock = make(spec(cron="0 * * * *", retries=2), backoff_base=30)
    clock.advance(3600)
    assert starts(core.tick()) == [("s", T0 + 3600, "cron", 0)]
    clock.advance(5)
    out = core.finished("s", ok=False)
    assert out.retry_at == clock() + 30 and not out.gave_up
    clock.advance(29)
    assert core.tick() == []
    assert core.next_wake() == pytest.approx(clock() + 1)
    clock.advance(1)
    assert starts(core.tick()) == [("s", T0 + 3600, "retry", 1)]
    out = core.finished("s", ok=False)
    assert out.retry_at == clock() + 60
    clock.advance(60)
    assert starts(core.tick()) == [("s", T0 + 3600, "retry", 2)]
    out = core.finished("s", ok=False)
    assert out.gave_up and out.retry_at is None
    assert core.tick() == [] and not core.slots["s"].busy


def test_a_success_is_not_retried():
    core, clock = make(spec(retries=3))
    clock.advance(600)
    core.tick()
    out = core.finished("s", ok=True)
    assert out.retry_at is None and not out.gave_up


def test_backoff_doubles_and_is_capped():
    assert [backoff(a, 10, 100) for a in range(6)] == [10, 20, 40, 80, 100, 100]


def test_the_timeout_backstop_fires_only_after_timeout_plus_grace():
    core, clock = make(spec(timeout=100), kill_grace=30)
    clock.advance(600)
    core.tick()
    clock.advance(129)
    assert core.overdue() == []
    clock.advance(1)
    assert core.overdue() == ["s"]
    assert core.slots["s"].running.deadline == T0 + 601 + 130  # started at T0 + 601


def test_without_a_timeout_nothing_is_ever_overdue():
    core, clock = make(spec())
    clock.advance(600)
    core.tick()
    clock.advance(10**6)
    assert core.overdue() == []


def test_run_now_queues_once_and_is_skipped_while_busy():
    core, clock = make(spec())
    assert core.request("s") is None
    assert starts(core.tick()) == [("s", clock(), "manual", 0)]
    skip = core.request("s")
    assert isinstance(skip, Skip) and skip.reason == "still running"


def test_one_schedule_running_does_not_hold_up_another():
    core, clock = make(spec("a"), spec("b", cron="*/5 * * * *"))
    clock.advance(300)
    assert starts(core.tick()) == [("b", T0 + 300, "cron", 0)]
    core.finished("b", ok=False)  # b failed
    clock.advance(300)
    assert sorted(s[0] for s in starts(core.tick())) == ["a", "b"]


def test_persisted_slots_survive_a_restart_without_rerunning_a_fire_time():
    core, clock = make(spec())
    clock.advance(600)
    assert len(starts(core.tick())) == 1
    core.finished("s", ok=True)
    saved = {n: Slot.from_json(s.to_json()) for n, s in core.slots.items()}
    clock.advance(5)  # restart a few seconds later
    again = Core(clock)
    again.load([spec()], saved)
    assert again.tick() == []
    clock.advance(595)
    assert starts(again.tick()) == [("s", T0 + 1200, "cron", 0)]


def test_slot_json_round_trip_keeps_queue_and_running():
    slot = Slot(cursor=5.0, queue=[Pending(1.0, "retry", 2, 9.0)])
    assert Slot.from_json(slot.to_json()) == slot


def test_a_removed_schedule_forgets_its_state_unless_it_runs():
    core, clock = make(spec("a"), spec("b"))
    clock.advance(600)
    core.tick()
    core.finished("b", ok=True)
    core.load([])
    assert list(core.slots) == ["a"]  # a still runs: kept until it ends
    assert core.tick() == []


def test_next_wake_is_the_next_fire_time():
    core, clock = make(spec(cron="0 3 * * *"))
    assert core.next_wake() == T0 + 3 * 3600
