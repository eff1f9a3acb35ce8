"""Which expressions of a ``%%track`` cell are recorded as metrics: scoring calls, values
computed from them, numbers named like a score, and a search's ``best_params_`` (as params);
each gets its key from the name it is assigned to or the label it is printed with."""

from __future__ import annotations

import ast
import re

from nbops.ipython import infer_rules as rules
from nbops.ipython.astwalk import children, walk
from nbops.ipython.infer_plan import METRIC, PARAM, SCALAR, UNPACK, Plan, Site, is_literal, short

REDUCTIONS = frozenset(
    {"float", "round", "abs", "mean", "median", "max", "min", "sqrt", "std", "item", "nanmean"}
    | {"average", "exp", "log"}
)
_NOT_SCORES = frozenset({"time", "perf_counter", "monotonic", "process_time", "now", "today"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


class MetricSites:
    """Finds the expressions to record as metrics (and best_params_ as params)."""

    def __init__(self, tree: ast.Module, plan: Plan) -> None:
        self.plan = plan
        self.scores: set[str] = set()
        self.parents: dict[int, ast.AST] = {}
        for node in walk(tree):
            for child in children(node):
                self.parents[id(child)] = node
        self._score_names(tree)
        self.covered: set[int] = set()
        for stmt in tree.body:
            self._statement(stmt)

    # which names hold scores (flow-insensitive fixpoint over the whole cell)
    def _score_names(self, tree: ast.Module) -> None:
        assigns = [n for n in walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))]
        appends = [
            n
            for n in walk(tree)
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
            n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "") for n in walk(value)
        }
        if names & _NOT_SCORES or (isinstance(value, ast.Call) and rules.callee(value) == "len"):
            return False
        calls = [n for n in walk(value) if isinstance(n, ast.Call)]
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
        for child in children(stmt):
            if isinstance(child, ast.stmt):
                self._statement(child)
            else:
                self._expressions(child)

    def _site(self, node: ast.expr, key: str, rule: str, kind: str = METRIC) -> None:
        key = metric_key(key)
        if not key or id(node) in self.plan.sites:
            return
        self.plan.sites[id(node)] = Site(key, kind, getattr(node, "lineno", 0))
        for sub in walk(node):
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
            self._site(value, name, f"scores stored in {name}[...]: {short(value)}")
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
        for sub in walk(value):
            self.covered.add(id(sub))
        for n in kept:
            self.plan.add(n, METRIC, f"unpacked from a scoring call: {short(value)}", line)

    def _bound(self, name: str, value: ast.expr) -> None:
        if name.startswith("_"):
            return
        if isinstance(value, (ast.ListComp, ast.GeneratorExp)) and self.scorish(value.elt):
            self._site(value.elt, name, f"scores computed in a comprehension: a history of {name}")
        elif self.scorish(value):
            self._site(value, name, f"result of a scoring call: {short(value)}")
        elif self._named_score(name, value):
            rule = f"a computed number named like a score: {short(value)}"
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
                key = metric_key(self._label(node) or "") or node.attr.rstrip("_")
                self._site(node, key, "a search's score")
                return
        if isinstance(node, ast.Call) and (
            rules.is_score_call(node)
            or (rules.callee(node) in REDUCTIONS and self.scorish(node) and self._shown(node))
        ):
            key = metric_key(self._label(node) or "") or self._fallback_key(node)
            self._site(node, key, f"scoring call not assigned to a name: {short(node)}")
            return
        for child in children(node):
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


def metric_key(label: str) -> str:
    """A printed label as a metric key: its last phrase, lower case, '_' for the rest."""
    text = re.split(r"[\n,;|()\[\]]", label.strip())[-1] if label.strip() else ""
    text = text.strip().rstrip(":=-").strip()
    key = re.sub(r"[^0-9a-zA-Z_.\-]+", "_", text.lower()).strip("_.")
    return key if 0 < len(key) <= 60 else ""
