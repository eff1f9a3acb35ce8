"""``-p``/``--sweep``/``--tag`` values go through nbops.values: hostile YAML is one ParameterError
naming the item (exit 2), never a traceback, a hang or a 5000-digit conversion; ``--summary``
into a directory that does not exist is refused before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import NbopsError, ParameterError
from nbops.pipeline.runner import Runner, parse_assignments
from tests.conftest import nbops_cli, notebook

BOMB = "[" + ",".join(["&a [x,x,x,x,x,x,x,x,x]"] + [f"&{c} [*a,*a,*a,*a,*a]" for c in "bcdefg"])


def _project(root: Path) -> Path:
    root.mkdir()
    notebook(root / "train.ipynb", ("C = 1.0\nkind = 'a'", ["parameters"]), "x = C")
    (root / "nbops.yaml").write_text("stages:\n  train:\n    notebook: train.ipynb\n")
    return root


HOSTILE = [
    ("C=*a", "aliases"),
    ("C=&a 1", "anchors"),
    ("C=" + BOMB + "]", "anchors"),
    ("C=" + "[" * 100 + "]" * 100, "nested more than"),
    ("C=" + "9" * 5000, "5000-character number"),
    ("C=[1, " + "1" * 5000 + "]", "5000-character number"),
    ("C=!!python/object:os.system x", "tags"),
    ("C=" + "x" * 20_000, "characters long"),
    ("C=a\x00b", "NUL"),
]


@pytest.mark.parametrize("item, says", HOSTILE, ids=[s.split()[0] for _, s in HOSTILE])
@pytest.mark.parametrize("flag", ["params", "sweep", "tags"])
def test_hostile_values_are_one_error_naming_the_item(
    tmp_path: Path, item: str, says: str, flag: str
) -> None:
    root = _project(tmp_path / "p")
    with pytest.raises(ParameterError) as info:
        Runner(root, **{flag: [item]})
    msg = info.value.message
    what = {"params": "-p C", "sweep": "--sweep C", "tags": "--tag C"}[flag]
    assert msg.startswith(f"{what}: ") and says in msg and "\n" not in msg, msg
    assert len(msg) < 300 and info.value.exit_code == 2


def test_a_sweep_item_is_named_by_its_place_in_the_list(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    with pytest.raises(ParameterError, match=r"^--sweep C \(item 2\): YAML aliases"):
        Runner(root, sweep=["C=1,*a,3"])
    runner = Runner(root, sweep=["C=0.1,1e-3,10"], params=["kind=[1, {a: b}]"])
    (plan,) = runner.plan()
    assert [p.params["C"] for p in plan.points] == [0.1, 0.001, 10]
    assert plan.points[0].params["kind"] == [1, {"a": "b"}]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("&*!%[]{},:'\"-#|>@`0123456789eE.xa \t\n"), max_size=60))
def test_any_typed_value_is_a_value_or_a_parameter_error(text: str) -> None:
    for what in ("-p", "--sweep"):
        try:
            ((k, _),) = parse_assignments([f"k={text}"], what)
        except ParameterError as err:
            assert err.message.startswith(f"{what} k")
        else:
            assert k == "k"


def test_summary_into_a_missing_directory_is_refused_before_the_run(project: Path) -> None:
    notebook(project / "nb.ipynb", "open('ran', 'w').write('1')")
    (project / "nbops.yaml").write_text("stages:\n  s:\n    notebook: nb.ipynb\n")
    out = nbops_cli("run", "--summary", str(project / "no" / "such" / "s.json"), cwd=project)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("nbops run: --summary ") and "does not exist" in lines[0]
    assert len(lines) == 2 and "mkdir -p" in lines[1] and "Traceback" not in out.stderr
    assert not (project / "ran").exists()  # nothing ran
    bad = nbops_cli("run", "--summary", str(project), cwd=project)
    assert bad.returncode == 2 and "is a directory" in bad.stderr, bad.stderr


def test_a_summary_that_cannot_be_written_is_an_nbops_error(tmp_path: Path) -> None:
    from nbops.pipeline.outcome import PipelineOutcome

    with pytest.raises(NbopsError, match="--summary .*cannot write it"):
        PipelineOutcome(None, 0, "ok").write(tmp_path / "gone" / "s.json")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--jobs", "0"], "--jobs must be a whole number from 1 to 1024, got 0"),
        (["--jobs", "-3"], "--jobs must be a whole number"),
        (["--jobs", "99999999999999999999"], "--jobs must be a whole number"),
        (["--timeout", "nan"], "--timeout must be a positive number"),
        (["--timeout", "1e309"], "--timeout must be a positive number"),
        (["--timeout", "0"], "--timeout must be a positive number"),
        (["--sweep", "C="], "--sweep C: no values given"),
        (["--sweep", "C=[]"], "the list of values is empty"),
    ],
)
def test_bad_counts_and_empty_sweeps_are_one_line_errors(
    argv: list[str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from nbops import cli

    (tmp_path / "nbops.yaml").write_text("stages:\n  a:\n    notebook: a.ipynb\n")
    notebook(tmp_path / "a.ipynb", ("C = 1", ["parameters"]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(tmp_path))
    assert cli.main(["run", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
