"""check_drift: KS / chi-squared / PSI per column on tables with fixed seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nbops
from nbops.errors import InvalidInput
from nbops.ops.drift import check_drift


def tables(shift: float = 0.0, seed: int = 0, n: int = 600) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, n),
            "moving": rng.normal(0, 1, n),
            "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "count": rng.integers(0, 10, n),
        }
    )
    cur = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, n),
            "moving": rng.normal(shift, 1, n),
            "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "count": rng.integers(0, 10, n),
        }
    )
    return ref, cur


def test_a_shifted_column_drifts_and_an_unshifted_one_does_not():
    ref, cur = tables(shift=0.6, seed=1)  # a seed whose unshifted columns raise no false alarm
    rep = check_drift(ref, cur)
    assert rep.drifted and rep.drifted_columns == ["moving"]
    assert rep["moving"].test == "ks" and rep["moving"].p_value < 1e-6
    assert rep["moving"].psi > 0.2  # a major shift by the usual PSI reading
    assert rep["stable"].p_value > 0.05 and rep["stable"].psi < 0.1
    assert rep["color"].kind == "categorical" and rep["color"].test == "chi2"
    assert "1 of 4 columns drifted (p < 0.05): moving" in rep.table()
    assert "<tr class='drift'><td>moving</td>" in rep.to_html()


def test_same_distribution_does_not_drift():
    rep = check_drift(*tables(shift=0.0, seed=1))
    assert not rep.drifted and rep.drifted_columns == []


def test_a_category_mix_that_changed_drifts_by_chi_squared():
    ref, cur = tables(seed=2)
    rng = np.random.default_rng(3)
    cur["color"] = rng.choice(["red", "green", "blue", "pink"], len(cur), p=[0.2, 0.3, 0.2, 0.3])
    rep = check_drift(ref, cur)
    assert rep.drifted_columns == ["color"] and rep["color"].p_value < 1e-6
    assert rep["color"].psi > 0.2


def test_statistics_are_scipys():
    from scipy import stats

    ref, cur = tables(shift=0.3, seed=4)
    rep = check_drift(ref, cur)
    expected = stats.ks_2samp(ref["moving"], cur["moving"])
    assert rep["moving"].statistic == pytest.approx(expected.statistic)
    assert rep["moving"].p_value == pytest.approx(expected.pvalue)


def test_threshold_decides():
    ref, cur = tables(shift=0.15, seed=5)
    p = check_drift(ref, cur)["moving"].p_value
    assert check_drift(ref, cur, threshold=min(1.0, p * 2))["moving"].drifted
    assert not check_drift(ref, cur, threshold=p / 2)["moving"].drifted


def test_tables_that_do_not_match_are_refused_naming_what_differs():
    ref, cur = tables()
    with pytest.raises(InvalidInput, match="missing from current: count; not in reference: n"):
        check_drift(ref, cur.rename(columns={"count": "n"}))
    cur["stable"] = cur["stable"].astype(str)
    with pytest.raises(InvalidInput, match="column 'stable' is numeric .* categorical"):
        check_drift(ref, cur)
    with pytest.raises(InvalidInput, match="threshold 2"):
        check_drift(ref, ref, threshold=2)
    with pytest.raises(InvalidInput, match="no values in the current"):
        check_drift(ref[["stable"]], pd.DataFrame({"stable": [np.nan, np.nan]}))


def test_exported_lazily_from_nbops():
    assert nbops.check_drift is check_drift
