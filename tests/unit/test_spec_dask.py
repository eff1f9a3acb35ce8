"""nbops.yaml's scale-out keys: a stage's ``resources:`` and ``retries:``, the top level's
``dask: {scheduler:}``; what loads, and every wrong value a ConfigError at its line that says the
fix (never a traceback, whatever the value)."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops.errors import ConfigError
from nbops.pipeline import spec
from nbops.pipeline.config import parse_size, stage_resources


def load(tmp_path: Path, text: str) -> spec.Pipeline:
    path = tmp_path / "nbops.yaml"
    path.write_text(dedent(text), encoding="utf-8")
    return spec.load(path)


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


def test_resources_retries_and_dask_load_into_what_the_executor_gets(tmp_path):
    p = load(
        tmp_path,
        """\
        stages:
          train:
            notebook: t.ipynb
            resources: {GPU: 1, memory: 8GB}
            retries: 3
          small:
            notebook: t.ipynb
            resources:
              Memory: 512MiB
              licence: 0.5
          plain: {notebook: t.ipynb}
        dask: {scheduler: "tcp://10.0.0.5:8786"}
        """,
    )
    assert stage_resources(p.stages["train"]) == ({"GPU": 1.0}, 8e9)
    assert stage_resources(p.stages["small"]) == ({"licence": 0.5}, 512 * 2**20)
    assert stage_resources(p.stages["plain"]) == ({}, None)
    assert (p.stages["train"].retries, p.stages["plain"].retries) == (3, 1)  # default: 1
    assert p.dask is not None and p.dask.scheduler == "tcp://10.0.0.5:8786"
    assert load(tmp_path, "stages: {a: {notebook: a.ipynb, resources: }}\n").dask is None


@pytest.mark.parametrize(
    ("line", "found", "fix"),
    [
        ("resources: {GPU: '1'}", "resources.GPU must be a number (only memory: takes a size)", ""),
        ("resources: {GPU: 0}", "resources.GPU must be a positive number, got 0", "GPU: 1"),
        ("resources: {GPU: -2}", "resources.GPU must be a positive number, got -2", ""),
        ("resources: {GPU: .inf}", "resources.GPU must be a positive number, got inf", ""),
        ("resources: {GPU: true}", "resources.GPU must be a positive number", ""),
        ("resources: {GPU: [1]}", "resources.GPU must be a positive number", ""),
        ("resources: {memory: 8XB}", "resources.memory must be a size like 8GB", "512MiB"),
        ("resources: {memory: 0GB}", "resources.memory must be a size like 8GB", ""),
        ("resources: {memory: 8GB, MEMORY: 1GB}", "resources gives memory twice", "one memory:"),
        ("resources: [GPU]", "must be a mapping, got a list", ""),
        ("resources: {'a b': 1}", "stage 'a': resources name 'a b' is not a valid name", ""),
        ("retries: 101", "stages.a.retries must be at most 100, got the number 101", "100"),
        ("retries: -1", "stages.a.retries must be at least 0", ""),
        ("retries: '2'", "stages.a.retries must be a whole number, got the text '2'", ""),
    ],
)
def test_a_wrong_resource_or_retries_names_the_stage_the_key_and_the_fix(
    tmp_path, line, found, fix
):
    err = error(tmp_path, f"stages:\n  a:\n    notebook: a.ipynb\n    {line}\n")
    assert found in err.message, err.message
    assert err.file and err.file.endswith("nbops.yaml") and err.line == 4, err
    assert fix in (err.hint or "")


def test_the_dask_section_is_checked_as_the_others(tmp_path):
    err = error(tmp_path, "stages: {}\ndask:\n  schedular: local:2\n")
    assert err.message.endswith("unknown key 'schedular' in dask") and err.line == 3
    assert err.hint == "did you mean 'scheduler'?"
    err = error(tmp_path, "stages: {}\ndask: tcp://10.0.0.5:8786\n")
    assert "dask must be a mapping, got the text 'tcp://10.0.0.5:8786'" in err.message
    assert err.line == 2 and "dask: {scheduler: tcp://" in (err.hint or "")
    err = error(tmp_path, "stages: {}\ndask: {}\n")
    assert "dask is missing the required key 'scheduler'" in err.message and err.line == 2
    err = error(tmp_path, "stages: {}\ndask: {scheduler: ''}\n")
    assert "dask.scheduler must not be empty" in err.message
    err = error(tmp_path, "stages: {}\ndask: {scheduler: 8786}\n")
    assert "dask.scheduler must be a string, got the number 8786" in err.message


def test_sizes_in_every_unit():
    assert parse_size("8GB") == 8e9 and parse_size("8gb") == 8e9 and parse_size("8G") == 8e9
    assert parse_size("512MiB") == 512 * 2**20 and parse_size("1.5 KiB") == 1536
    assert parse_size("1e9") == 1e9 and parse_size(" 2e3 k ") == 2e6 and parse_size(100) == 100
    for bad in ("", "GB", "-1GB", "0", "1PB", "8 G B", "9" * 400, "nan", True, 0, float("inf")):
        with pytest.raises(ValueError):
            parse_size(bad)  # type: ignore[arg-type]


RESOURCE_VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
RESOURCE_NAMES = st.one_of(
    st.sampled_from(["GPU", "memory", "Memory", "MEM", "licence", "a.b-c_1"]),
    st.text(min_size=1, max_size=8),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(resources=st.dictionaries(RESOURCE_NAMES, RESOURCE_VALUES, min_size=1, max_size=3))
def test_any_resources_value_loads_or_is_a_config_error_at_a_line(tmp_path, resources):
    # JSON is YAML: every value is written exactly as the user could have written it
    text = "stages:\n  a:\n    notebook: a.ipynb\n    resources: " + json.dumps(resources) + "\n"
    try:
        p = load(tmp_path, text)
    except ConfigError as err:
        assert err.line in (1, 2, 3, 4) and err.file and err.message and err.hint, err
        return
    amounts, memory = stage_resources(p.stages["a"])  # what loads can be used: no ValueError
    assert all(v > 0 and v != float("inf") for v in amounts.values())
    assert memory is None or 0 < memory < float("inf")
    assert not any(k.lower() == "memory" for k in amounts)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.text(alphabet="0123456789.eE+-kKmMgGtTiIbB ", max_size=12))
def test_any_memory_text_is_a_size_or_a_config_error(tmp_path, size):
    text = f"stages:\n  a:\n    notebook: a.ipynb\n    resources: {{memory: {json.dumps(size)}}}\n"
    try:
        p = load(tmp_path, text)
    except ConfigError as err:
        assert err.line == 4 and "resources.memory" in err.message, err
        return
    _, memory = stage_resources(p.stages["a"])
    assert memory is not None and 0 < memory < float("inf")
