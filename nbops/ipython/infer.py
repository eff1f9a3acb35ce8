"""What a ``%%track`` cell logs, decided from its source before it runs (the rules are in the
README, "Magics"; ``%%track --explain`` prints the decision for a cell).

Params are the cell's top-level literal constants (a number, a string, a small list/dict/tuple of
literals) that a person would call settings: ones that feed a fit, a model, a search or a score
(followed through assignments and loops), or that the cell sets and never reads. Loop variables,
reassigned, augmented or built-up names, data (``X``, ``y_train``) and plot styling are left out.

Metrics are the results of scoring and evaluation calls (``*_score``, ``*_error``, ``*_loss``,
``.score()``, ``.best_score_``, ``classification_report``...), values derived from them
(``np.sqrt(mse)``, ``scores.mean()``), and computed numbers named like a score (``accuracy``,
``val_loss``). They are recorded as they are computed (the cell is instrumented), so a score
computed in a loop is a history and a score only printed is still logged. ``.best_params_`` of a
search is logged as params ``best_params.<name>``.

The decisions are spread over: ``infer_rules`` (the vocabulary), ``infer_plan`` (the plan's
shape), ``infer_metrics`` (what is recorded), ``infer_record`` (recording it as the cell runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from nbops.ipython import infer_rules as rules
from nbops.ipython.astwalk import children, memo, walk
from nbops.ipython.infer_metrics import MetricSites
from nbops.ipython.infer_plan import (
    MAX_PARAM_TEXT,
    METRIC,
    PARAM,
    SCALAR,
    SKIP,
    UNPACK,
    Choice,
    Plan,
    Site,
    as_metric,
    as_param,
    is_literal,
    short,
)

__all__ = [
    "MAX_PARAM_TEXT",
    "METRIC",
    "PARAM",
    "SCALAR",
    "SKIP",
    "UNPACK",
    "Choice",
    "Plan",
    "Site",
    "as_metric",
    "as_param",
    "plan",
]

MUTATORS = frozenset(
    {"append", "extend", "insert", "update", "add", "pop", "remove", "clear", "setdefault"}
)


def _stores(target: ast.AST) -> list[str]:
    return [n.id for n in walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


class _Facts:
    """What the whole cell does with each name: bindings, mutations, flow, where it is read."""

    def __init__(self, tree: ast.Module) -> None:
        self.binds: dict[str, list[str]] = {}  # name -> kinds of binding ("assign", "loop", ...)
        self.mutated: set[str] = set()
        self.flow: dict[str, set[str]] = {}  # name -> names computed from it
        self.reads: dict[str, list[tuple[str, str, int]]] = {}  # name -> (context, callee, line)
        self.loop_sizes: dict[str, int] = {}  # name -> line of a training loop it sizes
        for node in walk(tree):
            self._bindings(node)
        self._visit(tree, [])

    def _bind(self, names: list[str], kind: str) -> None:
        for n in names:
            self.binds.setdefault(n, []).append(kind)

    def _edge(self, sources: set[str], targets: list[str]) -> None:
        for s in sources:
            self.flow.setdefault(s, set()).update(t for t in targets if t != s)

    def _bindings(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                self._bind(_stores(t), "assign")
                self._edge(_loads(node.value), _stores(t))
                if not isinstance(t, (ast.Name, ast.Tuple, ast.List)):
                    self.mutated.update(_loads(t) & {_root(t)})
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            self._bind(_stores(node.target), "aug" if isinstance(node, ast.AugAssign) else "assign")
            self._edge(_loads(node.value), _stores(node.target))
            if not isinstance(node.target, ast.Name):
                self.mutated.add(_root(node.target))
        elif isinstance(node, ast.NamedExpr):
            self._bind([node.target.id], "assign")
            self._edge(_loads(node.value), [node.target.id])
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            self._bind(_stores(node.target), "loop")
            for sources, targets in _loop_pairs(node.target, node.iter):
                self._edge(sources, targets)
            if isinstance(node, (ast.For, ast.AsyncFor)) and _trains(node.body):
                for call in walk(node.iter):
                    if isinstance(call, ast.Call) and rules.callee(call) == "range":
                        for n in _loads(call):
                            self.loop_sizes.setdefault(n, node.lineno)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            self._bind(_stores(node.optional_vars), "with")
            self._edge(_loads(node.context_expr), _stores(node.optional_vars))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self._bind([(a.asname or a.name).split(".")[0] for a in node.names], "import")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._bind([node.name], "def")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr in MUTATORS and isinstance(owner, ast.Name):
                self.mutated.add(owner.id)
                self._edge(set().union(*(_loads(a) for a in node.args)) - {owner.id}, [owner.id])

    def _visit(self, node: ast.AST, calls: list[tuple[str, str, int]]) -> None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            here = calls or [("other", "", getattr(node, "lineno", 0))]
            for c in here:
                self.reads.setdefault(node.id, []).append(c)
            return
        if isinstance(node, ast.Call):
            kind = (
                "model"
                if rules.is_model_call(node)
                else "score"
                if rules.is_score_call(node)
                else "plot"
                if rules.is_plot_call(node)
                else "other"
            )
            calls = [*calls, (kind, short(node.func), node.lineno)]
        for child in children(node):
            self._visit(child, calls)

    def reach(self, name: str) -> tuple[str, str, int] | None:
        """The first fit/model/score call that ``name`` reaches, directly or through names
        computed from it; else ("plot", ...) if only plotting reaches it; else None."""
        seen, todo, plot = {name}, [name], None
        while todo:
            n = todo.pop(0)
            if n in self.loop_sizes:
                return ("model", "range", self.loop_sizes[n])
            for ctx in self.reads.get(n, []):
                if ctx[0] in ("model", "score"):
                    return ctx
                if ctx[0] == "plot" and plot is None:
                    plot = ctx
            for m in sorted(self.flow.get(n, ())):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return plot


def _loop_pairs(target: ast.expr, it: ast.expr) -> list[tuple[set[str], list[str]]]:
    """Which loop variables each iterated name flows to: ``zip(a, b)`` pairs them in order,
    ``enumerate(a)`` gives ``a`` to the second; otherwise every name to every variable."""
    if isinstance(target, ast.Tuple) and isinstance(it, ast.Call) and not it.keywords:
        name = rules.callee(it)
        if name == "zip" and len(it.args) == len(target.elts):
            return [(_loads(a), _stores(t)) for a, t in zip(it.args, target.elts, strict=True)]
        if name == "enumerate" and len(target.elts) == 2 and len(it.args) == 1:
            return [(_loads(it.args[0]), _stores(target.elts[1]))]
    return [(_loads(it), _stores(target))]


def _trains(body: list[ast.stmt]) -> bool:
    return any(
        isinstance(n, ast.Call) and (rules.is_model_call(n) or rules.is_score_call(n))
        for stmt in body
        for n in walk(stmt)
    )


def _root(node: ast.AST) -> str:
    parts = rules.dotted(node.value if isinstance(node, ast.Subscript) else node)
    return parts[0]


def _literal_pairs(stmt: ast.stmt) -> Iterator[tuple[str, ast.expr]]:
    """(name, literal value) bound by a top-level statement: ``a = 1``, ``a: int = 1``,
    ``a = b = 1``, ``a, b = 1, 2``."""
    targets: list[ast.expr]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets, value = [stmt.target], stmt.value
    elif isinstance(stmt, ast.Assign):
        targets, value = stmt.targets, stmt.value
    else:
        return
    for t in targets:
        if isinstance(t, ast.Name) and is_literal(value):
            yield t.id, value
        elif (
            isinstance(t, (ast.Tuple, ast.List))
            and isinstance(value, (ast.Tuple, ast.List))
            and len(t.elts) == len(value.elts)
        ):
            for sub_t, sub_v in zip(t.elts, value.elts, strict=True):
                if isinstance(sub_t, ast.Name) and is_literal(sub_v):
                    yield sub_t.id, sub_v


def _param_rule(name: str, facts: _Facts) -> tuple[str, str]:
    binds = facts.binds.get(name, [])
    if "loop" in binds:
        return SKIP, "a loop variable"
    if "aug" in binds:
        return SKIP, "augmented (+=) in the cell: a running value, not a setting"
    if len(binds) > 1:
        return SKIP, "reassigned in the cell: not a constant"
    if name in facts.mutated:
        return SKIP, "built up in the cell (.append, item assignment): a result, not a setting"
    if rules.is_data_name(name):
        return SKIP, "data: named like a data set (X, y_train, df ...)"
    reached = facts.reach(name)
    if reached is not None and reached[1] == "range":
        return PARAM, f"literal that sets how often a loop fits or scores (line {reached[2]})"
    if reached is not None and reached[0] != "plot":
        return PARAM, f"literal that feeds {reached[1]}(...) (line {reached[2]})"
    if name not in facts.reads:
        return PARAM, "literal the cell sets and does not read (a declared setting)"
    if reached is not None:
        return SKIP, f"plot styling: only plotting calls use it ({reached[1]}, line {reached[2]})"
    return SKIP, "literal that reaches no fit, model or score (only printed, indexed ...)"


def plan(tree: ast.Module) -> Plan:
    """What the cell will log, each name with the rule that chose or skipped it."""
    with memo():
        return _plan(tree)


def _plan(tree: ast.Module) -> Plan:
    out = Plan()
    facts = _Facts(tree)
    MetricSites(tree, out)
    metric_names = set(out.metrics)
    for stmt in tree.body:
        for name, value in _literal_pairs(stmt):
            if name.startswith("_") or name in metric_names:
                continue
            if any(c.name == name for c in out.choices):
                continue
            kind, rule = _param_rule(name, facts)
            out.add(name, kind, rule, value.lineno)
    for stmt in tree.body:
        _skipped_top_level(stmt, out, facts)
    return out


def _skipped_top_level(stmt: ast.stmt, out: Plan, facts: _Facts) -> None:
    """Top-level names that are bound but not logged, with the reason (for --explain)."""
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        for n in _stores(stmt.target):
            if not n.startswith("_") and not any(c.name == n for c in out.choices):
                out.add(n, SKIP, "a loop variable", stmt.lineno)
        return
    if not isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) or stmt.value is None:
        return
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    for t in targets:
        for n in _stores(t):
            if n.startswith("_") or any(c.name == n for c in out.choices):
                continue
            value = stmt.value
            if rules.is_data_name(n):
                rule = "data: named like a data set (X, y_train, df ...)"
            elif isinstance(value, ast.Call) and rules.is_model_call(value):
                rule = f"an object built by {short(value.func)}(...), not a value"
            elif isinstance(value, ast.Call) and rules.is_plot_call(value):
                rule = "a figure or plot object"
            elif isinstance(stmt, ast.AugAssign):
                rule = "augmented (+=): a running value"
            else:
                rule = f"computed by {short(value)}, not a scoring or evaluation result"
            out.add(n, SKIP, rule, stmt.lineno)
