"""nbops.mlflow.search_syntax against the installed MLflow's SearchUtils: on generated filters and
order_by clauses (valid and not) both give the same parsed form, or refuse with the same
message. An MLflow upgrade that changes the syntax fails here."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow.utils.search_utils import SearchUtils

from nbops.mlflow import search, search_syntax

PREFIXES = [
    "metrics.",
    "metric.",
    "params.",
    "param.",
    "parameters.",
    "tags.",
    "tag.",
    "attributes.",
    "attr.",
    "run.",
    "dataset.",
    "datasets.",
    "`metrics`.",
    "`params`.",
    "bogus.",
    "",
]
KEYS = [
    "acc",
    "f1_score",
    "`a b`",
    "`nbops.stage`",
    '"quoted key"',
    "'single'",
    "nbops.stage",
    "start_time",
    "end_time",
    "run_id",
    "run_name",
    "status",
    "user_id",
    "artifact_uri",
    "created",
    "Created",
    "`Run name`",
    "name",
    "digest",
    "context",
    "lifecycle_stage",
    "x.y.z",
    "`unclosed",
    "",
]
COMPARATORS = [
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "LIKE",
    "ILIKE",
    "like",
    "ilike",
    "IN",
    "NOT IN",
    "not in",
    "IS NULL",
    "IS NOT NULL",
    "is null",
    "==",
    "<>",
    "~",
    "",
]
VALUES = [
    "0.9",
    "1",
    "-2",
    "1e-3",
    "-1.5E5",
    ".5",
    "'1.0'",
    "'%x%'",
    "'it''s'",
    '"FINISHED"',
    "'a b'",
    "word",
    "`tick`",
    "('a', 'b')",
    "('a')",
    "()",
    "(1, 2)",
    "('a', 1)",
    "('a',",
    "NULL",
    "''",
    "",
]
JOINERS = [" and "] * 6 + [" AND ", " And ", " and\n", " or ", " ", "; ", ", "]


NAMES = ["acc", "f1_score", "`a b`", "`nbops.stage`", '"quoted key"', "nbops.stage", "x-y"]
NUMBERS = ["0.9", "1", "-2", "1e-3", "-1.5E5", ".5", "0"]
STRINGS = ["'1.0'", "'%x%'", '"FINISHED"', "'a b'", "''", "'C=0.1'", '"it\'s"']
LISTS = ["('a', 'b')", "('a')", "('a','b','c')", '("x", "y")']


@st.composite
def well_typed(draw: Any) -> str:
    """A comparison MLflow accepts (mostly): a key, comparator and value of matching kinds."""
    kind = draw(st.sampled_from(["metric", "param", "tag", "numeric", "string", "list", "null"]))
    if kind == "metric":
        head = draw(st.sampled_from(["metrics.", "metric.", "`metrics`."])) + draw(
            st.sampled_from(NAMES)
        )
        rest = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<="])) + " "
        rest += draw(st.sampled_from(NUMBERS))
    elif kind in ("param", "tag"):
        prefixes = ["params.", "param.", "parameters."] if kind == "param" else ["tags.", "tag."]
        head = draw(st.sampled_from(prefixes)) + draw(st.sampled_from(NAMES))
        rest = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "like"])) + " "
        rest += draw(st.sampled_from(STRINGS))
    elif kind == "numeric":
        head = draw(st.sampled_from(["", "attributes.", "attr.", "run."])) + draw(
            st.sampled_from(["start_time", "end_time", "created", "Created"])
        )
        rest = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<="])) + " "
        rest += draw(st.sampled_from(NUMBERS))
    elif kind == "string":
        head = draw(st.sampled_from(["", "attributes.", "attr."])) + draw(
            st.sampled_from(["status", "run_name", "run_id", "user_id", "`Run name`"])
        )
        rest = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"])) + " "
        rest += draw(st.sampled_from(STRINGS))
    elif kind == "list":
        head = draw(st.sampled_from(["attributes.run_id", "run_id", "attributes.status"]))
        rest = draw(st.sampled_from(["IN", "NOT IN"])) + " " + draw(st.sampled_from(LISTS))
    else:
        head = draw(st.sampled_from(["params.", "tags.", "metrics."])) + draw(
            st.sampled_from(NAMES)
        )
        rest = draw(st.sampled_from(["IS NULL", "IS NOT NULL", "is null", "is not null"]))
    return f"{head} {rest}"


@st.composite
def anything(draw: Any) -> str:
    """A comparison of any pieces (mostly refused, each for its own reason)."""
    prefix, key = draw(st.sampled_from(PREFIXES)), draw(st.sampled_from(KEYS))
    comp, value = draw(st.sampled_from(COMPARATORS)), draw(st.sampled_from(VALUES))
    space = draw(st.sampled_from([" ", "  ", ""]))
    return f"{prefix}{key}{space}{comp}{space}{value}".strip()


@st.composite
def filters(draw: Any) -> str:
    n = draw(st.integers(1, 4))
    parts = [draw(anything() if draw(st.integers(0, 5)) == 0 else well_typed()) for _ in range(n)]
    text = parts[0]
    for p in parts[1:]:
        text += draw(st.sampled_from(JOINERS)) + p
    if draw(st.integers(0, 9)) == 0:
        text = "(" + text + ")"
    return text


@st.composite
def order_bys(draw: Any) -> str:
    if draw(st.integers(0, 7)) == 0:
        return draw(
            st.sampled_from(["timestamp", "timestamp DESC", "timestamp asc", "timestamp x"])
        )
    if draw(st.booleans()):  # well formed, mostly accepted
        prefix = draw(st.sampled_from(["metrics.", "params.", "tags.", "attributes.", ""]))
        key = draw(
            st.sampled_from(NAMES)
            if prefix in ("metrics.", "params.", "tags.")
            else st.sampled_from(["start_time", "end_time", "created", "status", "run_name"])
        )
    else:
        prefix, key = draw(st.sampled_from(PREFIXES)), draw(st.sampled_from(KEYS))
    tail = draw(st.sampled_from(["", " ASC", " DESC", " asc", " desc", " up", " ASC DESC", ","]))
    return f"{prefix}{key}{tail}"


def outcome(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", parse(text)
    except Exception as exc:  # noqa: BLE001 - the message is what is compared
        return "refused", str(exc)


def mlflow_filter(text: str) -> Any:
    return SearchUtils.parse_search_filter(text)


def mlflow_order(text: str) -> Any:
    return SearchUtils.parse_order_by_for_search_runs(text)


FUZZ = dict(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(**FUZZ)
@given(filters())
@example("metrics.accuracy > 0.9 and params.C = '1.0'")
@example("attributes.run_id IN ('a', 'b') and tags.`nbops.stage` LIKE '%'")
@example("params.C = 1")
@example("metrics.a > 1 or metrics.b < 2")
def test_a_generated_filter_parses_as_mlflow_parses_it(text: str) -> None:
    assert outcome(search_syntax.parse_filter, text) == outcome(mlflow_filter, text)


@settings(**FUZZ)
@given(st.text(alphabet="metricsparam.tag`'\"()=<>!, %_-0123456789 andorINOTSUL;\n", max_size=60))
def test_any_text_as_a_filter_parses_or_is_refused_as_mlflow_does(text: str) -> None:
    assert outcome(search_syntax.parse_filter, text) == outcome(mlflow_filter, text)


@settings(**FUZZ)
@given(order_bys())
@example("metrics.accuracy DESC")
@example("attributes.start_time ASC")
@example('metrics."x')
def test_a_generated_order_by_parses_as_mlflow_parses_it(text: str) -> None:
    assert outcome(search_syntax.parse_order_by, text) == outcome(mlflow_order, text)


@settings(**FUZZ)
@given(st.text(alphabet="metricsparam.tag`'\"()=<>, _-0123 ascdeASCDE;\n", max_size=40))
def test_any_text_as_an_order_by_parses_or_is_refused_as_mlflow_does(text: str) -> None:
    assert outcome(search_syntax.parse_order_by, text) == outcome(mlflow_order, text)


@pytest.mark.parametrize("key", ["created", "Created", "run name", "Run Name", "acc", None])
def test_key_aliases_are_mlflows(key: Any) -> None:
    assert search.key_alias(key) == str(SearchUtils.translate_key_alias(key))


def test_a_refusal_carries_mlflows_message() -> None:
    with pytest.raises(search.SearchSyntaxError) as err:
        search.parse_filter("metrics.x >")
    assert str(err.value) == "Invalid clause(s) in filter string: 'metrics.x', '>'"


def test_parsing_imports_no_mlflow() -> None:
    code = (
        "import sys\nfrom nbops.mlflow import search\n"
        "search.parse_filter(\"metrics.a > 1 and params.b = 'x'\")\n"
        "search.parse_order_by('metrics.a DESC')\nprint('mlflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False", out.stderr
