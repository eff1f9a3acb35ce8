"""How a metric is judged, in one place for stage checks, promotion gates and the comparison of
runs: the operators of a check such as ``">= 0.8"``, which metrics are better low, and
:func:`compare_runs` (what ``nbops.compare()`` and the Compare panel both show)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

CHECK_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse", "mape", "latency")


def lower_is_better(metric: str) -> bool:
    """True for a metric whose name says smaller is better (``val_loss``, ``rmse``, ...)."""
    name = metric.lower()
    return any(w in name for w in LOWER_IS_BETTER)


@dataclass(frozen=True)
class ComparedRuns:
    """Runs side by side, each keyed by its run id, in the order asked."""

    params_differ: dict[str, dict[str, str | None]]  # param -> {run id: value (None: not set)}
    params_same: dict[str, str]  # param -> the one value every run has
    metrics: dict[str, dict[str, float | None]]  # metric -> {run id: latest value}
    best: dict[str, str]  # metric -> the run id with the best finite value


def compare_runs(
    params: Mapping[str, Mapping[str, str]], metrics: Mapping[str, Mapping[str, float | None]]
) -> ComparedRuns:
    """The one comparison of runs (``nbops.compare()`` and the Compare panel): from each run's
    params and latest metrics (``{run id: {key: value}}``, runs in order), the params that differ
    (a run without the param counts as different), those that are the same, and per metric the
    run with the best value (lowest when :func:`lower_is_better`, else highest; NaN, infinities
    and missing values never win; a tie goes to the earlier run). Keys are sorted."""
    run_ids = list(params) + [r for r in metrics if r not in params]
    differ: dict[str, dict[str, str | None]] = {}
    same: dict[str, str] = {}
    for key in sorted({k for p in params.values() for k in p}):
        values = {rid: params.get(rid, {}).get(key) for rid in run_ids}
        distinct = set(values.values())
        if len(distinct) == 1 and None not in distinct:
            same[key] = str(next(iter(distinct)))
        else:
            differ[key] = values
    table = {
        key: {rid: metrics.get(rid, {}).get(key) for rid in run_ids}
        for key in sorted({k for m in metrics.values() for k in m})
    }
    best: dict[str, str] = {}
    for key, by_run in table.items():
        present = {rid: v for rid, v in by_run.items() if v is not None and math.isfinite(v)}
        if present:
            pick = min if lower_is_better(key) else max
            best[key] = pick(present, key=lambda rid: present[rid])
    return ComparedRuns(differ, same, table, best)
