"""How a metric is judged, in one place for stage checks, promotion gates and the best value of
a comparison: the operators of a check such as ``">= 0.8"``, and which metrics are better low."""

from __future__ import annotations

import operator
from collections.abc import Callable

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
