"""Cron fire times in explicit time zones, DST-safe; validation errors name the field; the
execution command line and summary reading; the systemd unit."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nbops.errors import InvalidInput
from nbops.scheduler import cron
from nbops.scheduler.execution import _from_summary, command
from nbops.scheduler.model import Schedule
from nbops.scheduler.systemd import install, unit_text

BERLIN = ZoneInfo("Europe/Berlin")


def local(epochs, tz=BERLIN) -> list[str]:
    return [datetime.fromtimestamp(t, tz).isoformat() for t in epochs]


def at(*args: int, tz=BERLIN) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def test_the_cron_time_is_read_in_the_schedules_time_zone():
    after = at(2026, 1, 10, 12, 0, tz=timezone.utc)
    t = cron.next_fire("0 2 * * *", "America/New_York", after)
    assert datetime.fromtimestamp(t, timezone.utc).isoformat() == "2026-01-11T07:00:00+00:00"
    t = cron.next_fire("0 2 * * *", "Asia/Tokyo", after)
    assert datetime.fromtimestamp(t, timezone.utc).isoformat() == "2026-01-10T17:00:00+00:00"


def test_a_daily_time_skipped_by_spring_forward_fires_once_that_day():
    got = local(islice(cron.fire_times("30 2 * * *", "Europe/Berlin", at(2026, 3, 28, 12)), 3))
    assert got == [
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night: at the first valid time
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_daily_time_repeated_by_fall_back_fires_once():
    got = local(islice(cron.fire_times("30 2 * * *", "Europe/Berlin", at(2026, 10, 24, 12)), 3))
    assert got == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_hourly_fire_times_never_repeat_a_wall_clock_hour_on_fall_back():
    times = list(islice(cron.fire_times("0 * * * *", "Europe/Berlin", at(2026, 10, 25, 0)), 4))
    walls = [datetime.fromtimestamp(t, BERLIN).strftime("%H:%M") for t in times]
    assert walls == ["01:00", "02:00", "03:00", "04:00"]
    assert times == sorted(times)


def test_six_fields_have_leading_seconds():
    start = at(2026, 5, 1, 0, 0, 0, tz=timezone.utc)
    got = list(islice(cron.fire_times("*/15 * * * * *", "UTC", start), 3))
    assert [t - start for t in got] == [15, 30, 45]


def test_cron_shorthands_are_accepted():
    start = at(2026, 5, 1, 12, tz=timezone.utc)
    assert cron.check_cron("@Daily") == "@daily"
    assert cron.next_fire("@hourly", "UTC", start) == start + 3600
    with pytest.raises(InvalidInput, match="has 1 field, expected"):
        cron.check_cron("@reboot")


def test_weekday_zero_is_sunday_as_in_cron():
    t = cron.next_fire("0 0 * * 0", "UTC", at(2026, 11, 25, 12, tz=timezone.utc))
    assert datetime.fromtimestamp(t, timezone.utc).strftime("%A") == "Sunday"


def test_fires_between_counts_all_missed_times_and_keeps_the_last_ones():
    start = at(2026, 5, 1, tz=timezone.utc)
    kept, count = cron.fires_between("* * * * *", "UTC", start, start + 3600, limit=2)
    assert count == 60 and kept == [start + 3540, start + 3600]


def test_a_huge_downtime_is_bounded_in_work():
    start = at(2026, 5, 1, tz=timezone.utc)
    kept, count = cron.fires_between("* * * * * *", "UTC", start, start + 10 * 86400, limit=2)
    assert count == cron.SCAN_CAP + 1
    assert kept == [start + 10 * 86400 - 1, start + 10 * 86400]


@pytest.mark.parametrize(
    "expr, words",
    [
        ("61 * * * *", "not a valid cron expression"),
        ("0 2 * *", "has 4 fields"),
        ("* * * * * * * *", "has 8 fields"),
        ("0 2 * * funday", "not a valid cron expression"),
        ("", "has 0 fields"),
    ],
)
def test_a_bad_cron_expression_names_the_field(expr, words):
    with pytest.raises(InvalidInput) as err:
        cron.check_cron(expr)
    assert err.value.message.startswith("cron: ") and words in err.value.message
    assert "0 2 * * *" in (err.value.hint or "")


def test_an_unknown_time_zone_names_the_field():
    with pytest.raises(InvalidInput, match="timezone: unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")


def test_the_default_zone_is_local_and_shown_as_such():
    assert cron.zone_label(None) == f"{cron.local_zone_name()} (local)"
    assert cron.zone_label("Europe/Berlin") == "Europe/Berlin"


def test_the_execution_command_runs_the_stages_tagged_with_a_timeout_and_summary(tmp_path):
    spec = Schedule(
        name="nightly",
        cron="0 2 * * *",
        stages=["prepare", "train"],
        params={"train.C": 0.5, "kind": "rf", "flag": "true"},
        timeout=90,
    )
    cmd = command(spec, tmp_path / "s.json", history_id=7)
    assert cmd[:6] == [sys.executable, "-m", "nbops", "run", "prepare", "train"]
    assert "--force" in cmd
    pairs = list(zip(cmd, cmd[1:], strict=False))
    assert ("-p", "train.C=0.5") in pairs and ("-p", "kind=rf") in pairs
    assert ("-p", 'flag="true"') in pairs  # text that YAML would read as a bool stays text
    assert ("--tag", "nbops.schedule=nightly") in pairs
    assert ("--tag", "nbops.schedule.execution=7") in pairs
    assert ("--timeout", "90") in pairs and ("--summary", str(tmp_path / "s.json")) in pairs


def test_the_runner_summary_gives_status_run_ids_and_the_failed_run():
    summary = {
        "pipeline_run_id": "P",
        "exit_code": 1,
        "status": "failed",
        "stages": {
            "prepare": {"status": "done", "run_ids": ["a"]},
            "train": {"status": "failed", "run_ids": ["b", "c"]},
        },
        "error": "stage train failed: ZeroDivisionError",
        "seconds": 3.2,
    }
    res = _from_summary(json.loads(json.dumps(summary)), 1)
    assert (res.status, res.pipeline_run_id, res.failed_run_id) == ("failed", "P", "b")
    assert res.run_ids == ["a", "b", "c"] and "ZeroDivisionError" in (res.error or "")


def test_the_systemd_unit_runs_the_daemon_in_the_project(tmp_path):
    root = tmp_path / "my proj"
    text = unit_text(root)
    assert f"ExecStart={sys.executable} -m nbops scheduler" in text.replace("'", "")
    assert Path(sys.executable).is_absolute()
    assert f"WorkingDirectory={root}\n" in text and "Restart=on-failure" in text
    path = install(root, home=tmp_path / "home")
    assert path.parent == tmp_path / "home" / ".config" / "systemd" / "user"
    assert path.read_text() == text and path.name == "nbops-scheduler-my-proj.service"
