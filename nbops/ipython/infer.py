"""What a ``%%track`` cell logs, read from its source: names bound to literal constants are
params, names bound to anything else are metric candidates (logged if the value is a number)."""

from __future__ import annotations

import ast
import math
import numbers
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Inferred:
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _names(elt)]
    return []


def infer(tree: ast.Module) -> Inferred:
    """Top-level assignments of the cell, in order; private names (``_x``) are left out."""
    out = Inferred()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.AugAssign):
            targets, value = [node.target], None
        else:
            continue
        literal = value is not None and _is_literal(value)
        for t in targets:
            for name in _names(t):
                if name.startswith("_"):
                    continue
                if literal and isinstance(t, ast.Name):
                    if name not in out.params and name not in out.metrics:
                        out.params.append(name)
                elif name not in out.metrics:
                    if name in out.params:
                        out.params.remove(name)  # rebound to a computed value later in the cell
                    out.metrics.append(name)
    return out


def as_metric(value: Any) -> float | None:
    """A finite real number (not a bool) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None
