"""nbops drift on a temp project: exit codes, the MLflow run, the report, --retrain with a real
kernel, and the audit records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbops.tracking import audit
from tests.conftest import nbops_cli, notebook

YAML = """\
experiment: shop
stages:
  train:
    notebook: train.ipynb
    outs: [model.txt]
drift:
  reference: data/ref.csv
  current: data/cur.csv
  threshold: 0.01
  on_drift: [train]
"""


def write_tables(root: Path, shift: float) -> None:
    rng = np.random.default_rng(1)
    n = 500
    (root / "data").mkdir(exist_ok=True)
    ref = pd.DataFrame({"price": rng.normal(10, 2, n), "size": rng.normal(5, 1, n)})
    cur = pd.DataFrame({"price": rng.normal(10 + shift, 2, n), "size": rng.normal(5, 1, n)})
    ref.to_csv(root / "data" / "ref.csv", index=False)
    cur.to_csv(root / "data" / "cur.csv", index=False)


@pytest.fixture
def shop(project: Path) -> Path:
    (project / "nbops.yaml").write_text(YAML)
    notebook(
        project / "train.ipynb",
        ("epochs = 1", ["parameters"]),
        "import nbops\nfrom pathlib import Path\nPath('model.txt').write_text('m')\n"
        "nbops.log_metric('accuracy', 0.9)",
    )
    return project


def test_drift_on_a_shifted_column_exits_3_and_logs_a_run(shop, client):
    write_tables(shop, shift=2.0)
    out = nbops_cli("drift", cwd=shop)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "1 of 2 columns drifted (p < 0.01): price" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.startswith("price"))
    assert "ks" in line and "DRIFT" in line
    exp = client.get_experiment_by_name("drift")
    (run,) = client.search_runs([exp.experiment_id])
    assert (
        run.data.tags["nbops.drift"] == "true" and run.data.tags["nbops.drift.columns"] == "price"
    )
    assert run.data.metrics["drift.price.p_value"] < 0.01
    assert run.data.metrics["drift.size.p_value"] > 0.01
    assert run.data.params["reference"] == "data/ref.csv"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"drift.json", "drift_report.html"} <= arts
    html = list((shop / ".nbops" / "drift").glob("*.html"))
    assert len(html) == 1 and "price" in html[0].read_text()
    (rec,) = audit.select(action="drift.check")
    assert rec["run_id"] == run.info.run_id and rec["drifted"] == ["price"]


def test_no_drift_exits_0_and_explicit_tables_override_the_yaml(shop, tmp_path):
    write_tables(shop, shift=0.0)
    out = nbops_cli("drift", "data/ref.csv", "data/cur.csv", "--json", cwd=shop)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["drifted"] is False and {c["column"] for c in got["columns"]} == {"price", "size"}


def test_retrain_runs_the_on_drift_stages_linked_to_the_drift_run(shop, client):
    write_tables(shop, shift=2.0)
    out = nbops_cli("drift", "--retrain", cwd=shop)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "retrain done" in out.stdout
    drift_exp = client.get_experiment_by_name("drift")
    (drift_run,) = client.search_runs([drift_exp.experiment_id])
    did = drift_run.info.run_id
    shop_exp = client.get_experiment_by_name("shop")
    (stage_run,) = client.search_runs([shop_exp.experiment_id], "tags.`nbops.stage` = 'train'")
    assert stage_run.info.status == "FINISHED"
    assert stage_run.data.tags["nbops.drift_run"] == did
    assert drift_run.data.tags["nbops.retrain.runs"].split(",") == [stage_run.info.run_id]
    assert drift_run.data.tags["nbops.retrain.status"] == "ok"
    # every run the retraining tagged is counted, by kind, in the line and the audit record
    said = f"2 runs tagged nbops.drift_run={did} (1 pipeline run, 1 stage run)"
    assert said in out.stdout and "; ran train; " in out.stdout
    (rec,) = audit.select(action="drift.retrain")
    assert rec["tagged"] == {"pipeline": 1, "stage": 1} and rec["ran"] == ["train"]
    assert (shop / "model.txt").read_text() == "m"
    assert [r["action"] for r in audit.select(action="drift")] == ["drift.check", "drift.retrain"]


def test_bad_tables_are_named_with_exit_2(shop):
    write_tables(shop, shift=0.0)
    pd.DataFrame({"price": ["a", "b"], "size": [1.0, 2.0]}).to_csv(shop / "t.csv", index=False)
    out = nbops_cli("drift", "data/ref.csv", "t.csv", cwd=shop)
    assert out.returncode == 2 and "column 'price' is numeric" in out.stderr, out.stderr
    pd.DataFrame({"price": [1.0]}).to_csv(shop / "u.csv", index=False)
    out = nbops_cli("drift", "data/ref.csv", "u.csv", cwd=shop)
    assert out.returncode == 2 and "missing from current: size" in out.stderr
    out = nbops_cli("drift", "data/ref.csv", "nope.csv", cwd=shop)
    assert out.returncode == 2 and "nope.csv" in out.stderr
    (shop / "nbops.yaml").write_text(YAML.replace("on_drift: [train]", "on_drift: [trian]"))
    out = nbops_cli("drift", "--retrain", cwd=shop)
    assert out.returncode == 2 and "nbops.yaml:10:14:" in out.stderr
    assert "drift.on_drift names stage 'trian', which does not exist" in out.stderr
    (shop / "nbops.yaml").write_text("stages:\n  train: {notebook: train.ipynb}\n")
    out = nbops_cli("drift", cwd=shop)
    assert out.returncode == 2 and "no `drift:` in nbops.yaml" in out.stderr
