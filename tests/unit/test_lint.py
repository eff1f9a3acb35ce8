"""The code base stays ruff-clean, as a new user checks it on a fresh clone: `ruff check .` and
`ruff format --check .` from the repository root (the style rules live in pyproject.toml), the
example notebooks included and clean rather than excluded or ignored wholesale."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

from tests.conftest import REPO

RUFF = (shutil.which("ruff") or f"{sys.executable} -m ruff").split()
NOTEBOOKS = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("example_notebooks/*.ipynb"))
# the one ignore pyproject.toml justifies: ruff skips %%track cells, so the names they bind look
# undefined to it in the quickstart
JUSTIFIED = {"example_notebooks/tracking_quickstart.ipynb": {"F821"}}
# a cell that breaks one rule of each kind the notebooks were once excused from
PROBE = json.dumps(
    {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": ["import sys\n", "import os\n", f"print(undefined, '{'x' * 100}')\n"],
            }
        ],
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
)
PROBE_CODES = {"I001", "F401", "F821", "E501"}


def _ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUFF, *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_ruff_check_finds_nothing():
    out = _ruff("check", ".")  # exactly what a new user runs: the example notebooks too
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_check_finds_nothing():
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_example_notebook_is_linted_and_formatted_with_no_blanket_ignore():
    """Each notebook's path (and a new one's) gets every rule but the ignores pyproject.toml
    justifies: the same probe cell is checked under each name, as ruff would check that file."""
    assert NOTEBOOKS, "example_notebooks/ has no notebook"
    for path in [*NOTEBOOKS, "example_notebooks/a_new_notebook.ipynb"]:
        out = _ruff(
            "check",
            "--no-cache",
            "--force-exclude",
            "--output-format",
            "concise",
            "--stdin-filename",
            path,
            "-",
            stdin=PROBE,
        )
        found = set(re.findall(r": ([A-Z]+[0-9]+) ", out.stdout))
        assert found == PROBE_CODES - JUSTIFIED.get(path, set()), (path, out.stdout)
        fmt = _ruff(
            "format", "--check", "--force-exclude", "--stdin-filename", path, "-", stdin=PROBE
        )
        assert fmt.returncode == 1, f"ruff format does not cover {path}"
