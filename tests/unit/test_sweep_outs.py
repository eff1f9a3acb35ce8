"""Per-point outs of a sweep (``${NAME}`` in a sweep stage's outs): what nbops.yaml may say, at
which line it is refused, how each point's paths are expanded, how the DAG orders a stage that
reads them, and which stages ``--force`` forces. No kernel, no store."""

from __future__ import annotations

import re
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import ConfigError, ParameterError
from nbops.pipeline import spec
from nbops.pipeline.graph import build, overlap
from nbops.pipeline.runner import Runner
from tests.conftest import notebook

GOOD = """\
stages:
  prepare:
    notebook: prepare.ipynb
    outs: [data/train.csv]
  train:
    notebook: train.ipynb
    deps: [data/train.csv]
    params: {max_iter: 100}
    outs: ["models/model-C${C}.pkl", "models/C${C}-it${max_iter}.json", logs]
    sweep: {C: [0.01, 0.1, 1.0]}
  evaluate:
    notebook: evaluate.ipynb
    deps: [models]
    outs: [reports/metrics.json]
"""


def project(tmp_path: Path, yaml: str = GOOD) -> Path:
    root = tmp_path / "p"
    root.mkdir(parents=True)
    for name in ("prepare", "train", "evaluate"):
        notebook(root / f"{name}.ipynb", ("C = 1.0\nmax_iter = 10\nseed = 0", ["parameters"]))
    (root / "nbops.yaml").write_text(dedent(yaml))
    return root


def refused(tmp_path: Path, yaml: str) -> ConfigError:
    root = project(tmp_path, yaml)
    with pytest.raises(ConfigError) as info:
        spec.load(root / "nbops.yaml")
    return info.value


def test_the_per_point_outs_of_a_sweep_expand_for_each_point_and_the_rest_is_shared(tmp_path):
    root = project(tmp_path)
    (plan,) = [p for p in Runner(root).plan(["train"]) if p.name == "train"]
    assert [pt.outs for pt in plan.points] == [
        ["models/model-C0.01.pkl", "models/C0.01-it100.json"],
        ["models/model-C0.1.pkl", "models/C0.1-it100.json"],
        ["models/model-C1.0.pkl", "models/C1.0-it100.json"],
    ]
    assert plan.shared == ["logs"]
    assert plan.outs_of(plan.points[1]) == [
        "models/model-C0.1.pkl",
        "models/C0.1-it100.json",
        "logs",
    ]
    assert len(plan.all_outs()) == 7  # every point's own two files and the shared folder


def test_a_dep_on_the_folder_of_per_point_outs_orders_after_the_sweep(tmp_path):
    root = project(tmp_path, GOOD.replace("  evaluate:", "  evaluate:\n    after: []"))
    graph = build(spec.load(root / "nbops.yaml"))
    assert graph.upstream("evaluate") == ["train"]
    assert graph.order == ["prepare", "train", "evaluate"]
    one = GOOD.replace("deps: [models]", "deps: [models/model-C0.1.pkl]")
    graph = build(spec.load(project(tmp_path / "b", one) / "nbops.yaml"))
    assert graph.upstream("evaluate") == ["train"]  # one point's file is the sweep's out too


def test_templates_overlap_the_paths_they_can_expand_to():
    assert overlap("models", "models/model-C${C}.pkl")
    assert overlap("models/model-C0.1.pkl", "models/model-C${C}.pkl")
    assert overlap("models/C${C}/model.pkl", "models/C1")
    assert overlap(".", "a/${C}")
    assert not overlap("models/other.json", "models/model-C${C}.pkl")
    assert not overlap("data", "models/model-C${C}.pkl")
    assert not overlap("models/a-${C}.pkl", "models/b-${C}.pkl")
    assert overlap("models/m-${C}.pkl", "models/m-${seed}.pkl")


def test_two_stages_whose_templates_can_write_one_file_are_refused(tmp_path):
    yaml = GOOD.replace("outs: [reports/metrics.json]", "outs: [models/model-C0.1.pkl]")
    yaml = yaml.replace("deps: [models]", "deps: [data/train.csv]")
    root = project(tmp_path, yaml)
    with pytest.raises(ConfigError, match=r"stages 'train' and 'evaluate' both write"):
        build(spec.load(root / "nbops.yaml"))


@pytest.mark.parametrize(
    ("outs", "line", "message", "hint"),
    [
        (
            '["models/m-${gamma}.pkl"]',
            9,
            "out 'models/m-${gamma}.pkl' names ${gamma}, which is not a parameter of its "
            "sweep: or params:",
            "known here: C, max_iter",
        ),
        (
            '["models/m-${C.pkl"]',
            9,
            "has a '${' without its closing '}'",
            "name each point's own files with a swept parameter",
        ),
        ('["models/m-${}.pkl"]', 9, "has ${}, which is not a parameter name", None),
        (
            '["models/m-it${max_iter}.pkl"]',
            9,
            "does not name the swept ${C}, so several points would write the same file",
            "put ${C} in its path too",
        ),
    ],
)
def test_a_malformed_or_unknown_placeholder_is_refused_at_its_line(
    tmp_path, outs, line, message, hint
):
    yaml = GOOD.replace('["models/model-C${C}.pkl", "models/C${C}-it${max_iter}.json", logs]', outs)
    err = refused(tmp_path, yaml)
    assert err.line == line, err
    assert message in err.message, err.message
    assert re.match(
        rf"^{re.escape(str(tmp_path / 'p' / 'nbops.yaml'))}:{line}:12: stage 'train': ", err.message
    )
    if hint:
        assert hint in (err.hint or ""), err.hint


def test_a_placeholder_in_a_stage_without_sweep_or_in_a_dep_is_refused(tmp_path):
    err = refused(tmp_path, GOOD.replace("outs: [reports/metrics.json]", 'outs: ["r-${C}.json"]'))
    assert err.line == 14
    assert "stage 'evaluate': out 'r-${C}.json' names ${C}, but the stage has no sweep:" in str(err)
    assert err.hint == "add a sweep: to the stage, or write the path without ${...}"
    err = refused(tmp_path / "d", GOOD.replace("deps: [models]", 'deps: ["models/m-${C}.pkl"]'))
    assert err.line == 13 and "dep 'models/m-${C}.pkl' holds ${...}" in err.message


def test_a_shared_out_that_is_one_file_is_refused_before_a_sweep_runs(tmp_path):
    root = project(tmp_path)
    (root / "logs").write_text("one file, not a folder")
    with pytest.raises(ConfigError) as info:
        Runner(root).plan(["train"])
    err = info.value
    assert err.line == 9 and err.file == str(root / "nbops.yaml")
    assert "stage 'train': out 'logs' is one file shared by every point of the sweep" in str(err)
    assert "like logs-C${C}" in (err.hint or "")
    # one point (a --sweep of one value, as a re-run of one point is): nothing is overwritten
    (plan,) = [p for p in Runner(root, sweep=["C=5"]).plan(["train"]) if p.name == "train"]
    assert [pt.label for pt in plan.points] == ["train[C=5]"]


def test_points_that_would_write_one_file_are_refused_naming_both(tmp_path):
    root = project(tmp_path)
    with pytest.raises(ParameterError) as info:
        Runner(root, sweep=["seed=1,2"]).plan(["train"])
    err = info.value
    assert re.match(
        rf"^{re.escape(str(root / 'nbops.yaml'))}:9: train\[C=0\.01,seed=1\] and "
        r"train\[C=0\.01,seed=2\] would both write models/model-C0\.01\.pkl$",
        err.message,
    ), err.message
    assert err.hint == "name every swept parameter in 'models/model-C${C}.pkl', like ${seed}"


def test_a_value_that_cannot_be_part_of_a_file_name_is_refused(tmp_path):
    root = project(tmp_path)
    with pytest.raises(ParameterError, match=r"train\[C=a/b\]: out 'models/model-C\$\{C\}.pkl'"):
        Runner(root, sweep=["C=a/b,c"]).plan(["train"])
    with pytest.raises(ParameterError, match=r"C=\[1, 2\] cannot be part of a file name"):
        Runner(root, sweep=["C=[[1, 2], [3]]"]).plan(["train"])


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1),
    )
)
def test_expansion_is_what_the_notebooks_f_string_writes(value):
    """``models/model-C${C}.pkl`` for the point C=value is ``f"models/model-C{C}.pkl"`` in the
    notebook, or a ParameterError that names the out (never a path with '/' in the value)."""
    template = "models/model-C${C}.pkl"
    try:
        got = spec.expand_out(template, {"C": value})
    except ParameterError as err:
        assert template in err.message
        text = str(value)
        assert "/" in text or "\\" in text or text in (".", "..")
        return
    assert got == f"models/model-C{value}.pkl"
    assert got.count("/") == 1


def force_project(tmp_path: Path) -> Path:
    root = project(tmp_path, GOOD.replace('"models/C${C}-it${max_iter}.json", logs', ""))
    return root


def _forced(runner: Runner, names: list[str] | None) -> set[str]:
    runner.plan(names)
    return runner.forced


def test_force_forces_the_named_stages_and_force_upstream_what_they_depend_on(tmp_path):
    root = force_project(tmp_path)
    assert _forced(Runner(root, force=True), ["evaluate"]) == {"evaluate"}
    assert _forced(Runner(root, force=True), ["train", "evaluate"]) == {"train", "evaluate"}
    assert _forced(Runner(root, force=True), None) == {"prepare", "train", "evaluate"}
    everything = {"prepare", "train", "evaluate"}
    assert _forced(Runner(root, force_upstream=True), ["evaluate"]) == everything
    assert _forced(Runner(root, force_upstream=True), ["train"]) == {"prepare", "train"}
    assert _forced(Runner(root), ["evaluate"]) == set()
