"""The ops commands on the runs a real ``nbops run`` of the example pipeline makes (real
kernels, real store; one execution shared by the module): lineage of evaluate leads to the exact
sweep point whose model it loaded, verify of a point restores its inputs and compares its own
outs, verify and promote of the sweep's run name its points, a point passes ``stage: train``,
and ``nbops drift --retrain`` counts what it really tagged, the same in its line and its audit
record."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from nbops import tags
from tests.conftest import nbops_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "example_notebooks"
EXTRA = """
gates:
  wine: {stage: train, require: {cv_accuracy: ">= 0.9"}}
drift:
  reference: data/train.csv
  current: data/incoming.csv
  threshold: 0.01
  on_drift: [train]
"""


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("runkinds") / "wine"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".nbops", "models", "reports"))
    (root / ".nbops").mkdir(exist_ok=True)
    with open(root / "nbops.yaml", "a", encoding="utf-8") as f:
        f.write(EXTRA)
    out = nbops_cli("run", cwd=root, env=_env(root))
    assert out.returncode == 0, out.stdout + out.stderr
    incoming = pd.read_csv(root / "data" / "test.csv")
    incoming["alcohol"] += 0.8
    incoming.to_csv(root / "data" / "incoming.csv", index=False)
    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("wine").experiment_id
    runs = client.search_runs([exp], "")
    by: dict[str, Any] = {"root": root, "client": client}
    for r in runs:
        t = r.data.tags
        key = t.get(tags.SWEEP_POINT) or t.get(tags.STAGE) or "pipeline"
        by[key] = r
    return by


@pytest.fixture
def ex(example: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(example["root"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(example["root"])
    return example


def cli(ex: dict[str, Any], *args: str) -> Any:
    return nbops_cli(*args, cwd=ex["root"], env=_env(ex["root"]))


def test_lineage_of_evaluate_leads_to_the_point_whose_model_it_loaded(ex):
    evaluate = ex["evaluate"]
    best = evaluate.data.params["best_C"]
    out = cli(ex, "lineage", evaluate.info.run_id, "--json")
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)["run"]
    tracked = [u for u in tree["upstream"] if u.get("via") == "tracked"]
    assert [(u["dep"], u["run"]["run_id"]) for u in tracked] == [
        (f"model-C{best}.pkl", ex[f"train[C={best}]"].info.run_id)
    ]
    models = {u["run"]["sweep_point"]: u["files"] for u in tree["upstream"] if u["dep"] == "models"}
    assert models == {
        f"train[C={c}]": [f"model-C{c}.json", f"model-C{c}.pkl"] for c in ("0.01", "0.1", "1.0")
    }
    point = tracked[0]["run"]
    assert point["kind"] == "point" and point["sweep"]["run_id"] == ex["train"].info.run_id
    assert point["data"]["outs"] == {
        k[len(tags.OUT_PREFIX) :]: v
        for k, v in ex[f"train[C={best}]"].data.tags.items()
        if k.startswith(tags.OUT_PREFIX)
    }
    text = cli(ex, "lineage", evaluate.info.run_id).stdout
    assert f"<- tracked model-C{best}.pkl made by" in text


def test_verify_of_a_point_restores_its_input_and_compares_its_own_outs(ex):
    root: Path = ex["root"]
    point = ex["train[C=0.1]"]
    data = root / "data" / "train.csv"
    original = data.read_bytes()
    data.write_bytes(original.replace(b"\n", b"\n", 1)[: len(original) // 2])  # moved on
    try:
        out = cli(ex, "verify", point.info.run_id)
    finally:
        data.write_bytes(original)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restored inputs: data/train.csv" in out.stdout
    for name in ("model-C0.1.pkl", "model-C0.1.json"):
        digest = point.data.tags[f"{tags.OUT_PREFIX}models/{name}"][:12]
        assert f"  out models/{name}: {digest} -> {digest}" in out.stdout
    assert "2 outs compared" in out.stdout and f"run {point.info.run_id} reproduced" in out.stdout
    assert "model-C1.0" not in out.stdout  # another point's files are not its outs

    sweep = ex["train"].info.run_id
    out = cli(ex, "verify", sweep)
    assert out.returncode == 2, out.stdout + out.stderr
    (line, hint) = out.stderr.strip().splitlines()
    assert f"run {sweep} is the sweep of stage train: it executed no notebook itself" in line
    for c in ("0.01", "0.1", "1.0"):
        assert f"{ex[f'train[C={c}]'].info.run_id} (train[C={c}])" in line
    assert hint.startswith("  hint: verify a point: nbops verify ")


def test_promote_accepts_a_point_of_the_gate_stage_and_names_the_points_of_a_sweep(ex):
    point = ex["train[C=1.0]"].info.run_id
    out = cli(ex, "promote", point, "--model", "wine")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"gate stage train: passed (run {point} is " in out.stdout
    assert f"registered run {point} as wine version 1" in out.stdout
    sweep = ex["train"].info.run_id
    out = cli(ex, "promote", sweep, "--model", "wine")
    assert out.returncode == 2 and f"run {sweep} is the parent of a sweep (3 points)" in out.stderr


def test_drift_retrain_counts_what_it_tagged_in_its_line_and_its_audit_record(ex):
    from nbops.tracking import audit

    out = cli(ex, "drift", "--retrain")
    assert out.returncode == 3, out.stdout + out.stderr
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("retrain ")]
    m = re.search(r"(\d+) runs tagged nbops\.drift_run=([0-9a-f]{32}) \((.*)\)$", line)
    assert m is not None, line
    total, drift_run, kinds = int(m.group(1)), m.group(2), m.group(3)
    client = ex["client"]
    tagged = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`{tags.DRIFT_RUN}` = '{drift_run}'",
    )
    assert total == len(tagged) == 5  # the pipeline run, the sweep's run and its 3 points
    assert kinds == "1 pipeline run, 1 sweep run, 3 sweep point runs"
    assert line.startswith("retrain done: nbops run train --force; ran train; ")
    assert "up to date, not re-run: prepare" in line  # --force forces the named stage only
    (rec,) = [r for r in audit.select(action="drift.retrain") if r["run_id"] == drift_run]
    assert rec["tagged"] == {"pipeline": 1, "sweep": 1, "point": 3}
    assert rec["ran"] == ["train"] and rec["up_to_date"] == ["prepare"]
    assert rec["stages"] == ["train"] and rec["command"] == "nbops run train --force"
