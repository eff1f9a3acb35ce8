"""Where a run is logged from (nbops.tracking.context): each fall-back says what it did."""

import json
import sys

from nbops.tracking import context


def _nb(path):
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_without_a_notebook_the_origin_says_what_runs_this_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("NBOPS_NOTEBOOK", "JPY_SESSION_NAME"):
        monkeypatch.delenv(var, raising=False)
    # a plain Python process: no IPython shell (earlier tests in this process may have made one)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    found = context.origin({})
    assert found.notebook is None
    assert found.how.startswith("no notebook path: a Python process")
    missing = context.origin({"PAPERMILL_INPUT_PATH": "gone.ipynb"})
    assert missing.how == (
        f"no notebook path: gone.ipynb (from papermill --inject-paths) is not a file in {tmp_path}"
    )


def test_relative_papermill_paths_resolve_from_where_the_command_started(tmp_path, monkeypatch):
    start, moved = tmp_path / "project", tmp_path / "project" / "elsewhere"
    moved.mkdir(parents=True)
    nb, out = _nb(start / "in.ipynb"), _nb(start / "out.ipynb")
    monkeypatch.delenv("NBOPS_NOTEBOOK", raising=False)
    monkeypatch.chdir(moved)  # papermill --cwd elsewhere: the kernel runs there
    monkeypatch.setenv("PWD", str(start))  # the shell's directory, where the paths are relative
    ns = {"PAPERMILL_INPUT_PATH": "in.ipynb", "PAPERMILL_OUTPUT_PATH": "out.ipynb"}
    assert context.origin(ns) == context.Origin(nb, "papermill --inject-paths")
    assert context.executed_notebook(ns) == out
    assert context.snapshot_note(ns) is None
    remote = {**ns, "PAPERMILL_OUTPUT_PATH": "s3://bucket/out.ipynb"}
    assert context.executed_notebook(remote) is None
    assert "s3://bucket/out.ipynb is not a local notebook: the snapshot is the input" in (
        context.snapshot_note(remote) or ""
    )


def test_notes_name_a_missing_git_work_tree_and_an_unreadable_notebook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBOPS_NOTEBOOK", raising=False)
    (tmp_path / "broken.ipynb").write_text("{not json")
    notes = context.notes({"__vsc_ipynb_file__": str(tmp_path / "broken.ipynb")})
    assert any(n.startswith("broken.ipynb cannot be read (") for n in notes), notes
    assert f"{tmp_path} is not in a git work tree: no commit or diff is recorded" in notes
    (tmp_path / ".git").mkdir()
    assert not any("git" in n for n in context.notes({}))
    assert context.in_git_work_tree(tmp_path / "sub" / "dir")


def test_a_plain_process_is_named_by_its_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBOPS_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert context.origin({}).how == "no notebook path: a Python process: train.py"
