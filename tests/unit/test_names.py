"""Tag and environment-variable names are written once (nbops/tags.py, nbops/envvars.py): no other
module spells them, the README documents every variable a person sets, and a bad number of
seconds in one is a clear error."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops import envvars, tags
from nbops.errors import InvalidInput

PKG = Path(__file__).resolve().parents[2] / "nbops"
README = PKG.parent / "README.md"


def _constants(module: object) -> dict[str, str]:
    return {
        k: v for k, v in vars(module).items() if k.isupper() and isinstance(v, str) and v.strip()
    }


def _literals(skip: Path) -> list[tuple[str, int, str]]:
    """Every string constant of the package (f-string parts included), but not docstrings."""
    out = []
    for path in sorted(PKG.rglob("*.py")):
        if path == skip or "labextension" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        docs = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
            ):
                out.append((str(path.relative_to(PKG.parent)), node.lineno, node.value))
    return out


def test_no_module_but_tags_py_spells_a_tag_name() -> None:
    names = set(_constants(tags).values())
    prefixes = tuple(v for v in names if v.endswith("."))
    found = [
        f"{f}:{line}: {text!r}"
        for f, line, text in _literals(PKG / "tags.py")
        if text in names or (text.startswith(prefixes) and text.startswith("nbops."))
    ]
    assert not found, "use the constants of nbops/tags.py:\n" + "\n".join(found)


def test_no_module_but_envvars_py_spells_a_variable_name() -> None:
    names = set(_constants(envvars).values())
    found = [
        f"{f}:{line}: {text!r}"
        for f, line, text in _literals(PKG / "envvars.py")
        if text in names or re.fullmatch(r"NBOPS_[A-Z_]+", text)
    ]
    assert not found, "use the constants of nbops/envvars.py:\n" + "\n".join(found)


def test_the_readme_documents_every_variable_nbops_reads() -> None:
    text = README.read_text()
    internal = {
        envvars.NOTEBOOK,
        envvars.RUN_ID,
        envvars.ATTACH_SPOOL,
        envvars.JPY_SESSION_NAME,
        envvars.JPY_PARENT_PID,
        envvars.PYDEVD_DISABLE_FILE_VALIDATION,
        envvars.PAPERMILL_INPUT_PATH,
        envvars.PAPERMILL_OUTPUT_PATH,
        envvars.MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        envvars.MLFLOW_HTTP_REQUEST_TIMEOUT,
    }
    missing = [
        v for v in _constants(envvars).values() if v not in internal and f"`{v}`" not in text
    ]
    assert not missing, f"README.md does not say what these do: {missing}"


def test_tag_names_are_unique_and_in_nbops_or_mlflow_namespace() -> None:
    values = list(_constants(tags).values())
    assert len(values) == len(set(values))
    assert all(v.startswith(("nbops.", "mlflow.")) for v in values), values


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=60))
def test_seconds_is_a_number_or_a_clear_error(monkeypatch_text: str) -> None:
    import os

    os.environ["NBOPS_TEST_SECONDS"] = monkeypatch_text
    try:
        value = envvars.seconds("NBOPS_TEST_SECONDS", 7.0)
    except InvalidInput as err:
        assert "NBOPS_TEST_SECONDS=" in err.message and err.hint
    else:
        assert math.isfinite(value) and value >= 0
        if not monkeypatch_text.strip():
            assert value == 7.0
        else:
            assert value == float(monkeypatch_text.strip())
    finally:
        del os.environ["NBOPS_TEST_SECONDS"]


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf", "1e999", "9" * 50])
def test_seconds_refuses(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_FLUSH_TIMEOUT", raw)
    with pytest.raises(InvalidInput, match="NBOPS_FLUSH_TIMEOUT="):
        envvars.seconds(envvars.FLUSH_TIMEOUT, 120)
