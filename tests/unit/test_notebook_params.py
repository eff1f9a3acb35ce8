"""Parameters of a notebook are inferred as papermill infers them (its own test notebooks and
translator cases, and random cells), and a notebook nbops cannot read is named, never hung on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import papermill
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell
from papermill.translators import PythonTranslator

from nbops.errors import ConfigError
from nbops.pipeline import notebook as nbmod
from tests.conftest import notebook

PAPERMILL_NOTEBOOKS = Path(papermill.__file__).parent / "tests" / "notebooks"


def _ours(path: Path) -> dict[str, dict[str, str]]:
    return {
        p.name: {
            "name": p.name,
            "inferred_type_name": p.inferred_type_name,
            "default": p.default,
            "help": p.help,
        }
        for p in nbmod.inspect_parameters(path)
    }


def _as_tuples(params: list[Any]) -> list[tuple[str, str, str, str]]:
    return [(p.name, p.inferred_type_name, p.default, p.help) for p in params]


def test_papermill_test_notebooks_get_the_parameters_papermill_infers() -> None:
    names = sorted(PAPERMILL_NOTEBOOKS.glob("*.ipynb"))
    assert len(names) >= 20 and PAPERMILL_NOTEBOOKS / "complex_parameters.ipynb" in names
    for path in names:
        assert _ours(path) == papermill.inspect_notebook(str(path)), path.name
    complex_ = {
        p.name: p
        for p in nbmod.inspect_parameters(
            names[names.index(PAPERMILL_NOTEBOOKS / "complex_parameters.ipynb")]
        )
    }
    # the cell has a line that does not parse (`= 2`) and one with two '=': both skipped
    assert set(complex_) == {"msg", "a", "b", "c"}
    assert complex_["a"].value == 2.25 and complex_["a"].help == "Variable a"
    assert complex_["b"].value == ["Hello", "World"]
    assert complex_["b"].inferred_type_name == "List[str]"


# the cases of papermill's own tests/test_translators.py::test_inspect_python, and more
CELLS = [
    "a = 2",
    "a: int = 2",
    "a = 2 # type:int",
    "a = False # Nice variable a",
    "a: float = 2.258 # type: int Nice variable a",
    "a = 'this is a string' # type: int Nice variable a",
    "a: List[str] = ['this', 'is', 'a', 'string', 'list'] # Nice variable a",
    "a: List[str] = [\n    'this', # First\n    'is',\n    'a',\n    'string',\n"
    "    'list' # Last\n] # Nice variable a",
    "a: List[str] = [\n                'this', # First\n                'is',\n\n"
    "                'a',\n                'string',\n                'list' # Last\n"
    "            ] # Nice variable a\n\n            b: float = -2.3432 # My b variable\n"
    "            ",
    "%matplotlib inline\nC = 1.0  # regularisation",
    "x = y = 3\nz = 1",
    "= 2\nok = 'yes'",
    "d = {\n  'k': 1,\n  'j': [1, 2],\n}",
    "s = 'a#b'",
    "",
    "# only a comment",
    "def f(x=1):\n    return x",
    'name: "str" = "n"',
]


@pytest.mark.parametrize("src", CELLS)
def test_a_cell_gives_what_papermill_gives(src: str) -> None:
    assert _as_tuples(nbmod.inspect_source(src)) == _as_tuples(
        PythonTranslator.inspect(new_code_cell(source=src))
    )


def test_defaults_are_values_when_they_are_literals() -> None:
    got = {
        p.name: p.value
        for p in nbmod.inspect_source(
            "n = 10\nlr: float = 1e-3  # step\nitems = [\n  1,\n  2,\n]\ns = 'a#b'\n"
            "path = Path('x')\n%time\nbig = " + "9" * 5000 + "\ndeep = " + "[" * 500 + "]" * 500
        )
    }
    assert got == {
        "n": 10,
        "lr": 0.001,
        "items": [1, 2],
        "s": "a#b",
        "path": None,
        "big": None,
        "deep": None,
    }


LINES = st.sampled_from(
    [
        "a = 1",
        "b: int = 2  # the b",
        "c = [",
        "  1,",
        "  2 # two",
        "] # type: list the c",
        "d = a == 3",
        "= 2",
        "%matplotlib inline",
        "!pip list",
        "# comment",
        "",
        "e = 'x#y'",
        "f = {'k': 1}",
        "g = h = 0",
        "import os",
        "i: 'float' = 0.5",
        "   j = 3",
        "k=-1#note",
        "l = None",
        "m = f(x=1)",
        'n = "two words" # type: str said twice',
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(LINES, max_size=12))
def test_random_cells_infer_as_papermill_does_and_never_raise(lines: list[str]) -> None:
    src = "\n".join(lines)
    assert _as_tuples(nbmod.inspect_source(src)) == _as_tuples(
        PythonTranslator.inspect(new_code_cell(source=src))
    )


def test_only_the_first_parameters_cell_counts_and_other_languages_have_none(
    tmp_path: Path,
) -> None:
    nb = notebook(tmp_path / "a.ipynb", ("a = 1", ["parameters"]), ("b = 2", ["parameters"]))
    assert nbmod.declared_parameters(nb) == {"a": 1}
    data = json.loads(nb.read_text())
    data["metadata"] = {"kernelspec": {"name": "ir", "language": "R"}}
    nb.write_text(json.dumps(data))
    assert nbmod.declared_parameters(nb) == {}
    assert nbmod.declared_parameters(notebook(tmp_path / "none.ipynb", "x = 1")) == {}


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("{not json"), "is not valid JSON"),
        (lambda p: p.write_bytes(b"\xff\xfe{}"), "is not valid JSON"),
        (lambda p: p.write_text("[1, 2]"), "is not a Jupyter notebook"),
        (lambda p: p.write_text('{"cells": 3}'), "is not a Jupyter notebook"),
        (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "is not valid JSON"),
        (lambda p: p.mkdir(), "is not a file"),
        (lambda p: os.mkfifo(p), "is not a file"),  # reading a FIFO would hang
    ],
)
def test_a_notebook_that_cannot_be_read_is_named(tmp_path: Path, make: Any, says: str) -> None:
    path = tmp_path / "nb.ipynb"
    make(path)
    for fn in (nbmod.declared_parameters, nbmod.code_digest):
        with pytest.raises(ConfigError, match=says) as info:
            fn(path)
        assert str(path) in info.value.message and "\n" not in info.value.message


def test_odd_but_valid_json_cells_are_read_without_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.ipynb"
    path.write_text(
        json.dumps(
            {
                "cells": [
                    "not a cell",
                    {"cell_type": "code", "metadata": {"tags": "parameters"}, "source": "x = 1"},
                    {"cell_type": "code", "metadata": [], "source": 5},
                    {
                        "cell_type": "code",
                        "metadata": {"tags": [1, "parameters"]},
                        "source": ["a = ", 2],
                    },
                ]
            }
        )
    )
    assert nbmod.declared_parameters(path) == {"a": 2}
    assert len(nbmod.code_digest(path)) == 32
