"""Cron expressions and time zones: validation and fire times (croniter does the cron parsing).

A 5-field expression is standard cron (minute hour day month weekday, 0 = Sunday); a 6-field one
has a leading seconds field. Fire times are computed on the wall clock of the schedule's time zone
(IANA name, default: the machine's local zone) and handled as epoch seconds everywhere else.
DST: a wall-clock time that a fall-back repeats fires once (a fire time whose local wall-clock
time is not later than the previous one's is dropped); a time that a spring-forward skips fires
at the first valid time after it.

An expression must fire, and not too rarely: ``check_fires`` refuses one with no fire time (the
30th of February, the 31st of April) and one whose next fire time, or the one after it, is more
than ``MAX_GAP_YEARS`` years away (the 5th Monday of February: every 28 years). Schedules are
created through it and stored ones are checked with it when they are loaded, so every code
path that computes a fire time later sees only expressions that have one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from typing import Any

from nbops.errors import InvalidInput

CRON_HINT = (
    "write 5 fields 'minute hour day month weekday' like '0 2 * * *' (every day at 02:00), "
    "or 6 with leading seconds like '*/10 * * * * *', or @hourly/@daily/@weekly/@monthly/@yearly"
)


MAX_CRON_CHARS = 500
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
"""Cron's shorthands (croniter expands them); @reboot has no meaning for a scheduler."""


def _croniter() -> Any:
    from croniter import croniter

    return croniter


def check_cron(expr: str, field: str = "cron") -> str:
    """The expression, stripped, if croniter accepts it; else InvalidInput naming ``field``."""
    if len(str(expr)) > MAX_CRON_CHARS:
        raise InvalidInput(
            f"{field}: the expression is {len(str(expr))} characters long (at most "
            f"{MAX_CRON_CHARS})",
            CRON_HINT,
        )
    text = " ".join(str(expr).split())
    if text.lower() in ALIASES:
        return text.lower()
    n = len(text.split())
    if n not in (5, 6):
        raise InvalidInput(
            f"{field}: {expr!r} has {n} field{'' if n == 1 else 's'}, expected 5 or 6", CRON_HINT
        )
    croniter = _croniter()
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=timezone.utc), second_at_beginning=n == 6)
        ok = croniter.is_valid(text, second_at_beginning=n == 6)
    except Exception as exc:  # croniter raises several types for bad fields
        raise InvalidInput(
            f"{field}: {expr!r} is not a valid cron expression ({exc})", CRON_HINT
        ) from None
    if not ok:
        raise InvalidInput(f"{field}: {expr!r} is not a valid cron expression", CRON_HINT)
    return text


MAX_GAP_YEARS = 5
"""A schedule must fire at least once in this many years (decided: rarer is a typo)."""
MAX_GAP = MAX_GAP_YEARS * 365.25 * 86400
NEVER_HINT = (
    "check the day and month fields: February has at most 29 days, April, June, September and "
    "November have 30; 'L' is the last day of the month, e.g. '0 0 L 2 *'"
)


def check_fires(expr: str, tz_name: str | None, now: float, field: str = "cron") -> str:
    """``check_cron`` plus: the expression has a next fire time in ``tz_name`` after ``now``,
    within MAX_GAP, and the one after it too, and a previous one (catch-up steps back);
    InvalidInput naming ``field`` otherwise. The time zone is checked first (``timezone``)."""
    zone(tz_name)
    text = check_cron(expr, field)
    try:
        times = fire_times(text, tz_name, now)
        first = next(times)
        second = next(times)
        back = _croniter()(
            text,
            datetime.fromtimestamp(now, zone(tz_name)),
            second_at_beginning=len(text.split()) == 6,
        )
        back.get_prev(datetime)
    except InvalidInput:
        raise
    except Exception as exc:  # croniter: CroniterBadDateError, or anything it cannot iterate
        why = "no date matches it" if "find" in str(exc) else f"{type(exc).__name__}: {exc}"
        raise InvalidInput(f"{field}: {expr!r} never fires ({why})", NEVER_HINT) from None
    for t, since in ((first, now), (second, first)):
        if t - since > MAX_GAP:
            when = format_time(t, tz_name)
            raise InvalidInput(
                f"{field}: {expr!r} fires next on {when}, more than {MAX_GAP_YEARS} years "
                f"{'away' if since == now else 'after the time before'}",
                f"nbops refuses schedules that fire less than once in {MAX_GAP_YEARS} years; "
                + NEVER_HINT,
            )
    return text


def local_zone_name() -> str:
    """The machine's IANA time zone name (TZ, /etc/localtime), 'UTC' when unknown."""
    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
    except Exception:  # no zone configured at all
        name = None
    return name or os.environ.get("TZ") or "UTC"


@lru_cache(maxsize=64)
def zone(name: str | None, field: str = "timezone") -> tzinfo:
    """The ZoneInfo of an IANA name (None: local); InvalidInput naming ``field`` if unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    key = name or local_zone_name()
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise InvalidInput(
            f"{field}: unknown time zone {key!r}",
            "use an IANA name like 'Europe/Berlin', 'America/New_York' or 'UTC'",
        ) from None


def zone_label(name: str | None) -> str:
    """How a schedule's zone is shown: 'Europe/Berlin', or 'Etc/UTC (local)' for the default."""
    return name if name else f"{local_zone_name()} (local)"


def fire_times(expr: str, tz_name: str | None, after: float) -> Iterator[float]:
    """Fire times (epoch seconds) strictly after ``after``, in order, DST-safe (module doc)."""
    tz = zone(tz_name)
    text = check_cron(expr)
    start = datetime.fromtimestamp(after, tz)
    it = _croniter()(text, start, second_at_beginning=len(text.split()) == 6)
    last_wall: datetime | None = None
    while True:
        when: datetime = it.get_next(datetime)
        wall = when.replace(tzinfo=None)
        if last_wall is not None and wall <= last_wall:
            continue  # a wall-clock time repeated by a DST fall-back: already fired
        last_wall = wall
        t = when.timestamp()
        if t > after:
            yield t


def next_fire(expr: str, tz_name: str | None, after: float) -> float:
    """The first fire time strictly after ``after``."""
    return next(fire_times(expr, tz_name, after))


SCAN_CAP = 20_000
"""At most this many missed fire times are counted one by one (about 0.5 s of croniter)."""


def fires_between(
    expr: str, tz_name: str | None, after: float, until: float, limit: int
) -> tuple[list[float], int]:
    """Fire times in (after, until]: the last ``limit`` of them, in order, and how many there
    were (counted up to SCAN_CAP; beyond that the count is SCAN_CAP + 1 and the last ``limit``
    are found by stepping back from ``until``)."""
    kept: list[float] = []
    count = 0
    for t in fire_times(expr, tz_name, after):
        if t > until:
            return kept, count
        count += 1
        kept.append(t)
        if len(kept) > limit:
            kept.pop(0)
        if count > SCAN_CAP:
            break
    text = check_cron(expr)
    back = _croniter()(
        text,
        datetime.fromtimestamp(until, zone(tz_name)),
        second_at_beginning=len(text.split()) == 6,
    )
    start = until
    for _ in range(limit + 1):
        start = back.get_prev(datetime).timestamp()
    tail = [t for t in _take_until(fire_times(expr, tz_name, max(after, start)), until)]
    return tail[-limit:], count


def _take_until(times: Iterator[float], until: float) -> Iterator[float]:
    for t in times:
        if t > until:
            return
        yield t


def format_time(epoch: float | None, tz_name: str | None) -> str:
    """'2026-11-26 02:00:00 CET' in the schedule's zone; '-' for None."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, zone(tz_name)).strftime("%Y-%m-%d %H:%M:%S %Z")
