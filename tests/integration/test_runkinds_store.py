"""Every ops command accepts every kind of run (issue 13 item 4, ops side), on a real SQLite
store holding the runs an example-like ``nbops run`` makes (the tags and outs of the sweep-outs
contract, written with MlflowClient): a pipeline run, a stage run, a sweep's run with two points
that each record their own outs, an evaluate run that read the ``models`` directory and tracked
one point's model, and runs that ``nbops run`` did not make. No kernels: lineage, verify's
refusals, the gates' stage check, drift's count of tagged runs and the server's message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nbops import tags
from nbops.errors import InvalidInput, NotFound
from nbops.ops import gates, monitor
from nbops.ops.lineage import lineage, render
from nbops.ops.runkinds import kind_of
from nbops.ops.verify import verify
from nbops.pipeline.hashing import HashCache
from nbops.pipeline.spec import Gate
from tests.conftest import notebook

YAML = """\
experiment: kinds
stages:
  prepare: {notebook: prepare.ipynb, outs: [data/train.csv]}
  train:
    notebook: train.ipynb
    deps: [data/train.csv]
    outs: ["models/m-${C}.pkl", "models/m-${C}.json"]
    sweep: {C: [1, 2]}
  evaluate: {notebook: evaluate.ipynb, deps: [models]}
"""


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from nbops.mlflow.store import open_store

    root = tmp_path_factory.mktemp("kinds") / "proj"
    (root / ".nbops").mkdir(parents=True)
    (root / "nbops.yaml").write_text(YAML)
    for nb in ("prepare", "train", "evaluate"):
        notebook(root / f"{nb}.ipynb", "x = 1")
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("x,y\n1,0\n2,1\n")
    models = root / "models"
    models.mkdir()
    for name, text in {
        "m-1.pkl": "model one",
        "m-1.json": '{"C": 1}',
        "m-2.pkl": "model two",
        "m-2.json": '{"C": 2}',
        "README": "no stage wrote me",
    }.items():
        (models / name).write_text(text)
    hashes = HashCache(root, root / ".nbops")
    d = {rel: hashes.digest(rel) for rel in ("data/train.csv", "models")}
    files = {
        n: hashes.digest(f"models/{n}") for n in ("m-1.pkl", "m-1.json", "m-2.pkl", "m-2.json")
    }
    uri = f"sqlite:///{root / '.nbops' / 'mlflow.db'}"
    store = open_store(uri)
    client = MlflowClient(uri)
    exp = store.experiment_id("kinds")
    t = [1_700_000_000_000]

    def run(name: str, run_tags: dict[str, str], exp_id: str = exp, **params: str) -> str:
        t[0] += 1000
        rid = client.create_run(exp_id, start_time=t[0], run_name=name, tags=run_tags).info.run_id
        for k, v in params.items():
            client.log_param(rid, k, v)
        client.set_terminated(rid, "FINISHED", t[0] + 500)
        return str(rid)

    def child(parent: str, **extra: str) -> dict[str, str]:
        return {tags.MLFLOW_PARENT_RUN_ID: parent, tags.PARENT_RUN: parent, **extra}

    out = tags.OUT_PREFIX
    ids: dict[str, Any] = {"root": root, "uri": uri, "files": files, "digests": d}
    ids["P"] = run("pipeline", {tags.PIPELINE: "nbops.yaml"})
    ids["S"] = run(
        "prepare",
        child(ids["P"], **{tags.STAGE: "prepare", f"{out}data/train.csv": d["data/train.csv"]}),
    )
    ids["T"] = run(
        "train",
        child(
            ids["P"],
            **{tags.STAGE: "train", tags.SHARED_OUTS: "[]"},
            **{f"{out}models/{n}": v for n, v in files.items()},
        ),
    )
    for c in ("1", "2"):
        ids[f"T{c}"] = run(
            f"train[C={c}]",
            child(
                ids["T"],
                **{
                    tags.STAGE: "train",
                    tags.SWEEP_POINT: f"train[C={c}]",
                    f"{tags.DEP_PREFIX}data/train.csv": d["data/train.csv"],
                    f"{out}models/m-{c}.pkl": files[f"m-{c}.pkl"],
                    f"{out}models/m-{c}.json": files[f"m-{c}.json"],
                    f"{tags.MODEL_PREFIX}model": "sklearn",
                },
            ),
            C=c,
        )
    ids["E"] = run(
        "evaluate",
        child(
            ids["P"],
            **{
                tags.STAGE: "evaluate",
                f"{tags.DEP_PREFIX}models": d["models"],
                f"{tags.DATA_PREFIX}input.m-2.pkl": files["m-2.pkl"],
            },
        ),
    )
    # a stage run that read a directory no stage run's outs make up
    ids["E2"] = run(
        "evaluate",
        {tags.STAGE: "evaluate", f"{tags.DEP_PREFIX}models": "tree:" + "0" * 32},
    )
    # a run nbops run did not make, in another experiment, that tracked the prepared data
    ids["R"] = run(
        "notebook run",
        {f"{tags.DATA_PREFIX}input.train.csv": d["data/train.csv"]},
        store.experiment_id("scratch"),
    )
    ids["drift"] = run("drift-check", {tags.KIND: "drift"}, store.experiment_id("drift"))
    for k in ("P", "S", "T", "T1", "T2"):
        client.set_tag(ids[k], tags.DRIFT_RUN, ids["drift"])
    # the project moved on after evaluate read models/: the tags still say what it read
    (models / "m-1.pkl").write_text("retrained since")
    return ids


@pytest.fixture
def env(kinds: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(kinds["root"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(kinds["root"])
    return kinds


def edges(node: dict[str, Any]) -> list[tuple[str, str | None, list[str] | None, str | None]]:
    return [
        (u["dep"], u["run"]["run_id"] if u["run"] else None, u.get("files"), u.get("via"))
        for u in node["upstream"]
    ]


def test_lineage_of_evaluate_leads_to_the_sweep_points_that_wrote_what_it_read(env):
    ids = env
    tree = lineage(ids["E"])["run"]
    assert tree["kind"] == "stage" and tree["stage"] == "evaluate"
    assert tree["pipeline_run"] == ids["P"]
    # models/ as read = the two points' files + README, which no stage run wrote; the
    # sweep's run carries the same out tags but the points wrote them
    assert edges(tree) == [
        ("models", ids["T1"], ["m-1.json", "m-1.pkl"], None),
        ("models", ids["T2"], ["m-2.json", "m-2.pkl"], None),
        ("models", None, ["README"], None),
        ("m-2.pkl", ids["T2"], None, "tracked"),  # the exact point whose model it loaded
    ]
    point = tree["upstream"][0]["run"]
    assert point["kind"] == "point" and point["sweep_point"] == "train[C=1]"
    assert point["sweep"] == {"run_id": ids["T"], "stage": "train"}
    assert point["pipeline_run"] == ids["P"] and point["params"] == {"C": "1"}
    assert point["data"]["outs"] == {
        "models/m-1.json": ids["files"]["m-1.json"],
        "models/m-1.pkl": ids["files"]["m-1.pkl"],
    }
    assert edges(point) == [("data/train.csv", ids["S"], None, None)]
    text = render(lineage(ids["E"]))
    assert "<- models (m-1.json, m-1.pkl) made by" in text
    assert "<- models (README): source data (no stage run wrote these files)" in text
    assert "<- tracked m-2.pkl made by" in text
    assert (
        f"stage     sweep point of train  (sweep run {ids['T']}, pipeline run {ids['P']})" in text
    )
    assert text.count("(shown above)") >= 2  # prepare and train[C=2] are printed once each


def test_lineage_of_a_point_a_sweep_a_pipeline_run_and_runs_nbops_run_did_not_make(env):
    ids = env
    point = lineage(ids["T2"])["run"]
    assert point["kind"] == "point" and point["note"] is None  # its outs are its own
    assert edges(point) == [("data/train.csv", ids["S"], None, None)]

    sweep = lineage(ids["T"])["run"]
    assert sweep["kind"] == "sweep"
    assert [(p["run_id"], p["sweep_point"]) for p in sweep["points"]] == [
        (ids["T1"], "train[C=1]"),
        (ids["T2"], "train[C=2]"),
    ]
    assert sweep["data"]["deps"] == {"data/train.csv": ids["digests"]["data/train.csv"]}
    assert f"run {ids['T']} is the sweep of stage train: its 2 point runs" in sweep["note"]

    pipe = lineage(ids["P"])
    assert pipe["run"]["kind"] == "pipeline" and pipe["run"]["upstream"] == []
    assert [s["run_id"] for s in pipe["run"]["stages"]] == [ids["S"], ids["T"], ids["E"]]
    text = render(pipe)
    assert f"stage run {ids['T']}  train  FINISHED" in text and "notebook " not in text
    assert "it read and wrote nothing itself; its 3 stage runs did" in text

    # a tracking-API run in another experiment: what it recorded, and the stage run (of the
    # project pipeline's experiment) that wrote the file it tracked
    other = lineage(ids["R"])["run"]
    assert other["kind"] == "run" and other["stage"] is None
    assert "a run that `nbops run` did not make" in other["note"]
    assert "it declares no deps or outs" in other["note"]
    assert edges(other) == [("train.csv", ids["S"], None, "tracked")]
    assert "kind      a run that `nbops run` did not make" in render(lineage(ids["R"]))

    # a directory whose content no runs' outs make up: source data, said so
    lone = lineage(ids["E2"])["run"]
    assert edges(lone) == [("models", None, None, None)]
    assert "<- models: source data (no stage run wrote this content)" in render(lineage(ids["E2"]))
    assert lineage(ids["drift"])["run"]["kind"] == "drift"


def test_kinds_from_tags_and_the_store_agree():
    assert kind_of({tags.PIPELINE: "x"}) == "pipeline"
    assert kind_of({tags.STAGE: "t", tags.SWEEP_POINT: "t[C=1]"}) == "point"
    assert kind_of({tags.STAGE: "t"}) == "stage"
    assert kind_of({tags.STAGE: "t"}, has_points=True) == "sweep"
    assert kind_of({tags.VERIFY_OF: "x"}) == "verify"
    assert kind_of({}) == "run"


def test_verify_names_the_runs_to_verify_for_a_sweep_and_a_pipeline_run(env):
    ids = env
    with pytest.raises(InvalidInput) as err:
        verify(ids["T"], root=ids["root"])
    assert err.value.message == (
        f"run {ids['T']} is the sweep of stage train: it executed no notebook itself; its 2 "
        "point runs did, each with its own params, inputs and outs: "
        f"{ids['T1']} (train[C=1]), {ids['T2']} (train[C=2])"
    )
    assert err.value.hint == f"verify a point: nbops verify {ids['T1']}"
    assert err.value.exit_code == 2
    with pytest.raises(InvalidInput) as err:
        verify(ids["P"], root=ids["root"])
    assert err.value.message.endswith(
        f"its 4 stage and sweep point runs did: {ids['S']} (prepare), {ids['T1']} "
        f"(train[C=1]), {ids['T2']} (train[C=2]), {ids['E']} (evaluate)"
    )
    with pytest.raises(NotFound) as nf:
        verify(ids["R"], root=ids["root"])
    assert f"run {ids['R']} has no executed notebook" in nf.value.message
    assert "it is a run that `nbops run` did not make" in nf.value.message
    assert not (ids["root"] / ".nbops" / "verify" / ids["T"]).exists()  # refused before any work


def test_the_stage_gate_passes_a_point_of_its_stage_and_names_a_sweep_and_a_pipeline_run(env):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["uri"])
    gate = Gate(stage="train")

    def detail(key: str) -> tuple[bool, str]:
        run = client.get_run(env[key])
        (o,) = gates.check(
            gate, "m", env[key], run.data.tags.get(tags.STAGE), {}, None, run_tags=run.data.tags
        )
        return o.passed, o.detail

    assert detail("T1") == (True, f"run {env['T1']} is sweep point train[C=1] of stage 'train'")
    assert detail("S") == (False, f"run {env['S']} is a run of stage 'prepare', not 'train'")
    ok, said = detail("P")
    assert not ok and said.startswith(f"run {env['P']} is the pipeline run of an `nbops run`")
    ok, said = detail("R")
    assert not ok and f"run {env['R']} is not a pipeline stage run (a run that" in said


def test_drift_counts_every_tagged_run_by_kind_in_one_place(env):
    from nbops.mlflow.store import open_store

    tagged = monitor.tagged_runs(open_store(env["uri"]), env["drift"])
    assert tagged == {
        "pipeline": [env["P"]],
        "stage": [env["S"]],
        "sweep": [env["T"]],
        "point": [env["T1"], env["T2"]],
    }
    line = monitor.describe(
        {
            "command": "nbops run train --force",
            "drift_run": env["drift"],
            "exit_code": 0,
            "pipeline_run_id": env["P"],
            "ran": ["train"],
            "up_to_date": ["prepare"],
            "tagged": tagged,
        }
    )
    assert line == (
        f"retrain done: nbops run train --force; ran train; up to date, not re-run: prepare; "
        f"pipeline run {env['P']}; 5 runs tagged nbops.drift_run={env['drift']} (1 pipeline "
        "run, 1 stage run, 1 sweep run, 2 sweep point runs)"
    )


def test_the_server_names_the_child_runs_of_a_run_without_a_notebook(env):
    from nbops.mlflow.readers.base import RunInfo
    from nbops.mlflow.readers.models import RunSummary
    from nbops.server.artifacts import no_notebook

    def summary(key: str, name: str, stage: str | None) -> RunSummary:
        return RunSummary(
            run_id=env[key], run_name=name, experiment_id="1", status="FINISHED", stage=stage
        )

    points = [summary("T1", "train[C=1]", "train"), summary("T2", "train[C=2]", "train")]
    sweep = RunInfo(summary("T", "train", "train"), {tags.STAGE: "train"}, None)
    err = no_notebook(sweep, points, "diff")
    assert err.http_status == 404
    assert err.message == (
        f"run {env['T']} is the sweep of stage train: it executed no notebook itself; its 2 "
        f"point runs did: {env['T1']} (train[C=1]), {env['T2']} (train[C=2])"
    )
    assert err.hint.startswith("diff two of them")
    pipe = RunInfo(summary("P", "pipeline", None), {tags.PIPELINE: "nbops.yaml"}, None)
    stages = [summary("S", "prepare", "prepare"), summary("T", "train", "train")]
    assert f"its 2 stage runs did: {env['S']} (prepare), {env['T']} (train)" in (
        no_notebook(pipe, stages).message
    )
    plain = RunInfo(summary("R", "notebook run", None), {}, None)
    assert "it is a run that `nbops run` did not make" in no_notebook(plain, []).message
    assert json.dumps(err.message)  # one line, plain text
