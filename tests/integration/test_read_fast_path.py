"""The read commands on the embedded store (``nbops runs``, ``show``, ``diff``, ``lineage``) read
its SQL without importing MLflow, and print exactly what the MLflow path prints.

The store is a real SQLite MLflow store seeded through MlflowClient: a pipeline run, a stage run
writing ``data.csv``, a sweep of two points reading it (each writing its own model), an evaluate
run tracking one point's model, a NaN metric, a deleted run, a hidden experiment, a notebook
artifact. The MLflow path is forced with ``NBOPS_READ_PATH=mlflow`` (it is the facade, as before
this fast path); each fast command runs in a fresh process that reports whether ``mlflow`` was
imported."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nbops import tags
from nbops.mlflow.readers.facade import READ_PATH
from tests.conftest import store_uri

D_DATA, D_M1, D_M2 = "a" * 32, "b" * 32, "c" * 32

RUN_ALL = """
import contextlib, io, json, sys
from nbops.cli import main
out = []
for args in json.loads(sys.argv[1]):
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = main(args)
    out.append([code, buf.getvalue(), err.getvalue()])
print(json.dumps({"results": out, "mlflow": "mlflow" in sys.modules,
                  "heavy": sorted(m for m in ("pandas", "sqlalchemy", "papermill")
                                  if m in sys.modules)}))
"""


def run_all(root: Path, commands: list[list[str]], **env: str) -> dict[str, Any]:
    """Every command in one fresh process (cli.main, as `nbops` runs it), with its exit code,
    stdout and stderr, and whether MLflow (or pandas, SQLAlchemy, papermill) got imported."""
    out = subprocess.run(
        [sys.executable, "-c", RUN_ALL, json.dumps(commands)],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.splitlines()[-1]))


@pytest.fixture
def seeded(project: Path) -> dict[str, str]:
    from nbops.mlflow.store import open_store

    store = open_store(store_uri(project))  # nbops' schema, WAL and artifact root
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(project))
    exp = store.experiment_id("fp")
    hidden = store.experiment_id("nbops-internal")
    client.set_experiment_tag(hidden, tags.HIDDEN, "true")
    ids: dict[str, str] = {}

    def run(name: str, run_tags: dict[str, str], start: int, experiment: str = exp) -> str:
        r = client.create_run(experiment, start_time=start, tags=run_tags, run_name=name)
        client.set_terminated(r.info.run_id, "FINISHED", end_time=start + 1500)
        ids[name] = r.info.run_id
        return str(r.info.run_id)

    pipe = run("pipeline", {tags.PIPELINE: "nbops.yaml"}, 1_000)
    make = run(
        "make",
        {tags.STAGE: "make", tags.MLFLOW_PARENT_RUN_ID: pipe, f"{tags.OUT_PREFIX}data.csv": D_DATA},
        2_000,
    )
    client.log_param(make, "n", "40")
    sweep = run(
        "train",
        {
            tags.STAGE: "train",
            tags.MLFLOW_PARENT_RUN_ID: pipe,
            f"{tags.OUT_PREFIX}models/m1.pkl": D_M1,
            f"{tags.OUT_PREFIX}models/m2.pkl": D_M2,
        },
        3_000,
    )
    for i, (c, digest) in enumerate([("0.1", D_M1), ("1.0", D_M2)], start=1):
        point = run(
            f"train[C={c}]",
            {
                tags.STAGE: "train",
                tags.SWEEP_POINT: f"C={c}",
                tags.MLFLOW_PARENT_RUN_ID: sweep,
                f"{tags.DEP_PREFIX}data.csv": D_DATA,
                f"{tags.OUT_PREFIX}models/m{i}.pkl": digest,
                tags.GIT_COMMIT: "0123456789abcdef",
            },
            3_100 + i,
        )
        client.log_param(point, "C", c)
        for step, acc in enumerate([0.5, 0.7 + i / 10]):
            client.log_metric(point, "accuracy", acc, step=step, timestamp=5_000 + step)
        client.log_metric(point, "loss", float("nan") if i == 1 else 0.25)
    ev = run(
        "evaluate",
        {
            tags.STAGE: "evaluate",
            tags.MLFLOW_PARENT_RUN_ID: pipe,
            f"{tags.DATA_PREFIX}input.m1.pkl": D_M1,
            tags.NOTEBOOK: "evaluate.ipynb",
        },
        4_000,
    )
    client.log_metric(ev, "f1", 0.875)
    nb = project / "evaluate.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    client.log_artifact(ev, str(nb), "notebook")
    gone = run("deleted", {}, 5_000)
    client.delete_run(gone)
    run("internal", {}, 6_000, experiment=hidden)
    return ids


def commands(ids: dict[str, str]) -> list[list[str]]:
    p1, p2 = ids["train[C=0.1]"], ids["train[C=1.0]"]
    return [
        ["runs"],
        ["runs", "--json"],
        ["runs", "-e", "fp", "--filter", "metrics.accuracy > 0.85", "--json"],
        ["runs", "--filter", "tags.`nbops.stage` = 'train'", "--order-by", "params.C DESC"],
        ["runs", "--order-by", "metrics.loss", "--max", "3"],
        ["runs", "-e", "nbops-internal"],
        ["runs", "-e", "nosuch"],
        ["runs", "--filter", "params.C = 1"],
        ["runs", "--order-by", "metrics.loss upward"],
        ["show", p1],
        ["show", p1, "--json"],
        ["show", ids["deleted"]],
        ["show", "0" * 32],
        ["show", "not-an-id"],
        ["diff", p1, p2],
        ["diff", ids["pipeline"], ids["evaluate"]],
        ["diff", p1, "0" * 32],
        ["lineage", ids["evaluate"]],
        ["lineage", ids["evaluate"], "--json"],
        ["lineage", p2, "--json"],
        ["lineage", ids["pipeline"]],
        ["lineage", ids["train"]],
        ["lineage", "0" * 32],
    ]


def test_read_commands_print_what_the_mlflow_path_prints_without_importing_mlflow(
    project: Path, seeded: dict[str, str]
) -> None:
    todo = commands(seeded)
    fast = run_all(project, todo)
    slow = run_all(project, todo, **{READ_PATH: "mlflow"})
    assert fast["mlflow"] is False and fast["heavy"] == []
    assert slow["mlflow"] is True  # the forced path really is MLflow's
    for args, got, want in zip(todo, fast["results"], slow["results"], strict=True):
        assert got == want, args
    by_args = dict(zip(map(tuple, todo), fast["results"], strict=True))
    # and what they print is the store's content (not two empty answers)
    listed = json.loads(by_args[("runs", "--json")][1])
    assert {r["name"] for r in listed} == {
        "pipeline",
        "make",
        "train",
        "train[C=0.1]",
        "train[C=1.0]",
        "evaluate",
    }  # no deleted run, no run of the hidden experiment
    shown = json.loads(
        by_args[("show", seeded["train[C=0.1]"], "--json")][1].replace("NaN", "null")
    )
    assert shown["metrics"] == {"accuracy": 0.7 + 1 / 10, "loss": None}
    assert shown["params"] == {"C": "0.1"}
    tree = json.loads(by_args[("lineage", seeded["evaluate"], "--json")][1])
    assert tree["run"]["executed_notebook"].endswith("/notebook/evaluate.ipynb")
    (up,) = tree["run"]["upstream"]
    assert up["run"]["run_id"] == seeded["train[C=0.1]"]
    assert up["run"]["upstream"][0]["run"]["run_id"] == seeded["make"]
    assert by_args[("show", "0" * 32)][0] == 2
    assert "does not exist" in by_args[("show", "0" * 32)][2]
    assert "not valid MLflow search syntax" in by_args[("runs", "--filter", "params.C = 1")][2]


def test_a_filter_outside_the_sql_subset_is_answered_through_mlflow(
    project: Path, seeded: dict[str, str]
) -> None:
    todo = [["runs", "--filter", "dataset.name = 'x'"]]
    fast = run_all(project, todo)
    slow = run_all(project, todo, **{READ_PATH: "mlflow"})
    assert fast["results"] == slow["results"]
    assert fast["mlflow"] is True


def test_a_store_at_a_schema_revision_the_sql_does_not_know_is_read_through_mlflow(
    project: Path, seeded: dict[str, str], tmp_path: Path
) -> None:
    from nbops.mlflow.readers import sqlite

    db = project / ".nbops" / "mlflow.db"
    assert sqlite.readable(db)
    copy = tmp_path / "other.db"
    src, dst = sqlite3.connect(db), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.execute("UPDATE alembic_version SET version_num = 'f00dfeedf00d'")
    dst.commit()
    dst.close()
    assert not sqlite.readable(copy)
    assert sqlite.readable(copy, frozenset({"f00dfeedf00d"}))
    todo = [["runs"], ["show", seeded["evaluate"]]]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{copy}"}
    fast = run_all(project, todo, **env)
    slow = run_all(project, todo, **env, **{READ_PATH: "mlflow"})
    assert fast["results"] == slow["results"]
    assert fast["mlflow"] is True  # today's path: the facade decides what such a store is


def test_show_reads_nan_and_every_tag_as_mlflow_does(project: Path, seeded: dict[str, str]) -> None:
    from nbops.mlflow.readers.facade import ReadStore, open_read_store
    from nbops.mlflow.store import open_store

    fast = open_read_store(store_uri(project))
    assert isinstance(fast, ReadStore)
    rid = seeded["train[C=0.1]"]
    got, want = fast.get_run(rid), open_store(store_uri(project)).get_run(rid)
    assert dict(got.info) == dict(want.info)
    assert got.data.tags == want.data.tags and got.data.params == want.data.params
    assert math.isnan(got.data.metrics["loss"]) and math.isnan(want.data.metrics["loss"])
    assert got.data.metrics["accuracy"] == want.data.metrics["accuracy"] == 0.7 + 1 / 10
