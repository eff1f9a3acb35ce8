"""The CLI's exit codes come from one place (nbops.errors: ``Exit`` and each error's
``exit_code``), its version from ``nbops.__version__``."""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path

import pytest

import nbops
from nbops import cli
from nbops.errors import Exit, NbopsError
from nbops.ops import commands

REPO = Path(__file__).resolve().parents[2]
SURFACES = ["nbops/cli.py", "nbops/ops/commands.py"]


def _main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("path", SURFACES)
def test_no_command_returns_a_literal_exit_code(path: str) -> None:
    """``return 3`` says nothing; ``return Exit.DRIFT`` says what it means and cannot drift
    from the README's table."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    literal = [
        f"{path}:{node.lineno}: return {ast.unparse(node.value)}"
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef) and ast.unparse(fn.returns or ast.Pass()) == "int"
        for node in ast.walk(fn)
        if isinstance(node, ast.Return)
        and isinstance(node.value, ast.Constant | ast.IfExp)
        and any(isinstance(c, ast.Constant) and type(c.value) is int for c in ast.walk(node.value))
    ]
    assert literal == []


def test_an_error_exits_with_the_code_its_class_carries(monkeypatch, project) -> None:
    """The CLI looks the code up on the error: a class with its own code needs no new branch."""

    class Busy(NbopsError):
        exit_code = 75

    def busy(args: object) -> int:
        raise Busy("the registry is busy", "try again")

    monkeypatch.setattr(commands, "cmd_audit", busy)
    code, _, err = _main("audit")
    assert code == 75
    assert err == "nbops audit: the registry is busy\n  hint: try again\n"


def test_no_command_is_usage(project) -> None:
    code, out, _ = _main()
    assert code == Exit.USAGE and out.startswith("usage: nbops")


def test_version_is_the_packages(monkeypatch) -> None:
    monkeypatch.setattr(nbops, "__version__", "9.8.7")
    code, out, _ = _main("--version")
    assert (code, out) == (0, "nbops 9.8.7\n")
