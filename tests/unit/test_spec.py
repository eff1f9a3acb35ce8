"""nbops.yaml: the model, and errors that name file:line:column and say the fix."""

from __future__ import annotations

import pytest

from nbops.errors import ConfigError
from nbops.pipeline import graph, spec


def write(tmp_path, text, notebooks=("a.ipynb", "b.ipynb")):
    for nb in notebooks:
        (tmp_path / nb).write_text(
            '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
        )
    p = tmp_path / "nbops.yaml"
    p.write_text(text)
    return p


def load_error(tmp_path, text) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        graph.build(spec.load(write(tmp_path, text)))
    return err.value


def test_a_valid_file_loads_with_positions(tmp_path):
    p = spec.load(
        write(
            tmp_path,
            "experiment: x\nstages:\n  a:\n    notebook: a.ipynb\n"
            "    sweep: {C: [1, 2]}\n    checks: {acc: '>= 0.5'}\n",
        )
    )
    assert p.experiment == "x" and p.stages["a"].name == "a"
    assert p.where("stages", "a", "sweep") == (5, 5)
    assert spec.sweep_points(p.stages["a"]) == [{"C": 1}, {"C": 2}]
    assert spec.sweep_points(p.stages["a"], {"seed": [0, 1]}) == [
        {"C": 1, "seed": 0},
        {"C": 1, "seed": 1},
        {"C": 2, "seed": 0},
        {"C": 2, "seed": 1},
    ]


def test_unknown_key_suggests_the_closest_one(tmp_path):
    err = load_error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    dep: [x]\n")
    assert "nbops.yaml:4:5" in str(err)
    assert "unknown key 'dep' in stage 'a'" in err.message and "'deps'" in err.hint


def test_missing_required_key_names_the_stage(tmp_path):
    err = load_error(tmp_path, "stages:\n  a:\n    params: {x: 1}\n")
    assert "stage 'a' needs 'notebook'" in err.message and ":3:" in str(err)


def test_wrong_type_says_what_was_expected(tmp_path):
    err = load_error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    params: [1, 2]\n")
    assert "stages.a.params must be a mapping, got a list" in err.message
    assert err.line == 4


def test_bad_check_expression_is_explained(tmp_path):
    err = load_error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    checks: {acc: 'big'}\n")
    assert "not a comparison like '>= 0.8'" in err.message


def test_yaml_syntax_error_has_a_position(tmp_path):
    err = load_error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n   deps: [x\n")
    assert err.line is not None and "YAML syntax error" in err.message


def test_duplicate_keys_are_not_silently_merged(tmp_path):
    err = load_error(
        tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n  a:\n    notebook: b.ipynb\n"
    )
    assert "key 'a' appears twice" in err.message and err.line == 4


def test_empty_and_missing_files(tmp_path):
    assert "empty" in load_error(tmp_path, "").message
    with pytest.raises(ConfigError, match="does not exist"):
        spec.load(tmp_path / "nope" / "nbops.yaml")


def test_cycle_is_reported_with_its_path(tmp_path):
    err = load_error(
        tmp_path,
        "stages:\n  a:\n    notebook: a.ipynb\n    deps: [y]\n"
        "    outs: [x]\n  b:\n    notebook: b.ipynb\n    deps: [x]\n"
        "    outs: [y]\n",
    )
    assert "cycle" in err.message and "a -> b -> a" in err.message.replace(
        "b -> a -> b", "a -> b -> a"
    )


def test_two_stages_writing_one_out_are_named(tmp_path):
    err = load_error(
        tmp_path,
        "stages:\n  a:\n    notebook: a.ipynb\n    outs: [x]\n"
        "  b:\n    notebook: b.ipynb\n    outs: [x]\n",
    )
    assert "stages 'a' and 'b' both write x" in err.message and err.line == 7


def test_missing_notebook_and_unproduced_dep(tmp_path):
    err = load_error(tmp_path, "stages:\n  a:\n    notebook: zz.ipynb\n")
    assert "notebook zz.ipynb does not exist" in err.message and err.line == 3
    err = load_error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    deps: [raw.csv]\n")
    assert "dep raw.csv does not exist and no stage writes it" in err.message


def test_unknown_after_and_schedule_stages_suggest_names(tmp_path):
    err = load_error(tmp_path, "stages:\n  train:\n    notebook: a.ipynb\n    after: [trian]\n")
    assert "'trian'" in err.message and "did you mean 'train'" in err.hint
    err = load_error(
        tmp_path,
        "stages:\n  a:\n    notebook: a.ipynb\nschedules:\n"
        "  nightly: {cron: '0 2 * * *', stages: [b]}\n",
    )
    assert "schedule 'nightly'" in err.message and err.line == 5


def test_dep_inside_an_out_directory_orders_stages(tmp_path):
    p = spec.load(
        write(
            tmp_path,
            "stages:\n  b:\n    notebook: b.ipynb\n    deps: [models/m.pkl]\n"
            "  a:\n    notebook: a.ipynb\n    outs: [models/]\n",
        )
    )
    g = graph.build(p)
    assert g.order == ["a", "b"] and g.upstream("b") == ["a"] and g.downstream("a") == {"b"}
    assert g.select(["b"]) == ["a", "b"]
    with pytest.raises(ConfigError, match="did you mean 'b'"):
        g.select(["bb"])
