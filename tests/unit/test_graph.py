"""The stage DAG: order from outs → deps and ``after:``, and what makes a pipeline unbuildable."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from nbops.errors import ConfigError
from nbops.pipeline import graph, spec


def project(tmp_path: Path, text: str, files: tuple[str, ...] = ()) -> spec.Pipeline:
    """A throwaway project: nbops.yaml, a notebook per stage, and the given data files."""
    (tmp_path / "nbops.yaml").write_text(dedent(text), encoding="utf-8")
    p = spec.load(tmp_path / "nbops.yaml")
    for stage in p.stages.values():
        notebook = tmp_path / stage.notebook
        notebook.parent.mkdir(parents=True, exist_ok=True)
        notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    return p


def build(tmp_path: Path, text: str, files: tuple[str, ...] = ()) -> graph.Graph:
    return graph.build(project(tmp_path, text, files))


def error(tmp_path: Path, text: str, files: tuple[str, ...] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, text, files)
    return caught.value


PIPELINE = """\
stages:
  evaluate:
    notebook: notebooks/evaluate.ipynb
    deps: [models, data/test.csv]
    outs: [reports/metrics.json]
  prepare:
    notebook: notebooks/prepare.ipynb
    deps: [data/raw.csv]
    outs: [data/train.csv, data/test.csv]
  train:
    notebook: notebooks/train.ipynb
    deps: [data/train.csv]
    outs: [models/]
  report:
    notebook: notebooks/report.ipynb
"""


# --- order and edges ----------------------------------------------------------------------------
def test_stages_run_after_the_stages_whose_outs_they_read(tmp_path):
    g = build(tmp_path, PIPELINE, files=("data/raw.csv",))
    assert g.order == ["prepare", "train", "evaluate", "report"]
    assert g.upstream("evaluate") == ["prepare", "train"]
    assert g.upstream("prepare") == []


def test_unconstrained_stages_keep_file_order(tmp_path):
    g = build(tmp_path, "stages:\n  c: {notebook: c.ipynb}\n  a: {notebook: a.ipynb}\n")
    assert g.order == ["c", "a"]
    g = build(
        tmp_path,
        "stages:\n  c: {notebook: c.ipynb, after: [b]}\n  a: {notebook: a.ipynb}\n"
        "  b: {notebook: b.ipynb}\n",
    )
    assert g.order == ["a", "b", "c"]


def test_dep_inside_an_out_directory_orders_stages(tmp_path):
    g = build(
        tmp_path,
        """\
        stages:
          use:
            notebook: use.ipynb
            deps: [./models//model.pkl]
          fit:
            notebook: fit.ipynb
            outs: [models/]
        """,
    )
    assert g.order == ["fit", "use"] and g.upstream("use") == ["fit"]
    assert g.producers == {"models": "fit"}


def test_a_dep_directory_depends_on_the_outs_inside_it(tmp_path):
    g = build(
        tmp_path,
        "stages:\n  read:\n    notebook: r.ipynb\n    deps: [data]\n"
        "  write:\n    notebook: w.ipynb\n    outs: [data/train.csv]\n",
    )
    assert g.order == ["write", "read"]


def test_after_orders_stages_that_share_no_files(tmp_path):
    g = build(tmp_path, "stages:\n  b: {notebook: b.ipynb, after: [a]}\n  a: {notebook: a.ipynb}\n")
    assert g.order == ["a", "b"] and g.upstream("b") == ["a"]


def test_downstream_is_transitive(tmp_path):
    g = build(tmp_path, PIPELINE, files=("data/raw.csv",))
    assert g.downstream("prepare") == {"train", "evaluate"}
    assert g.downstream("train") == {"evaluate"}
    assert g.downstream("report") == set()


def test_producers_map_normalised_outs_to_their_stage(tmp_path):
    g = build(tmp_path, PIPELINE, files=("data/raw.csv",))
    assert g.producers == {
        "reports/metrics.json": "evaluate",
        "data/train.csv": "prepare",
        "data/test.csv": "prepare",
        "models": "train",
    }


def test_absolute_paths_inside_the_project_are_made_relative(tmp_path):
    assert graph.norm(str(tmp_path / "data" / "x.csv"), tmp_path) == "data/x.csv"
    assert graph.norm("/elsewhere/x.csv", tmp_path) == "/elsewhere/x.csv"
    assert graph.norm("data\\x.csv/") == "data/x.csv"


def test_select_adds_everything_upstream_in_order(tmp_path):
    g = build(tmp_path, PIPELINE, files=("data/raw.csv",))
    assert g.select(["evaluate"]) == ["prepare", "train", "evaluate"]
    assert g.select(["report", "train"]) == ["prepare", "train", "report"]


def test_select_of_an_unknown_stage_suggests_one(tmp_path):
    g = build(tmp_path, PIPELINE, files=("data/raw.csv",))
    with pytest.raises(ConfigError) as caught:
        g.select(["trian"])
    assert "no stage named 'trian'" in caught.value.message
    assert caught.value.hint == "did you mean 'train'? (stages: prepare, train, evaluate, report)"


# --- what cannot be built -----------------------------------------------------------------------
def test_cycle_is_reported_with_its_path(tmp_path):
    err = error(
        tmp_path,
        """\
        stages:
          prepare:
            notebook: p.ipynb
            deps: [features.csv]
            outs: [clean.csv]
          train:
            notebook: t.ipynb
            deps: [clean.csv]
            outs: [features.csv]
        """,
    )
    assert "the stages form a cycle: prepare -> train -> prepare" in err.message
    assert (err.line, err.column) == (4, 12)  # where prepare reads what train writes


def test_a_longer_cycle_through_after_is_reported_in_data_flow_order(tmp_path):
    err = error(
        tmp_path,
        "stages:\n  a: {notebook: a.ipynb, after: [c]}\n  b: {notebook: b.ipynb, after: [a]}\n"
        "  c: {notebook: c.ipynb, after: [b]}\n",
    )
    assert "the stages form a cycle: a -> b -> c -> a" in err.message  # c feeds a, a feeds b
    assert err.line == 2 and "'a' must not depend on 'c'" in err.hint


def test_a_stage_after_itself_is_a_cycle(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    after: [a]\n")
    assert "cycle: a -> a" in err.message and err.line == 4


def test_two_stages_writing_one_out_are_named(tmp_path):
    err = error(
        tmp_path,
        "stages:\n  a:\n    notebook: a.ipynb\n    outs: [x.csv]\n"
        "  b:\n    notebook: b.ipynb\n    outs: [y.csv, ./x.csv]\n",
    )
    assert "stages 'a' and 'b' both write ./x.csv" in err.message
    assert (err.line, err.column) == (7, 19) and "exactly one stage" in err.hint


def test_an_out_inside_another_stages_out_directory_is_two_writers(tmp_path):
    err = error(
        tmp_path,
        "stages:\n  a:\n    notebook: a.ipynb\n    outs: [models]\n"
        "  b:\n    notebook: b.ipynb\n    outs: [models/m.pkl]\n",
    )
    assert "stages 'a' and 'b' both write models/m.pkl" in err.message and err.line == 7


def test_after_an_unknown_stage_suggests_the_closest(tmp_path):
    err = error(tmp_path, "stages:\n  train:\n    notebook: a.ipynb\n    after: [trian]\n")
    assert "stage 'train' runs after stage 'trian', which does not exist" in err.message
    assert (err.line, err.column) == (4, 13) and err.hint.startswith("did you mean 'train'?")


def test_a_missing_notebook_does_not_stop_the_graph(tmp_path):
    # it fails its own stage at run time (tests/integration/test_pipeline.py), like papermill
    p = project(tmp_path, "stages:\n  a:\n    notebook: nb/a.ipynb\n  b:\n    notebook: b.ipynb\n")
    (tmp_path / "nb" / "a.ipynb").unlink()
    assert graph.build(p).order == ["a", "b"]


def test_a_dep_nothing_produces_must_exist(tmp_path):
    text = "stages:\n  a:\n    notebook: a.ipynb\n    deps: [data/raw.csv]\n"
    err = error(tmp_path, text)
    assert "stage 'a': dep data/raw.csv does not exist and no stage writes it" in err.message
    assert (err.line, err.column) == (4, 12) and "outs" in err.hint
    assert build(tmp_path, text, files=("data/raw.csv",)).order == ["a"]


def test_a_stage_cannot_read_its_own_outs(tmp_path):
    err = error(
        tmp_path,
        "stages:\n  a:\n    notebook: a.ipynb\n    deps: [raw.csv, out]\n    outs: [out/x.csv]\n",
        files=("raw.csv",),
    )
    assert "stage 'a' reads out, which it also writes" in err.message
    assert (err.line, err.column) == (4, 21)


def test_schedules_gates_and_drift_must_name_existing_stages(tmp_path):
    stages = "stages:\n  train: {notebook: t.ipynb}\n"
    err = error(tmp_path, stages + "schedules:\n  nightly: {cron: '0 2 * * *', stages: [tran]}\n")
    assert "schedule 'nightly' runs stage 'tran', which does not exist" in err.message
    assert (err.line, err.column) == (4, 41) and "did you mean 'train'" in err.hint
    err = error(tmp_path, stages + "gates:\n  model:\n    stage: evaluate\n")
    assert "gate 'model' checks stage 'evaluate', which does not exist" in err.message
    assert err.line == 5 and err.hint == "stages: train"
    err = error(tmp_path, stages + "drift: {reference: a, current: b, on_drift: [train, x]}\n")
    assert "drift.on_drift names stage 'x', which does not exist" in err.message
    assert err.line == 3


def test_an_empty_pipeline_builds(tmp_path):
    g = build(tmp_path, "stages: {}\n")
    assert g.order == [] and g.select([]) == []
