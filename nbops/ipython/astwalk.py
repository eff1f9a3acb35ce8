"""``ast.walk`` and ``ast.iter_child_nodes`` without their per-node generators.

Inference walks each cell's tree a dozen times over (every assignment's targets and values,
every loop, every call): with the standard library's generators that was most of ``%%track``'s
own time per cell. These give the same nodes in the same order (breadth first, fields in
declaration order), as lists."""

from __future__ import annotations

import contextlib
import threading
from ast import AST
from collections.abc import Iterator

_local = threading.local()  # .memo / .kids: id(node) -> walk / children, inside memo()


@contextlib.contextmanager
def memo() -> Iterator[None]:
    """Remember each subtree's walk until the block ends: for reading a tree that nothing
    changes meanwhile (the ids of its nodes stay theirs). Callers must not change the lists."""
    outer = getattr(_local, "memo", None)
    if outer is None:
        _local.memo, _local.kids = {}, {}
    try:
        yield
    finally:
        if outer is None:
            _local.memo = _local.kids = None


def children(node: AST) -> list[AST]:
    """The direct children of ``node``, as ``ast.iter_child_nodes`` yields them."""
    kids: dict[int, list[AST]] | None = getattr(_local, "kids", None)
    if kids is not None:
        got = kids.get(id(node))
        if got is not None:
            return got
    out: list[AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, AST):
            out.append(value)
        elif isinstance(value, list):
            out.extend(item for item in value if isinstance(item, AST))
    if kids is not None:
        kids[id(node)] = out
    return out


def walk(node: AST) -> list[AST]:
    """``node`` and every node below it, in ``ast.walk``'s order."""
    known: dict[int, list[AST]] | None = getattr(_local, "memo", None)
    if known is not None:
        got = known.get(id(node))
        if got is not None:
            return got
    out = [node]
    for n in out:  # grows as it goes: breadth first, as ast.walk
        out.extend(children(n))
    if known is not None:
        known[id(node)] = out
    return out
