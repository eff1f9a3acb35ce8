"""The shape of a ``%%track`` plan: each decision (:class:`Choice`), each recorded expression
(:class:`Site`), and the tests a value passes to be logged (``as_metric``, ``as_param``)."""

from __future__ import annotations

import ast
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

PARAM, METRIC, SKIP = "param", "metric", "skip"
UNPACK = "unpack"  # a site whose value is split over several metric names
SCALAR = "scalar"  # a metric site that records numbers only (a name like a score, no scoring call)
MAX_PARAM_TEXT = 250  # a param's text (str(value)) longer than this is never inferred


@dataclass(frozen=True)
class Choice:
    """One decision: ``name`` is logged as ``kind`` (param, metric) or skipped, by ``rule``."""

    name: str
    kind: str
    rule: str
    line: int


@dataclass
class Site:
    """An expression recorded as it is evaluated: a metric (or params, for best_params_)."""

    key: str
    kind: str
    line: int


@dataclass
class Plan:
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    sites: dict[int, Site] = field(default_factory=dict)  # id(expression node) -> site

    def add(self, name: str, kind: str, rule: str, line: int, recorded: bool = False) -> None:
        """Record a decision; ``recorded``: logged from a site's values, not read by name."""
        if any(c.name == name and c.kind == kind for c in self.choices):
            return
        self.choices.append(Choice(name, kind, rule, line))
        if recorded and kind == PARAM:
            return
        if kind == PARAM and name not in self.params:
            self.params.append(name)
        elif kind == METRIC and name not in self.metrics:
            self.metrics.append(name)


def is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def short(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, AttributeError, RecursionError):
        return "..."
    return text if len(text) <= 40 else text[:37] + "..."


def as_metric(value: Any) -> float | None:
    """A finite real number (not a bool) as float, else None; a 0-d array or tensor counts."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, numbers.Real):
        if getattr(value, "shape", None) != () or not hasattr(value, "item"):
            return None
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


_LITERAL_TYPES = (str, int, float, bool, type(None))


def as_param(value: Any) -> str | None:
    """A literal value (or a small container of them) as the param's text; None for objects,
    data and anything whose text is longer than MAX_PARAM_TEXT characters."""

    def plain(v: Any, depth: int = 0) -> bool:
        if isinstance(v, _LITERAL_TYPES):
            return True
        if depth > 3:
            return False
        if isinstance(v, (list, tuple, set, frozenset)):
            return all(plain(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return all(plain(k, depth + 1) and plain(x, depth + 1) for k, x in v.items())
        return False

    if not plain(value):
        return None
    text = str(value)
    return text if len(text) <= MAX_PARAM_TEXT else None
