"""Recording a ``%%track`` cell's scores as they are computed: the cell's AST is rewritten so that
each expression ``infer.plan`` chose is passed through the :class:`Recorder` (which returns it
unchanged), so a score in a loop becomes a history and a score only printed is still logged."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

from nbops.ipython.infer import METRIC, PARAM, SCALAR, UNPACK, Plan, as_metric, as_param

NAME = "__nbops_record__"  # the recorder's name in the user's namespace (hidden from %who)
MAX_VALUES = 10_000  # values kept per metric and cell; more are counted, not kept
MAX_SEQUENCE = 1_000  # a score that is a sequence (per-fold scores) is a history up to this long
MAX_FLAT = 50  # keys kept from a dict-valued score (cross_validate, a dict of scores)
MAX_KEYS = 1_000  # distinct metrics one cell records (dicts with changing keys in a loop)
REPORT_ROWS = ("accuracy", "macro avg", "weighted avg")


class Recorder:
    """Collects recorded values while a tracked cell runs; inert (it only returns the value)
    otherwise. Never raises: recording must not break the user's cell."""

    def __init__(self) -> None:
        self.active = False
        self.metrics: dict[str, list[float]] = {}
        self.params: dict[str, str] = {}
        self.dropped: dict[str, str] = {}

    def start(self) -> None:
        self.active = True
        self.metrics, self.params, self.dropped = {}, {}, {}

    def stop(self) -> None:
        self.active = False

    def __call__(self, key: str, value: Any) -> Any:
        if self.active:
            try:
                self._metric(key, value)
            except Exception:  # noqa: BLE001 - a value nbops cannot read is not logged
                self.dropped.setdefault(key, "could not be read")
        return value

    def param(self, key: str, value: Any) -> Any:
        if self.active:
            try:
                items = value.items() if isinstance(value, dict) else []
                for k, v in list(items)[:MAX_FLAT]:
                    text = as_param(v)
                    if text is not None:
                        self.params[f"{key}.{_slug(k)}"] = text
            except Exception:  # noqa: BLE001
                self.dropped.setdefault(key, "could not be read")
        return value

    def scalar(self, key: str, value: Any) -> Any:
        """A value named like a score but computed by no scoring call: kept only if a number."""
        if self.active:
            f = as_metric(value)
            if f is None:
                self.dropped.setdefault(key, f"not a number ({type(value).__name__})")
            else:
                self._metric(key, f)
        return value

    def unpack(self, keys: str, value: Any) -> Any:
        """``loss, acc = model.evaluate(...)``: element i is metric i of ``keys`` (a,b)."""
        if self.active:
            try:
                names = keys.split(",")
                if isinstance(value, Iterator):  # list() would consume what the cell unpacks
                    self.dropped.setdefault(keys, "an iterator (read once, by the cell)")
                    return value
                items = list(value)
                if len(items) == len(names):
                    for name, item in zip(names, items, strict=True):
                        if not name.startswith("_"):
                            self._metric(name, item)
            except Exception:  # noqa: BLE001
                self.dropped.setdefault(keys, "could not be read")
        return value

    def _metric(self, key: str, value: Any) -> None:
        for k, v in metric_values(key, value):
            if k not in self.metrics and len(self.metrics) >= MAX_KEYS:
                self.dropped.setdefault(k, f"more than {MAX_KEYS} metrics in one cell")
                continue
            values = self.metrics.setdefault(k, [])
            if len(values) < MAX_VALUES:
                values.append(v)
        if not any(k == key or k.startswith(key + ".") for k in self.metrics):
            self.dropped.setdefault(key, f"not a number ({type(value).__name__})")


def metric_values(key: str, value: Any) -> list[tuple[str, float]]:
    """A recorded value as (key, number) pairs: a number; a sequence of numbers (per-fold
    scores: one value per step); a dict: its numbers flattened to ``key.name`` /
    ``key.name.sub`` (``classification_report(output_dict=True)``: its accuracy and macro and
    weighted averages, without support; ``cross_validate``: test and train scores per fold,
    without timings)."""
    f = as_metric(value)
    if f is not None:
        return [(key, f)]
    if isinstance(value, str):
        return _text_report(key, value)
    if isinstance(value, dict):
        out: list[tuple[str, float]] = []
        if "macro avg" in value:  # classification_report: its accuracy and averages
            value = {k: v for k, v in value.items() if k in REPORT_ROWS}
        for k, v in value.items():
            sub = f"{key}.{_slug(k)}"
            if str(k).endswith("_time"):
                continue
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    f2 = None if k2 == "support" else as_metric(v2)
                    if f2 is not None:
                        out.append((f"{sub}.{_slug(k2)}", f2))
            else:
                out.extend(_sequence(sub, v))
            if len(out) >= MAX_FLAT:
                break
        return out[:MAX_FLAT]
    return _sequence(key, value)


def _text_report(key: str, text: str) -> list[tuple[str, float]]:
    """The accuracy and averages of a printed ``classification_report`` (its text form)."""
    if "macro avg" not in text or len(text) > 100_000:
        return []
    out: list[tuple[str, float]] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["accuracy"] and len(words) >= 3:
            out.extend((f"{key}.accuracy", f) for f in [_number(words[-2])] if f is not None)
        elif words[:2] in (["macro", "avg"], ["weighted", "avg"]) and len(words) >= 6:
            row = f"{key}.{words[0]}_avg"
            for name, word in zip(("precision", "recall", "f1-score"), words[2:5], strict=True):
                f = _number(word)
                if f is not None:
                    out.append((f"{row}.{name}", f))
    return out


def _number(word: str) -> float | None:
    try:
        return as_metric(float(word))
    except ValueError:
        return None


def _sequence(key: str, value: Any) -> list[tuple[str, float]]:
    f = as_metric(value)
    if f is not None:
        return [(key, f)]
    if isinstance(value, (str, bytes, dict, Iterator)) or getattr(value, "ndim", 1) != 1:
        return []  # an iterator is the cell's to read once, not nbops
    try:
        items = list(value)
    except TypeError:
        return []
    if not 0 < len(items) <= MAX_SEQUENCE:
        return []
    numbers = [as_metric(x) for x in items]
    return [(key, x) for x in numbers if x is not None] if None not in numbers else []


def _slug(k: Any) -> str:
    """A dict key as part of a metric or param name: MLflow's characters, at most 100."""
    return re.sub(r"[^0-9A-Za-z_.\-]+", "_", str(k)[:100]).strip("_.") or "_"


class _Wrap(ast.NodeTransformer):
    def __init__(self, plan: Plan) -> None:
        self.sites = plan.sites

    def visit(self, node: ast.AST) -> Any:
        site = self.sites.get(id(node))
        node = self.generic_visit(node)
        if site is None:
            return node
        func: ast.expr = ast.Name(NAME, ast.Load())
        if site.kind == PARAM:
            func = ast.Attribute(func, "param", ast.Load())
        elif site.kind == UNPACK:
            func = ast.Attribute(func, "unpack", ast.Load())
        elif site.kind == SCALAR:
            func = ast.Attribute(func, "scalar", ast.Load())
        elif site.kind != METRIC:
            return node
        value: ast.expr = node  # type: ignore[assignment] # a site is always an expression
        call = ast.Call(func, [ast.Constant(site.key), value], [])
        return ast.copy_location(call, node)


def instrument(tree: ast.Module, plan: Plan) -> ast.Module:
    """The cell's AST with the plan's expressions passed through the recorder (in place)."""
    if not plan.sites:
        return tree
    out = _Wrap(plan).visit(tree)
    return ast.fix_missing_locations(out)  # type: ignore[no-any-return]
