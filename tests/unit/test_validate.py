import math

import numpy as np
import pytest

from nbops.errors import InvalidInput, NbopsError
from nbops.tracking import validate


@pytest.mark.parametrize("key", ["accuracy", "train/loss", "a.b-c d:e", "x" * 250])
def test_valid_keys_are_accepted(key):
    assert validate.key(key) == key


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "bad!char", "x" * 251, 3, None])
def test_invalid_key_names_the_key_and_says_the_rule(key):
    with pytest.raises(InvalidInput) as err:
        validate.key(key, "metric")
    assert repr(key) in str(err.value)
    assert err.value.hint


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_non_finite_metric_is_refused_naming_metric_and_value(value):
    with pytest.raises(InvalidInput) as err:
        validate.metric_value("loss", value)
    assert "'loss'" in err.value.message and "not finite" in err.value.message


@pytest.mark.parametrize("value", ["0.9", None, [1], True])
def test_non_numeric_metric_is_refused(value):
    with pytest.raises(InvalidInput) as err:
        validate.metric_value("acc", value)
    assert "not a number" in err.value.message


def test_numpy_scalars_are_metrics():
    assert validate.metric_value("a", np.float32(0.5)) == 0.5
    assert validate.metric_value("a", np.int64(3)) == 3.0


@pytest.mark.parametrize("text", ["novalue", "=x", ""])
def test_malformed_tag_is_an_nbops_error_with_the_fix(text):
    with pytest.raises(NbopsError) as err:
        validate.parse_tag(text)
    assert repr(text) in err.value.message
    assert "KEY=VALUE" in err.value.message


def test_tag_parses_key_and_value_with_equals_in_value():
    assert validate.parse_tag("expr=a=b") == ("expr", "a=b")


def test_too_long_param_is_refused():
    with pytest.raises(InvalidInput, match="6000"):
        validate.param_value("p", "x" * 6001)


def test_nbops_error_renders_without_traceback_in_ipython():
    err = InvalidInput("metric 'x' is nan", "fix it")
    lines = err._render_traceback_()
    assert "metric 'x' is nan" in lines[0] and "hint: fix it" in lines[1]


@pytest.mark.parametrize("path", ["plots/a.png", "/lead/and/trail/", "cells/train/source.py"])
def test_artifact_paths_inside_the_run_are_accepted(path):
    assert validate.artifact_path(path) == path.strip("/")


@pytest.mark.parametrize(
    "path", ["..", "../x", "a/../../b", "a//b", "./a", "", "/", "a\\..\\b", "a\x00b", "x" * 1001, 5]
)
def test_artifact_paths_that_could_leave_the_run_are_refused(path):
    with pytest.raises(InvalidInput) as err:
        validate.artifact_path(path, "artifact_file")
    assert "artifact_file" in err.value.message and err.value.hint


def test_a_run_refuses_artifact_destinations_outside_it_and_spools_nothing(tmp_path):
    from nbops.tracking.run import Run

    (tmp_path / ".nbops").mkdir()
    src = tmp_path / "f.txt"
    src.write_text("x")
    run = Run("e", None, root=tmp_path, uri="http://127.0.0.1:9", capture=False, spawn_writer=False)
    before = run.counts["artifacts"]
    for call in (
        lambda: run.log_text("x", "../../escape.txt"),
        lambda: run.log_text("x", "a/.."),
        lambda: run.log_png(b"\x89PNG", "../p.png"),
        lambda: run.log_artifact(src, "../../up"),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert run.counts["artifacts"] == before
    run.log_text("fine", "notes/ok.txt")
    assert run.counts["artifacts"] == before + 1
    run.end("FINISHED", timeout=0)
