"""nbops.ipython.astwalk gives exactly what ast.walk / ast.iter_child_nodes give, in order, with
and without the memo (over every module of the package and generated expressions)."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.ipython import astwalk

PACKAGE = Path(__file__).resolve().parents[2] / "nbops"


def _same(tree: ast.AST) -> None:
    expected = list(ast.walk(tree))
    assert astwalk.walk(tree) == expected
    for node in expected:
        assert astwalk.children(node) == list(ast.iter_child_nodes(node))
    with astwalk.memo():
        for node in expected:
            assert astwalk.walk(node) == list(ast.walk(node))
            assert astwalk.walk(node) is astwalk.walk(node)  # remembered inside the block
    assert astwalk.walk(tree) is not astwalk.walk(tree)  # and forgotten after it


def test_every_module_of_the_package_walks_the_same() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    for path in files:
        _same(ast.parse(path.read_text(), str(path)))


NAMES = st.sampled_from(["x", "y", "model", "acc", "f"])
ATOMS = st.one_of(NAMES, st.integers(-5, 99).map(str), st.just("'s'"))


def _exprs() -> st.SearchStrategy[str]:
    return st.recursive(
        ATOMS,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "*", "<", " and "]), inner).map(
                lambda t: f"({t[0]}{t[1]}{t[2]})"
            ),
            st.tuples(NAMES, st.lists(inner, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
            st.tuples(inner, NAMES).map(lambda t: f"[{t[0]} for {t[1]} in range(3)]"),
        ),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(NAMES, _exprs()), min_size=1, max_size=5))
def test_generated_cells_walk_the_same(assignments: list[tuple[str, str]]) -> None:
    source = "\n".join(f"{name} = {value}" for name, value in assignments)
    _same(ast.parse(source))
