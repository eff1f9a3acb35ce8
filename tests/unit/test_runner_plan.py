"""Planning a run (no kernel): which points a stage runs, and the environment fingerprint."""

from __future__ import annotations

import sys
from pathlib import Path

from nbops.pipeline.runner import Runner
from nbops.pipeline.staleness import environment_digest
from tests.conftest import notebook


def _project(root: Path) -> Path:
    root.mkdir()
    notebook(root / "train.ipynb", ("C = 1.0\nkind = 'a'", ["parameters"]), "x = C")
    (root / "nbops.yaml").write_text(
        "stages:\n  train:\n    notebook: train.ipynb\n    sweep: {C: [0.1, 1.0, 10.0]}\n"
    )
    return root


def _labels(runner: Runner) -> list[str]:
    (plan,) = runner.plan(["train"])
    return [p.label for p in plan.points]


def test_the_yaml_sweep_makes_one_point_per_value(tmp_path):
    assert _labels(Runner(_project(tmp_path / "p"))) == [
        "train[C=0.1]",
        "train[C=1.0]",
        "train[C=10.0]",
    ]


def test_command_line_sweep_replaces_the_yaml_values_of_that_key(tmp_path):
    root = _project(tmp_path / "p")
    assert _labels(Runner(root, sweep=["C=5"])) == ["train[C=5]"]
    assert _labels(Runner(root, sweep=["kind=a,b"])) == [
        "train[C=0.1,kind=a]",
        "train[C=0.1,kind=b]",
        "train[C=1.0,kind=a]",
        "train[C=1.0,kind=b]",
        "train[C=10.0,kind=a]",
        "train[C=10.0,kind=b]",
    ]


def test_environment_fingerprint_ignores_path_entries_without_packages(tmp_path, monkeypatch):
    environment_digest.cache_clear()  # computed once per process otherwise
    before = environment_digest()
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "path", [str(empty), *reversed(sys.path), str(tmp_path / "gone")])
    environment_digest.cache_clear()
    assert environment_digest() == before  # more entries, another order: same packages
    (empty / "newpkg-1.0.dist-info").mkdir()
    environment_digest.cache_clear()
    assert environment_digest() != before  # a new distribution changes it
    monkeypatch.undo()
    environment_digest.cache_clear()
