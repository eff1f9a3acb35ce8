"""Paths in nbops.yaml never lead nbops outside the project: outs and notebooks outside the root,
in ``.nbops/``, through a symlink out of the root, ``nbops.yaml`` itself as an out, and names
that are no file (empty, NUL, ``~``, a FIFO, a device) are refused at file:line:column; deps may
be read outside the project (a shared data folder), never from ``.nbops/`` nor ``/proc``."""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.errors import ConfigError
from nbops.pipeline import graph, paths, spec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project with a notebook, data, a FIFO, and symlinks into and out of it."""
    root = tmp_path / "proj"
    for name in ("nb/a.ipynb", "data/raw.csv", ".nbops/mlflow.db"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "shared.csv").write_text("x\n")
    (root / "link_out").symlink_to(tmp_path / "outside")
    (root / "link_in").symlink_to(root / "data")
    (root / "link_state").symlink_to(root / ".nbops")
    (root / "link_yaml").symlink_to(root / "nbops.yaml")
    os.mkfifo(root / "data" / "fifo")
    return root


def load(root: Path, text: str) -> spec.Pipeline:
    (root / "nbops.yaml").write_text(dedent(text))
    return spec.load(root / "nbops.yaml")


def refused(root: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(root, text)
    return caught.value


def stage(key: str, value: str) -> str:
    """A one-stage nbops.yaml whose ``key`` is ``value`` (a JSON string is a YAML string)."""
    quoted = json.dumps(value)
    if key == "notebook":
        return f"stages:\n  a:\n    notebook: {quoted}\n"
    return f"stages:\n  a:\n    notebook: nb/a.ipynb\n    {key}: [data/raw.csv, {quoted}]\n"


OUTSIDE_OUTS = [
    ("../x.csv", "leaves the project root"),
    ("data/../../x.csv", "leaves the project root"),
    ("..", "leaves the project root"),
    ("/tmp/x.csv", "is an absolute path"),
    (".nbops/x", "inside .nbops/"),
    (".nbops", "inside .nbops/"),
    ("./.nbops/cache/", "inside .nbops/"),
    ("data/../.nbops/mlflow.db", "inside .nbops/"),
    ("link_state/x", "inside .nbops/"),
    ("nbops.yaml", "nbops.yaml itself"),
    ("./nbops.yaml", "nbops.yaml itself"),
    ("link_yaml", "nbops.yaml itself"),
    (".git/hooks/pre-commit", "inside .git/"),
    ("link_out/x.csv", "symlink"),
    ("link_out", "symlink"),
    ("link_out/../shared.csv", "'..' after a symlink"),
    ("link_out/../proj/models", "'..' after a symlink"),
    (".", "the whole project"),
    ("~/x.csv", "'~'"),
    ("a\x00b", "NUL"),
    ("a\nb", "control character"),
    ("data/fifo", "FIFO"),
    (" ", "is empty"),
]


@pytest.mark.parametrize(("out", "why"), OUTSIDE_OUTS)
def test_an_out_outside_the_project_is_refused_where_it_is(root: Path, out: str, why: str) -> None:
    err = refused(root, stage("outs", out))
    assert (err.file, err.line, err.column) == (str(root / "nbops.yaml"), 4, 26), err
    assert f"stage 'a': out {out!r}" in err.message and why in err.message, err
    assert err.hint


@pytest.mark.parametrize(
    ("notebook", "why"),
    [
        ("../a.ipynb", "leaves the project root"),
        ("/tmp/a.ipynb", "is an absolute path"),
        ("link_out/a.ipynb", "symlink"),
        ("link_out/../a.ipynb", "'..' after a symlink"),
        (".nbops/runs/x/a.ipynb", "inside .nbops/"),
        ("~/a.ipynb", "'~'"),
        ("data/fifo", "FIFO"),
    ],
)
def test_a_notebook_outside_the_project_is_refused(root: Path, notebook: str, why: str) -> None:
    err = refused(root, stage("notebook", notebook))
    assert (err.line, err.column) == (3, 15), err
    assert f"notebook {notebook!r}" in err.message and why in err.message, err


def test_an_absolute_out_inside_the_project_is_refused_with_the_relative_path(root: Path) -> None:
    err = refused(root, stage("outs", str(root / "data" / "out.csv")))
    assert "absolute" in err.message and err.hint == (
        "write it relative to the project root: data/out.csv"
    )


@pytest.mark.parametrize(
    ("dep", "why"),
    [
        (".nbops/mlflow.db", "inside .nbops/"),
        ("link_state/mlflow.db", "inside .nbops/"),
        ("data/fifo", "FIFO"),
        ("/dev/zero", "/dev"),
        ("/dev/null", "/dev"),
        ("/proc/kmsg", "/proc"),
        ("/sys/kernel", "/sys"),
        ("~/data.csv", "'~'"),
        (".", "the whole project"),
        ("a\x00b", "NUL"),
    ],
)
def test_a_dep_nbops_must_not_read_is_refused(root: Path, dep: str, why: str) -> None:
    err = refused(root, stage("deps", dep))
    assert (err.line, err.column) == (4, 26), err
    assert f"dep {dep!r}" in err.message and why in err.message, err


def test_deps_may_be_read_outside_the_project(root: Path, tmp_path: Path) -> None:
    """Reading is not writing: a shared data folder outside the project is a dep like any."""
    shared = str(tmp_path / "outside" / "shared.csv")
    p = load(root, stage("deps", shared) + "    outs: [models/]\n")
    assert p.stages["a"].deps == ["data/raw.csv", shared]
    for dep in ("../outside/shared.csv", "link_out/shared.csv", "link_in/raw.csv"):
        assert load(root, stage("deps", dep)).stages["a"].deps[1] == dep


def test_drift_tables_are_checked_like_deps(root: Path) -> None:
    text = stage("deps", "data/raw.csv") + "drift: {reference: data/raw.csv, current: data/fifo}\n"
    err = refused(root, text)
    assert err.line == 5 and "drift: table 'data/fifo'" in err.message, err


def test_the_first_refused_path_in_the_file_is_reported(root: Path) -> None:
    err = refused(
        root,
        """\
        stages:
          a:
            notebook: nb/a.ipynb
            outs: [ok.csv, ../first.csv]
          b:
            notebook: ../second.ipynb
        """,
    )
    assert err.line == 4 and "../first.csv" in err.message


def test_normalised_paths_inside_the_project_are_accepted(root: Path) -> None:
    p = load(root, stage("outs", "data/./sub/../out.csv"))
    assert p.stages["a"].outs == ["data/raw.csv", "data/./sub/../out.csv"]
    assert paths.inside_project(root, "models/", kind="out", what="out") == root / "models"


# --- property: random paths are accepted inside the root, or refused at a line -------------------
PARTS = [
    "..",
    ".",
    "",
    ".nbops",
    ".NBOPS",
    "nbops.yaml",
    ".git",
    "~",
    "data",
    "raw.csv",
    "fifo",
    "link_out",
    "link_in",
    "link_state",
    "link_yaml",
    "x",
    "a\x00",
    "\\",
    "nb",
    "a.ipynb",
]


@st.composite
def path_texts(draw: st.DrawFn, root: Path) -> str:
    parts = draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=5))
    text = "/".join(parts) + draw(st.sampled_from(["", "/"]))
    prefix = draw(st.sampled_from(["", "", "/", str(root) + "/", str(root.parent) + "/", "./"]))
    return prefix + text


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_paths_are_accepted_inside_the_root_or_refused_at_a_line(
    root: Path, data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(["outs", "deps", "notebook"]))
    value = data.draw(path_texts(root))
    text = stage(key, value)
    (root / "nbops.yaml").write_text(text)
    real_root = os.path.realpath(root)
    state = posixpath.join(real_root, ".nbops")
    try:
        p = spec.load(root / "nbops.yaml")
    except ConfigError as err:
        assert err.file == str(root / "nbops.yaml") and err.line in (3, 4), (value, err)
        assert err.hint, (value, err)
        return
    st_ = p.stages["a"]
    for rel in [st_.notebook, *st_.outs]:
        real = os.path.realpath(root / rel.replace("\\", "/"))
        assert paths.within(real, real_root) and not paths.within(real, state), (value, real)
        assert not posixpath.isabs(rel), value
    for rel in st_.deps:
        real = os.path.realpath(root / rel.replace("\\", "/"))
        assert not paths.within(real, state), (value, real)
    try:
        graph.build(p)
    except ConfigError as err:
        assert err.file == str(root / "nbops.yaml") and err.line is not None, (value, err)
