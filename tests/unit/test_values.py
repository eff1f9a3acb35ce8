"""nbops/values.py: the one reader for typed parameter values refuses hostile YAML in one line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import ParameterError
from nbops.values import MAX_DEPTH, MAX_VALUE_CHARS, parse_recorded, parse_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("0.1", 0.1),
        ("abc", "abc"),
        ("true", True),
        ("null", None),
        ("", ""),
        ("[1, 2]", [1, 2]),
        ("{a: 1}", {"a": 1}),
        ("'5'", "5"),
        ("1e-3", 0.001),
        ("-2.5E+4", -25000.0),
        ("2024-01-01", "2024-01-01"),  # dates stay the text typed
        ("x: [", "x: ["),  # not YAML: the text as typed
    ],
)
def test_plain_values_are_typed_like_yaml_scalars(text: str, expected: object) -> None:
    assert parse_value(text, "-p C") == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("&a [1]", "anchors"),
        ("*a", "aliases"),
        ("[&a [1,2], *a]", "anchors"),
        ('a: &a ["lol","lol"]\nb: &b [*a,*a]\nc: [*b,*b]', "anchors"),
        ("!!binary aGVsbG8=", "tags"),
        ("!!python/object:os.system x", "tags"),
        ("!!set {a, b}", "tags"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested"),
        ("9" * 5000, "5000-character number"),
        ("[1, " + "7" * 5000 + "]", "number"),
        ("x" * (MAX_VALUE_CHARS + 1), "characters long"),
        ("a\x00b", "NUL"),
    ],
)
def test_hostile_values_are_refused_naming_the_parameter(text: str, says: str) -> None:
    with pytest.raises(ParameterError) as err:
        parse_value(text, "-p train.C")
    assert "-p train.C" in str(err.value) and says in str(err.value)
    assert "\n" not in err.value.message


def test_a_huge_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(ParameterError):
        parse_value("[" * 5000 + "]" * 5000, "--sweep C")


# YAML streams hold printable characters only (a control character makes the value plain text)
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | printable,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(printable, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_json_text_of_any_plain_value_reads_back_equal(value: object) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_VALUE_CHARS:
        return
    assert parse_value(text, "-p v") == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_value_or_a_parameter_error(text: str) -> None:
    try:
        value = parse_value(text, "-p v")
    except ParameterError as err:
        assert err.message.startswith("-p v: ")
    else:
        json.dumps(value)  # JSON-shaped: survives papermill and MLflow
    parse_recorded(text)  # never raises
