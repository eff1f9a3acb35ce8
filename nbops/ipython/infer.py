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
"""

from __future__ import annotations

import ast
import math
import numbers
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nbops.ipython import infer_rules as rules

PARAM, METRIC, SKIP = "param", "metric", "skip"
UNPACK = "unpack"  # a site whose value is split over several metric names
SCALAR = "scalar"  # a metric site that records numbers only (a name like a score, no scoring call)
MAX_PARAM_TEXT = 250  # a param's text (str(value)) longer than this is never inferred
MUTATORS = frozenset(
    {"append", "extend", "insert", "update", "add", "pop", "remove", "clear", "setdefault"}
)
REDUCTIONS = frozenset(
    {"float", "round", "abs", "mean", "median", "max", "min", "sqrt", "std", "item", "nanmean"}
    | {"average", "exp", "log"}
)
_NOT_SCORES = frozenset({"time", "perf_counter", "monotonic", "process_time", "now", "today"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


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


def _stores(target: ast.AST) -> list[str]:
    return [
        n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    ]


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _short(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, AttributeError, RecursionError):
        return "..."
    return text if len(text) <= 40 else text[:37] + "..."


class _Facts:
    """What the whole cell does with each name: bindings, mutations, flow, where it is read."""

    def __init__(self, tree: ast.Module) -> None:
        self.binds: dict[str, list[str]] = {}  # name -> kinds of binding ("assign", "loop", ...)
        self.mutated: set[str] = set()
        self.flow: dict[str, set[str]] = {}  # name -> names computed from it
        self.reads: dict[str, list[tuple[str, str, int]]] = {}  # name -> (context, callee, line)
        self.loop_sizes: dict[str, int] = {}  # name -> line of a training loop it sizes
        for node in ast.walk(tree):
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
                for call in ast.walk(node.iter):
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
            calls = [*calls, (kind, _short(node.func), node.lineno)]
        for child in ast.iter_child_nodes(node):
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
        for n in ast.walk(stmt)
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


class _Metrics:
    """Finds the expressions to record as metrics (and best_params_ as params)."""

    def __init__(self, tree: ast.Module, plan: Plan) -> None:
        self.plan = plan
        self.scores: set[str] = set()
        self.parents: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[id(child)] = node
        self._score_names(tree)
        self.covered: set[int] = set()
        for stmt in tree.body:
            self._statement(stmt)

    # which names hold scores (flow-insensitive fixpoint over the whole cell)
    def _score_names(self, tree: ast.Module) -> None:
        assigns = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))]
        appends = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("append", "extend")
            and isinstance(n.func.value, ast.Name)
        ]
        changed = True
        while changed:
            changed = False
            for a in assigns:
                targets = a.targets if isinstance(a, ast.Assign) else [a.target]
                if a.value is None:
                    continue
                for t in targets:
                    if (
                        isinstance(t, ast.Name)
                        and t.id not in self.scores
                        and (self.scorish(a.value) or self._named_score(t.id, a.value))
                    ):
                        self.scores.add(t.id)
                        changed = True
            for c in appends:
                owner = c.func.value.id  # type: ignore[attr-defined]
                if owner not in self.scores and any(self.scorish(x) for x in c.args):
                    self.scores.add(owner)
                    changed = True

    def scorish(self, node: ast.AST) -> bool:
        """An expression whose value is a score or computed from one."""
        if isinstance(node, ast.Call):
            if rules.is_score_call(node):
                return True
            name = rules.callee(node)
            if name in REDUCTIONS:
                receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
                parts = [*node.args, *([receiver] if receiver is not None else [])]
                return any(self.scorish(p) for p in parts)
            return False
        if isinstance(node, ast.Attribute):
            return node.attr in rules.SCORE_ATTRIBUTES
        if isinstance(node, ast.Name):
            return node.id in self.scores
        if isinstance(node, ast.BinOp):
            return self.scorish(node.left) or self.scorish(node.right)
        if isinstance(node, ast.UnaryOp):
            return self.scorish(node.operand)
        if isinstance(node, ast.Subscript):
            return self.scorish(node.value)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.scorish(node.elt)
        return False

    def _named_score(self, name: str, value: ast.AST) -> bool:
        """A computed number named like a score (``accuracy = correct / total``)."""
        if not rules.is_score_name(name) or rules.is_data_name(name) or is_literal(value):
            return False  # y_score, y_scores: predictions, not a score
        if isinstance(value, (ast.ListComp, ast.GeneratorExp, ast.List, ast.Dict, ast.Tuple)):
            return False
        names = {
            n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "")
            for n in ast.walk(value)
        }
        if names & _NOT_SCORES or (isinstance(value, ast.Call) and rules.callee(value) == "len"):
            return False
        calls = [n for n in ast.walk(value) if isinstance(n, ast.Call)]
        return not any(
            rules.is_model_call(c) or rules.is_plot_call(c) or rules.callee(c) in rules.PREDICTIONS
            for c in calls
        )

    # where to record
    def _statement(self, stmt: ast.AST) -> None:
        if isinstance(stmt, _SCOPES):
            return  # runs later, or never: only the cell's own code is recorded
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            self._assignment(stmt)
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                self._statement(child)
            else:
                self._expressions(child)

    def _site(self, node: ast.expr, key: str, rule: str, kind: str = METRIC) -> None:
        key = _key(key)
        if not key or id(node) in self.plan.sites:
            return
        self.plan.sites[id(node)] = Site(key, kind, getattr(node, "lineno", 0))
        for sub in ast.walk(node):
            self.covered.add(id(sub))
        shown = f"{key}.*" if kind == PARAM else key
        choice = METRIC if kind == SCALAR else kind
        self.plan.add(shown, choice, rule, getattr(node, "lineno", 0), recorded=True)

    def _assignment(self, stmt: ast.Assign | ast.AnnAssign) -> None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        value = stmt.value
        assert value is not None
        t = targets[0]
        if isinstance(t, ast.Name):
            self._bound(t.id, value)
        elif isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and self.scorish(value):
            name = t.value.id  # scores[name] = clf.score(...): a history of scores
            self._site(value, name, f"scores stored in {name}[...]: {_short(value)}")
        elif (
            isinstance(t, (ast.Tuple, ast.List))
            and all(isinstance(e, ast.Name) for e in t.elts)
            and isinstance(value, ast.Call)
            and self.scorish(value)
        ):
            names = [e.id for e in t.elts]  # type: ignore[attr-defined]
            self._unpacked(value, names)
        elif (
            isinstance(t, (ast.Tuple, ast.List))
            and isinstance(value, (ast.Tuple, ast.List))
            and len(t.elts) == len(value.elts)
        ):
            for sub_t, sub_v in zip(t.elts, value.elts, strict=True):
                if isinstance(sub_t, ast.Name):
                    self._bound(sub_t.id, sub_v)

    def _unpacked(self, value: ast.Call, names: list[str]) -> None:
        """``loss, acc = model.evaluate(X, y)``: each name gets its element."""
        if id(value) in self.plan.sites:
            return
        kept = [n for n in names if not n.startswith("_")]
        line = getattr(value, "lineno", 0)
        self.plan.sites[id(value)] = Site(",".join(names), UNPACK, line)
        for sub in ast.walk(value):
            self.covered.add(id(sub))
        for n in kept:
            self.plan.add(n, METRIC, f"unpacked from a scoring call: {_short(value)}", line)

    def _bound(self, name: str, value: ast.expr) -> None:
        if name.startswith("_"):
            return
        if isinstance(value, (ast.ListComp, ast.GeneratorExp)) and self.scorish(value.elt):
            self._site(value.elt, name, f"scores computed in a comprehension: a history of {name}")
        elif self.scorish(value):
            self._site(value, name, f"result of a scoring call: {_short(value)}")
        elif self._named_score(name, value):
            rule = f"a computed number named like a score: {_short(value)}"
            self._site(value, name, rule, SCALAR)

    def _expressions(self, node: ast.AST) -> None:
        """Scoring calls that are not assigned to a name (printed, appended, displayed)."""
        if isinstance(node, ast.Lambda) or id(node) in self.covered:
            return
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            if node.attr == rules.BEST_PARAMS:
                self._site(node, "best_params", "a search's best_params_ (each as a param)", PARAM)
                return
            if node.attr in rules.SCORE_ATTRIBUTES:
                key = _key(self._label(node) or "") or node.attr.rstrip("_")
                self._site(node, key, "a search's score")
                return
        if isinstance(node, ast.Call) and (
            rules.is_score_call(node)
            or (rules.callee(node) in REDUCTIONS and self.scorish(node) and self._shown(node))
        ):
            key = _key(self._label(node) or "") or self._fallback_key(node)
            self._site(node, key, f"scoring call not assigned to a name: {_short(node)}")
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self._statement(child)
            else:
                self._expressions(child)

    def _shown(self, node: ast.AST) -> bool:
        """The value goes straight to print()/display() or a format string."""
        parent = self.parents.get(id(node))
        return isinstance(parent, (ast.FormattedValue, ast.BinOp, ast.Tuple)) or (
            isinstance(parent, ast.Call)
            and rules.callee(parent) in ("print", "display", "format", "append", "extend")
        )

    def _fallback_key(self, node: ast.Call) -> str:
        name = rules.callee(node)
        parts = rules.dotted(node.func)
        if len(parts) > 1 and parts[-2] not in ("<call>", "<expr>"):
            owner = parts[-2]
            if name == "score" or name in REDUCTIONS:
                return f"{owner}_{name}"
        return name

    def _label(self, node: ast.AST) -> str | None:
        """The text a person printed before the value: ``print(f"accuracy: {acc}")``,
        ``print("MSE:", mse)``, ``"R2 %.2f" % r2``, ``"AUC {:.2f}".format(auc)``;
        ``scores.append(value)`` names it after the list."""
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.FormattedValue):
            joined = self.parents.get(id(parent))
            if isinstance(joined, ast.JoinedStr):
                i = joined.values.index(parent)
                before = joined.values[i - 1] if i > 0 else None
                if isinstance(before, ast.Constant) and isinstance(before.value, str):
                    return before.value
            return None
        if isinstance(parent, ast.Tuple):
            fmt = self.parents.get(id(parent))
            if isinstance(fmt, ast.BinOp) and isinstance(fmt.op, ast.Mod):
                return _percent_label(fmt.left, parent.elts.index(node))  # type: ignore[arg-type]
            return None
        if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Mod):
            return _percent_label(parent.left, 0) if parent.right is node else None
        if isinstance(parent, ast.Call):
            func = parent.func
            if isinstance(func, ast.Attribute) and func.attr in ("append", "extend"):
                return rules.dotted(func.value)[-1]
            fmt = func.value if isinstance(func, ast.Attribute) else None
            if rules.callee(parent) == "format" and isinstance(fmt, ast.Constant):
                segments = re.split(r"\{[^}]*\}", str(fmt.value))
                i = parent.args.index(node) if node in parent.args else -1
                return segments[i] if 0 <= i < len(segments) else None
            if rules.callee(parent) == "print" and node in parent.args:
                i = parent.args.index(node)
                before = parent.args[i - 1] if i > 0 else None
                if isinstance(before, ast.Constant) and isinstance(before.value, str):
                    return before.value
        return None


def _percent_label(fmt: ast.expr, index: int) -> str | None:
    if not (isinstance(fmt, ast.Constant) and isinstance(fmt.value, str)):
        return None
    segments = re.split(r"%[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]", fmt.value)
    return segments[index] if index < len(segments) else None


def _key(label: str) -> str:
    """A printed label as a metric key: its last phrase, lower case, '_' for the rest."""
    text = re.split(r"[\n,;|()\[\]]", label.strip())[-1] if label.strip() else ""
    text = text.strip().rstrip(":=-").strip()
    key = re.sub(r"[^0-9a-zA-Z_.\-]+", "_", text.lower()).strip("_.")
    return key if 0 < len(key) <= 60 else ""


def plan(tree: ast.Module) -> Plan:
    """What the cell will log, each name with the rule that chose or skipped it."""
    out = Plan()
    facts = _Facts(tree)
    _Metrics(tree, out)
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
                rule = f"an object built by {_short(value.func)}(...), not a value"
            elif isinstance(value, ast.Call) and rules.is_plot_call(value):
                rule = "a figure or plot object"
            elif isinstance(stmt, ast.AugAssign):
                rule = "augmented (+=): a running value"
            else:
                rule = f"computed by {_short(value)}, not a scoring or evaluation result"
            out.add(n, SKIP, rule, stmt.lineno)


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
