"""One version: pyproject.toml holds the literal, ``nbops.__version__`` reads the installed
distribution's, and the labextension's package.json (npm needs a literal) says the same."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbops

ROOT = Path(__file__).resolve().parents[2]


def _pyproject_version() -> str:
    """[project] version in pyproject.toml (read by lines: tomllib is Python 3.11+)."""
    table = None
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("["):
            table = line.strip()
        elif table == "[project]" and line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("pyproject.toml declares no [project] version")


def test_nbops_version_is_the_installed_distributions_and_pyprojects():
    assert nbops.__version__ == importlib.metadata.version("nbops") == _pyproject_version()


def test_the_labextension_says_the_same_version():
    version = _pyproject_version()
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert package["version"] == version
    lock = json.loads((ROOT / "labextension" / "package-lock.json").read_text())
    assert lock["version"] == lock["packages"][""]["version"] == version, "run npm install"
    built = ROOT / "nbops" / "labextension" / "package.json"
    if built.exists():  # the prebuilt copy the wheel ships: rebuilt with the same version
        assert json.loads(built.read_text())["version"] == version


def test_no_python_module_of_nbops_writes_the_version_down():
    literal = re.compile(rf"[\"']{re.escape(_pyproject_version())}[\"']")
    found = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "nbops").rglob("*.py")
        if literal.search(p.read_text())
    ]
    assert found == []


def test_import_nbops_reads_no_version_until_asked():
    probe = (
        "import sys\nimport nbops\nbefore = 'importlib.metadata' in sys.modules\n"
        "print(before, nbops.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", _pyproject_version()]


def test_a_source_tree_that_is_not_installed_reads_its_pyproject(tmp_path):
    (tmp_path / "nbops").mkdir()
    shutil.copy(ROOT / "nbops" / "__init__.py", tmp_path / "nbops" / "__init__.py")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nversion = "0"\n\n[project]\nname = "nbops"\nversion = "7.8.9"\n'
        '\n[tool.other]\nversion = "1"\n'
    )
    # -S: no site-packages, so the installed nbops (and its metadata) is not found
    probe = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import nbops; print(nbops.__version__)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "7.8.9"
