"""nbops.comparisons.compare_runs: the one comparison behind nbops.compare() and the panel."""

from __future__ import annotations

import math

from nbops.comparisons import compare_runs


def test_params_that_differ_include_a_param_one_run_lacks() -> None:
    cmp = compare_runs(
        {"a": {"C": "1", "seed": "0", "kind": "rf"}, "b": {"C": "2", "seed": "0"}},
        {"a": {}, "b": {}},
    )
    assert cmp.params_same == {"seed": "0"}
    assert cmp.params_differ == {"C": {"a": "1", "b": "2"}, "kind": {"a": "rf", "b": None}}


def test_best_is_lowest_for_loss_like_names_and_highest_otherwise() -> None:
    metrics: dict[str, dict[str, float | None]] = {
        "a": {"latency_ms": 5.0, "val_loss": 0.2, "acc": 0.9, "mape": 0.4},
        "b": {"latency_ms": 2.0, "val_loss": 0.3, "acc": 0.8, "mape": 0.1},
    }
    cmp = compare_runs({"a": {}, "b": {}}, metrics)
    assert cmp.best == {"acc": "a", "latency_ms": "b", "mape": "b", "val_loss": "a"}
    assert cmp.metrics["acc"] == {"a": 0.9, "b": 0.8}


def test_nan_infinite_and_missing_values_never_win_and_ties_go_to_the_earlier_run() -> None:
    metrics: dict[str, dict[str, float | None]] = {
        "a": {"acc": math.nan, "loss": 1.0, "f1": 0.5},
        "b": {"acc": 0.1, "loss": -math.inf, "f1": 0.5},
        "c": {"acc": None, "loss": 2.0},
    }
    cmp = compare_runs({"a": {}, "b": {}, "c": {}}, metrics)
    assert cmp.best == {"acc": "b", "loss": "a", "f1": "a"}
    assert cmp.metrics["f1"] == {"a": 0.5, "b": 0.5, "c": None}
    assert compare_runs({"a": {}}, {"a": {"acc": math.nan}}).best == {}
