"""The code base stays ruff-clean (the style rules live in pyproject.toml)."""

import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or f"{sys.executable} -m ruff"
    out = subprocess.run(
        [*ruff.split(), "check", "."],  # what a new user runs: the example notebooks too
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
