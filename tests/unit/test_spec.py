"""nbops.yaml as a model: what loads, and errors that name file:line:column and say the fix."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from nbops.errors import ConfigError, ParameterError
from nbops.pipeline import spec

README_EXAMPLE = """\
experiment: iris
stages:
  prepare:
    notebook: notebooks/prepare.ipynb
    params: {test_size: 0.25, seed: 0}
    deps: [data/raw.csv]            # files or directories read
    outs: [data/train.csv, data/test.csv]
  train:
    notebook: notebooks/train.ipynb
    params: {C: 1.0}
    deps: [data/train.csv]
    outs: ["models/model-C${C}.pkl"]  # each sweep point its own file
    sweep: {C: [0.1, 1.0, 10.0]}
    checks: {accuracy: ">= 0.8"}
schedules:
  nightly: {cron: "0 2 * * *", stages: [prepare, train], catchup: latest, retries: 1, timeout: 3600}
gates:
  iris-classifier: {stage: train, require: {accuracy: ">= 0.9"}, better_than_current: accuracy}
drift:
  reference: data/train.csv
  current: data/incoming.csv
  threshold: 0.05
  on_drift: [prepare, train]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nbops.yaml"
    path.write_text(dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> spec.Pipeline:
    return spec.load(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


# --- what loads ---------------------------------------------------------------------------------
def test_the_design_example_loads_into_the_model(tmp_path):
    p = load(tmp_path, README_EXAMPLE)
    assert p.experiment == "iris" and list(p.stages) == ["prepare", "train"]
    train = p.stages["train"]
    assert train.name == "train" and train.notebook == "notebooks/train.ipynb"
    assert train.sweep == {"C": [0.1, 1.0, 10.0]} and train.checks == {"accuracy": ">= 0.8"}
    nightly = p.schedules["nightly"]
    assert (nightly.cron, nightly.catchup, nightly.retries, nightly.timeout) == (
        "0 2 * * *",
        "latest",
        1,
        3600,
    )
    assert p.gates["iris-classifier"].alias == "champion"
    assert p.drift is not None and p.drift.on_drift == ["prepare", "train"]
    assert p.path == tmp_path / "nbops.yaml" and p.root == tmp_path


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    p = load(tmp_path, "stages:\n  a: {notebook: a.ipynb}\nschedules:\n  s: {cron: '@daily'}\n")
    a, s = p.stages["a"], p.schedules["s"]
    assert (a.params, a.deps, a.outs, a.after, a.sweep, a.checks) == ({}, [], [], [], {}, {})
    assert (s.stages, s.catchup, s.retries, s.timeout, s.timezone) == ([], "latest", 0, None, None)
    assert (p.experiment, p.gates, p.drift) == (None, {}, None)


def test_an_empty_stages_section_is_a_pipeline_without_stages(tmp_path):
    assert load(tmp_path, "stages: {}\n").stages == {}
    assert load(tmp_path, "stages:\n").stages == {}


def test_a_key_left_empty_means_none(tmp_path):
    p = load(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    params:\n    deps:\n")
    assert p.stages["a"].params == {} and p.stages["a"].deps == []


def test_where_gives_the_line_and_column_of_keys_and_values(tmp_path):
    p = load(tmp_path, README_EXAMPLE)
    assert p.where("stages", "train") == (8, 3)
    assert p.where("stages", "train", "checks") == (14, 5)
    assert p.where("stages", "train", "checks", value=True) == (14, 13)
    assert p.where("stages", "prepare", "outs", 1) == (7, 28)
    assert p.where("schedules", "nightly", "retries", value=True) == (16, 84)


def test_where_falls_back_to_the_nearest_known_ancestor(tmp_path):
    p = load(tmp_path, README_EXAMPLE)
    assert p.where("stages", "train", "params", "gamma") == p.where("stages", "train", "params")
    assert p.where("nothing", "here") == (1, 1)


def test_scalars_resolve_like_yaml_with_1e_minus_3_a_number_and_dates_text(tmp_path):
    p = load(
        tmp_path,
        """\
        stages:
          a:
            notebook: a.ipynb
            params: {i: 3, h: 0x10, f: 1.5e3, lr: 1e-3, lr2: '1e-3', inf: .inf}
            sweep: {b: [true], n: [null], q: ["3"], d: [2024-01-01]}
        """,
    )
    assert p.stages["a"].params == {
        "i": 3,
        "h": 16,
        "f": 1500.0,
        "lr": 0.001,
        "lr2": "1e-3",
        "inf": float("inf"),
    }
    assert p.stages["a"].sweep == {"b": [True], "n": [None], "q": ["3"], "d": ["2024-01-01"]}


def test_merge_keys_share_settings_between_stages(tmp_path):
    p = load(
        tmp_path,
        """\
        stages:
          a: &defaults
            notebook: a.ipynb
            params: {seed: 0}
          b:
            <<: *defaults
            notebook: b.ipynb
        """,
    )
    assert p.stages["b"].notebook == "b.ipynb" and p.stages["b"].params == {"seed": 0}
    assert p.where("stages", "b", "notebook") == (7, 5)
    assert p.where("stages", "b", "params") == (4, 5)  # where the shared value is written


# --- keys and types -----------------------------------------------------------------------------
def test_unknown_key_suggests_the_closest_one(tmp_path):
    err = error(tmp_path, "stages:\n  train:\n    notebook: a.ipynb\n    dep: [x]\n")
    assert "nbops.yaml:4:5: unknown key 'dep' in stage 'train'" in str(err)
    assert err.hint == "did you mean 'deps'?"


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    colour: red\n")
    assert err.message.endswith("unknown key 'colour' in stage 'a'") and err.line == 4
    assert err.hint == (
        "allowed keys: notebook, params, deps, outs, after, sweep, checks, resources, retries"
    )


def test_unknown_keys_in_every_section_are_named(tmp_path):
    err = error(tmp_path, "stage:\n  a: {notebook: a.ipynb}\n")
    assert "unknown key 'stage' at the top level" in err.message and "'stages'" in err.hint
    err = error(tmp_path, "stages: {}\nschedules:\n  s: {cron: x, retry: 1}\n")
    assert "unknown key 'retry' in schedule 's'" in err.message and "'retries'" in err.hint
    err = error(tmp_path, "stages: {}\ndrift: {reference: a, current: b, treshold: 1}\n")
    assert "unknown key 'treshold' in drift" in err.message and "'threshold'" in err.hint
    assert (err.line, err.column) == (2, 35)


def test_a_name_key_inside_a_stage_is_refused(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    name: b\n    notebook: a.ipynb\n")
    assert "unknown key 'name' in stage 'a'" in err.message and err.line == 3
    assert "named by its key" in err.hint


def test_missing_required_key_names_the_stage(tmp_path):
    err = error(tmp_path, "stages:\n  train:\n    params: {x: 1}\n")
    assert "stage 'train' is missing the required key 'notebook'" in err.message
    assert err.line == 2 and "notebook:" in err.hint


def test_missing_stages_section(tmp_path):
    err = error(tmp_path, "experiment: x\n")
    assert "nbops.yaml is missing the required key 'stages'" in err.message and err.line == 1


def test_wrong_type_says_what_was_expected(tmp_path):
    err = error(tmp_path, "stages:\n  train:\n    notebook: a.ipynb\n    params: [1, 2]\n")
    assert "stages.train.params must be a mapping, got a list" in err.message
    assert (err.line, err.column) == (4, 13)


def test_numbers_are_not_taken_for_text_nor_text_for_numbers(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    deps: [data, 3]\n")
    assert "stages.a.deps.1 must be a string, got the number 3" in err.message
    assert (err.line, err.column) == (4, 18) and "quoted" in err.hint
    err = error(tmp_path, "stages: {}\nschedules:\n  s: {cron: x, retries: 'two'}\n")
    assert "schedules.s.retries must be a whole number, got the text 'two'" in err.message


def test_schedule_values_are_checked(tmp_path):
    def schedule_error(fields: str) -> ConfigError:
        return error(tmp_path, f"stages: {{}}\nschedules:\n  s: {{{fields}}}\n")

    err = schedule_error("cron: x, catchup: sometimes")
    assert "must be one of 'none', 'latest' or 'all', got the text 'sometimes'" in err.message
    assert err.line == 3
    assert "must be at least 0, got the number -1" in schedule_error("cron: x, retries: -1").message
    assert "timeout must be greater than 0" in schedule_error("cron: x, timeout: 0").message
    assert "schedules.s.cron must not be empty" in schedule_error("cron: ''").message
    assert "schedule 's' is missing the required key 'cron'" in schedule_error("retries: 1").message


def test_drift_threshold_is_a_fraction(tmp_path):
    err = error(tmp_path, "stages: {}\ndrift:\n  reference: a\n  current: b\n  threshold: 5\n")
    assert "drift.threshold must be at most 1" in err.message and (err.line, err.column) == (5, 14)


def test_names_of_stages_schedules_and_gates_are_checked(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n  2nd step:\n    notebook: a\n")
    assert "stage name '2nd step' is not a valid name" in err.message
    assert (err.line, err.column) == (4, 3) and "start with a letter" in err.hint
    err = error(tmp_path, "stages: {}\ngates:\n  my/model: {stage: a}\n")
    assert "gate name 'my/model' is not a valid name" in err.message and err.line == 3


def test_the_first_problem_in_the_file_is_reported(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebok: a.ipynb\n    deps: 3\n")
    assert "unknown key 'notebok'" in err.message and err.line == 3


# --- checks and sweeps --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        (">= 0.8", (">=", 0.8)),
        ("<0.2", ("<", 0.2)),
        ("== 1", ("==", 1.0)),
        (" != -3e2 ", ("!=", -300.0)),
    ],
)
def test_parse_check_reads_an_operator_and_a_bound(text, expected):
    assert spec.parse_check(text) == expected


@pytest.mark.parametrize("text", ["big", "=> 1", ">= ", "0.8", ">= 1 2", ">= nan", ">= 1e999"])
def test_parse_check_refuses_what_is_not_a_comparison(text):
    with pytest.raises(ConfigError) as caught:
        spec.parse_check(text)
    assert "'>= 0.8'" in caught.value.hint


def test_bad_check_expression_is_explained_where_it_is(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    checks: {acc: 'big'}\n")
    assert "stages.a.checks.acc: 'big' is not a comparison like '>= 0.8'" in err.message
    assert (err.line, err.column) == (4, 19) and "operators" in err.hint
    err = error(tmp_path, "stages: {}\ngates:\n  g: {stage: a, require: {acc: 0.9}}\n")
    assert "gates.g.require.acc must be a string, got the number 0.9" in err.message
    assert "'>= 0.8'" in err.hint


def test_an_unquoted_comparison_gets_a_quoting_hint(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    checks:\n      acc: >= 0.8\n")
    assert "YAML syntax error" in err.message and err.line == 5
    assert "quote comparisons" in err.hint


def test_an_empty_sweep_list_is_refused(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    sweep:\n      C: []\n")
    assert "stages.a.sweep.C: the list of values is empty" in err.message
    assert (err.line, err.column) == (5, 10)


def test_sweep_points_are_the_grid(tmp_path):
    p = load(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    sweep: {C: [1, 2], k: [x, y]}\n")
    assert spec.sweep_points(p.stages["a"]) == [
        {"C": 1, "k": "x"},
        {"C": 1, "k": "y"},
        {"C": 2, "k": "x"},
        {"C": 2, "k": "y"},
    ]


def test_extra_sweep_values_add_to_the_grid_or_replace_a_key(tmp_path):
    stage = load(tmp_path, "stages:\n  a: {notebook: a, sweep: {C: [1, 2]}}\n").stages["a"]
    assert spec.sweep_points(stage, {"seed": [0]}) == [{"C": 1, "seed": 0}, {"C": 2, "seed": 0}]
    assert spec.sweep_points(stage, {"C": [9]}) == [{"C": 9}]
    with pytest.raises(ParameterError, match="sweep of 'seed' has no values"):
        spec.sweep_points(stage, {"seed": []})


def test_no_sweep_is_one_point():
    assert spec.sweep_points(spec.Stage(notebook="a.ipynb")) == [{}]


def test_resolve_params_puts_overrides_on_top(tmp_path):
    stage = load(tmp_path, "stages:\n  a: {notebook: a, params: {C: 1.0, seed: 0}}\n").stages["a"]
    assert spec.resolve_params(stage, {"C": 10}) == {"C": 10, "seed": 0}
    assert stage.params == {"C": 1.0, "seed": 0}


# --- the file itself ----------------------------------------------------------------------------
def test_yaml_syntax_error_points_at_the_problem(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n    deps: [x\n")
    assert "YAML syntax error" in err.message and str(err).startswith(f"{tmp_path}/nbops.yaml:5:")


def test_tabs_in_indentation_are_explained(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n\tnotebook: a.ipynb\n")
    assert err.line == 3 and "spaces, not tabs" in err.hint


def test_duplicate_keys_are_reported_at_the_second_occurrence(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: a.ipynb\n  a:\n    notebook: b.ipynb\n")
    assert "key 'a' appears twice in the same mapping" in err.message
    assert (err.line, err.column) == (4, 3) and "silently" in err.hint
    err = error(tmp_path, "stages:\n  a:\n    notebook: a\n    params:\n      x: 1\n      x: 2\n")
    assert "key 'x' appears twice" in err.message and err.line == 6


def test_an_empty_file_says_what_to_add(tmp_path):
    for text in ("", "# nothing yet\n", "---\n"):
        err = error(tmp_path, text)
        assert "the file is empty" in err.message and err.line == 1 and "stages:" in err.hint


def test_a_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        spec.load(tmp_path / "nbops.yaml")
    assert "nbops.yaml does not exist" in caught.value.message
    assert "create nbops.yaml" in caught.value.hint


def test_the_top_level_must_be_a_mapping(tmp_path):
    err = error(tmp_path, "- prepare\n- train\n")
    assert "the top level must be a mapping" in err.message and "got a list" in err.message
    assert err.line == 1


def test_yaml_tags_other_than_plain_values_are_refused(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: !!python/object:os.system ls\n")
    assert "unsupported YAML tag !!python/object:os.system" in err.message
    assert (err.line, err.column) == (3, 15)


def test_a_recursive_alias_is_refused(tmp_path):
    err = error(tmp_path, "stages: &s\n  a: *s\n")
    assert "refers to a value that contains it" in err.message and err.line == 2


def test_bytes_that_are_not_utf8_are_located(tmp_path):
    (tmp_path / "nbops.yaml").write_bytes(b"stages:\n  a:\n    notebook: caf\xe9.ipynb\n")
    with pytest.raises(ConfigError) as caught:
        spec.load(tmp_path / "nbops.yaml")
    assert "not UTF-8" in caught.value.message and caught.value.line == 3


def test_control_characters_are_located(tmp_path):
    err = error(tmp_path, "stages:\n  a:\n    notebook: é\x01.ipynb\n")
    assert "#x0001 is not allowed" in err.message and (err.line, err.column) == (3, 16)


def test_a_second_document_is_refused(tmp_path):
    err = error(tmp_path, "stages: {}\n---\nstages: {}\n")
    assert "found another document" in err.message and err.line == 2


def test_a_deeply_nested_file_is_refused_at_its_line_not_a_crash(tmp_path):
    # libyaml's composer recurses in C: 50,000 '[' took the process down with SIGSEGV
    err = error(tmp_path, "stages:\n  a:\n    params: {x: " + "[" * 50_000 + "]" * 50_000 + "}\n")
    assert "nested more than 64 levels deep" in err.message and err.line == 3
