"""A schedule is checked once, the same way for every way in (validation.validate): cron
expressions that never fire or fire too rarely, zones that do not exist, retries/timeouts that are
not whole numbers, params no stage declares are refused; params survive the trip to `nbops run -p`
exactly; whatever croniter accepts after the check keeps giving fire times; a damaged slot never
reaches the core. Hypothesis where the input comes from people or files."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.errors import InvalidInput, NbopsError, ParameterError
from nbops.pipeline import spec as specmod
from nbops.pipeline.runner import parse_assignments
from nbops.scheduler import cron, params, validation
from nbops.scheduler.core import Core, Slot, Start
from nbops.scheduler.execution import command
from nbops.scheduler.model import Schedule
from nbops.values import parse_value
from tests.conftest import notebook

NOW = time.time()
YAML = """\
stages:
  prepare: {notebook: prepare.ipynb}
  train: {notebook: train.ipynb, after: [prepare]}
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("proj")
    notebook(root / "prepare.ipynb", ("rows = 10", ["parameters"]), "x = 1")
    notebook(root / "train.ipynb", ("C = 1.0\nseed = 0", ["parameters"]), "y = 2")
    (root / "nbops.yaml").write_text(YAML)
    return specmod.load(root / "nbops.yaml")


def check(pipeline: Any, **fields: Any) -> Schedule:
    return validation.validate({"name": "job", "cron": "0 2 * * *", **fields}, pipeline)


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 30 2 *",
        "0 0 31 4 *",
        "0 0 31 2,4,6,9,11 *",
        "0 0 31 6 *",
        "* * 30,31 2 *",
        "0 0 0 30 2 *",
        "0 0 30 2 5#5",
        "*/5 0 31 11 *",
    ],
)
def test_a_cron_that_never_fires_is_refused_naming_the_schedule_and_the_fix(pipeline, expr):
    with pytest.raises(InvalidInput) as err:
        check(pipeline, cron=expr)
    assert err.value.message == f"schedule 'job': cron: {expr!r} never fires (no date matches it)"
    assert "February has at most 29 days" in (err.value.hint or "")


@pytest.mark.parametrize("expr", ["0 0 * 2 1#5", "0 0 * 2 0#5", "0 0 29 2 1#5"])
def test_a_cron_whose_next_time_is_more_than_5_years_away_is_refused(pipeline, expr):
    with pytest.raises(InvalidInput, match="more than 5 years"):
        check(pipeline, cron=expr)


def test_rare_but_regular_crons_pass(pipeline):
    for expr in ("0 0 29 2 *", "0 0 L 2 *", "@yearly", "0 0 * * 1#5", "0 0 31 2 5"):
        assert check(pipeline, cron=expr).cron == expr


@pytest.mark.parametrize("tz", ["Mars/Base", "../../etc/passwd", "/etc/localtime", "x" * 300,
                                "Europe/Berlin\x00", "", "UTC "])  # fmt: skip
def test_a_time_zone_that_does_not_exist_is_refused(pipeline, tz):
    if tz == "":  # empty is the local zone
        assert check(pipeline, timezone=tz).timezone is None
        return
    with pytest.raises(InvalidInput, match="schedule 'job': timezone: unknown time zone"):
        check(pipeline, timezone=tz)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("retries", "3", "retries: '3' is not a whole number"),
        ("retries", 1.5, "retries: 1.5 is not a whole number"),
        ("retries", True, "retries: True is not a whole number"),
        ("retries", -1, "retries: -1 is out of range"),
        ("retries", 10**12, "retries: 1000000000000 is out of range"),
        ("retries", None, "retries: None is not a whole number"),
        ("timeout", "60", "timeout: '60' is not a whole number"),
        ("timeout", 1.5, "timeout: 1.5 is not a whole number"),
        ("timeout", False, "timeout: False is not a whole number"),
        ("timeout", 0, "timeout: 0 is out of range"),
        ("timeout", 10**12, "timeout: 1000000000000 is out of range"),
        ("timeout", math.inf, "timeout: inf is not a whole number"),
        ("catchup", "sometimes", "catchup: 'sometimes' is not one of"),
        ("stages", "train", "stages: 'train' is not a list"),
        ("stages", ["trian"], "stages: unknown stage 'trian'"),
        ("params", {"nope": 1}, "no stage the schedule runs declares a parameter 'nope'"),
        ("params", {"train.nope": 1}, "train.ipynb declares no parameter 'nope'"),
        ("params", {"a b": 1}, "params: 'a b' is not a parameter name"),
        ("params", [1], "params: '[1]' is not a map"),
        ("params", {"C": math.nan}, "params: C: NaN"),
        ("params", {"C": [math.inf]}, "params: C: inf cannot be stored as JSON"),
        ("params", {"C": 10**500}, "params: C: a 501-character number"),
        ("params", {"C": "x" * 20000}, "characters long"),
        ("name", "../x", "name: '../x' is not a valid schedule name"),
        ("name", 5, "name: 5 is not a valid schedule name"),
        ("cron", 5, "cron: 5 is not a cron expression"),
        ("source", "elsewhere", None),
        ("surprise", 1, "unknown field 'surprise'"),
    ],
)
def test_bad_fields_are_refused_by_the_one_validation(pipeline, field, value, words):
    fields = {"name": "job", "cron": "0 2 * * *", field: value}
    if field == "source":  # set by the caller, never taken from the data
        assert validation.validate(fields, pipeline).source == "cli"
        return
    with pytest.raises(NbopsError) as err:
        validation.validate(fields, pipeline)
    assert words in err.value.message, err.value.message
    assert err.value.hint


def test_params_of_stages_the_schedule_does_not_run_are_refused(pipeline):
    # train runs prepare first (after:), so prepare's params are taken; not the other way
    assert check(pipeline, stages=["train"], params={"rows": 5, "C": 0.5}).params == {
        "rows": 5,
        "C": 0.5,
    }
    with pytest.raises(InvalidInput, match="stage 'train' is not among those the schedule runs"):
        check(pipeline, stages=["prepare"], params={"train.C": 1})
    with pytest.raises(InvalidInput, match="no stage the schedule runs declares"):
        check(pipeline, stages=["prepare"], params={"seed": 1})


def test_cli_param_values_are_read_by_the_one_value_reader():
    assert params.parse_cli(["C=0.1", "train.seed=3", "s=abc", "d=2024-01-01", "e="]) == {
        "C": 0.1,
        "train.seed": 3,
        "s": "abc",
        "d": "2024-01-01",
        "e": "",
    }
    for bad, words in [("x=*a", "aliases"), ("x=!!python/none ''", "tags"), ("x=" + "9" * 500,
                       "number"), ("novalue", "is not NAME=VALUE")]:  # fmt: skip
        with pytest.raises(ParameterError, match=words):
            params.parse_cli([bad])


# --- the trip to `nbops run -p` -----------------------------------------------------------------
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | st.sampled_from(["2024-01-01", "yes", "no", "on", "null", "~", "1e3", "0x10", "1_000",
                      "a: b", "- x", "[1]", "{}", "#", "'q'", '"q"', " sp ", "\\", "\t", "%x"])
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(values)
def test_a_param_value_reaches_nbops_run_exactly(value):
    spec = Schedule(name="s", cron="@daily", params={"k": params.check("k", value)})
    argv = command(spec, Path("summary.json"))
    item = argv[argv.index("-p") + 1]
    assert item.startswith("k=") and "\x00" not in item
    assert _same(parse_value(item[2:], "-p k"), value)  # nbops.values, the one reader
    ((key, back),) = parse_assignments([item], "-p")  # and nbops run's own reading of -p
    assert key == "k" and _same(back, value)


@settings(max_examples=100, deadline=None)
@given(values)
def test_a_stored_param_value_survives_json(value):
    spec = Schedule(name="s", cron="@daily", params={"k": params.check("k", value)})
    again = Schedule.model_validate_json(spec.model_dump_json())
    assert _same(again.params["k"], value)


# --- cron fuzz ----------------------------------------------------------------------------------
def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    n = st.integers(lo, hi).map(str)
    return st.one_of(
        st.just("*"),
        n,
        st.tuples(n, n).map("-".join),
        st.tuples(st.just("*"), st.integers(1, 40)).map(lambda t: f"*/{t[1]}"),
        st.lists(n, min_size=1, max_size=3).map(",".join),
        st.sampled_from(["L", "?", "1W", "15W", "LW", "H", "5#5", "1#5", "L5", "-1", "0-0", "99"]),
    )


crons = st.tuples(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12), _field(0, 7)).map(
    " ".join
) | st.text(st.sampled_from("0123456789*/,-LW#? @abcdefhilmnorstuwy"), max_size=20)
zones = st.sampled_from([None, "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                         "Pacific/Chatham", "Asia/Kathmandu", "Nope/Nowhere"])  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crons, zones)
def test_a_cron_that_passes_the_check_always_has_fire_times(expr, tz):
    started = time.monotonic()
    try:
        text = cron.check_fires(expr, tz, NOW)
    except InvalidInput as err:
        assert err.message.startswith(("cron:", "timezone:")) and err.hint
        return
    finally:
        assert time.monotonic() - started < 5, f"{expr!r} took too long to check"
    t = cron.next_fire(text, tz, NOW)
    assert NOW < t <= NOW + cron.MAX_GAP
    kept, count = cron.fires_between(text, tz, NOW - 3600 * 3, NOW, limit=3)
    assert len(kept) <= 3 and count >= len(kept)
    core = Core(lambda: NOW)
    schedule = Schedule.model_validate(
        {"name": "s", "cron": text, "timezone": tz}, context={"now": NOW}
    )
    core.load([schedule], {"s": Slot(NOW - 86400 * 2)})
    actions = core.tick()  # after downtime: catch-up, never an exception
    assert all(a.name == "s" for a in actions) and not core.broken
    assert core.next_wake() is not None


def test_one_schedule_whose_fire_times_fail_is_dropped_by_the_core_and_the_others_fire():
    good = Schedule(name="good", cron="* * * * *")
    bad = Schedule.model_construct(name="bad", cron="0 0 30 2 *")  # stored past the check
    clock = [NOW]
    core = Core(lambda: clock[0])
    core.load([bad, good])
    clock[0] += 61
    actions = core.tick()
    assert [a.name for a in actions if isinstance(a, Start)] == ["good"]
    (skip,) = [a for a in actions if a.name == "bad"]
    assert "invalid schedule, not run" in skip.reason and "bad" in core.broken
    assert core.next_wake() is not None
    core.load([bad, good])  # reloaded unchanged: stays out; changed: taken again
    assert set(core.specs) == {"good"}
    core.load([bad.model_copy(update={"cron": "@daily"}), good])
    assert set(core.specs) == {"good", "bad"}


# --- damaged slots ------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
slot_like = st.fixed_dictionaries(
    {},
    optional={
        "cursor": json_values,
        "queue": st.lists(st.fixed_dictionaries({"fire": json_values, "reason": json_values},
                                                optional={"attempt": json_values}), max_size=2),
        "running": json_values | st.fixed_dictionaries({k: json_values for k in (
            "fire", "reason", "attempt", "started", "deadline", "history_id")}),
    },
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(slot_like | json_values)
def test_a_damaged_slot_is_refused_or_is_one_the_core_can_use(data):
    try:
        slot = Slot.from_json(json.loads(json.dumps(data)))
    except ValueError:
        return
    core = Core(lambda: NOW)
    core.load([Schedule(name="s", cron="* * * * *", timeout=60)], {"s": slot})
    core.tick()
    core.overdue()
    core.next_wake()
    core.finished("s", False)


# --- random requests and rows ------------------------------------------------------------------
def _maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return good | json_values


request = st.fixed_dictionaries(
    {"name": _maybe(st.sampled_from(["job", "a.b-c", "x" * 250, "../x", "<row 1>", ""]))},
    optional={
        "cron": _maybe(st.sampled_from(["@daily", "*/5 * * * *", "0 0 30 2 *", "0 0 L 2 *"])),
        "timezone": _maybe(st.sampled_from([None, "UTC", "Asia/Tokyo", "Nope/x"])),
        "stages": _maybe(st.lists(st.sampled_from(["prepare", "train", "nope"]), max_size=3)),
        "params": _maybe(
            st.dictionaries(st.sampled_from(["C", "rows", "train.C", "prepare.C", "x"]), values)
        ),
        "catchup": _maybe(st.sampled_from(["none", "latest", "all"])),
        "retries": _maybe(st.integers(-2, 200)),
        "timeout": _maybe(st.integers(-1, 10**8) | st.floats()),
        "on_failure": _maybe(st.sampled_from([None, "echo hi", "x\x00y"])),
        "source": json_values,
        "extra": json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(request)
def test_any_request_or_stored_row_is_a_valid_spec_or_an_nbops_error(pipeline, fields):
    try:
        spec = validation.validate(fields, pipeline, now=NOW)
    except NbopsError as err:
        assert err.message.startswith("schedule") and err.hint, err.message
        return
    again = json.loads(spec.model_dump_json())  # as stored, then loaded again
    again.pop("source")
    assert validation.validate(again, pipeline, now=NOW) == spec
    assert cron.next_fire(spec.cron, spec.timezone, NOW) > NOW
    command(spec, Path("summary.json"))
