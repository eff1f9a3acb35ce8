"""nbops.log_model beyond scikit-learn, end to end: stages that fit a LightGBM, an XGBoost and a
plain predict() model log them (flavor inferred, input example, signature, pinned requirements,
nothing printed, no slow work), `nbops promote` registers each, `models:/NAME@champion` loads
with mlflow.pyfunc in this process and predicts what the notebook's model predicted, and
`nbops verify` reproduces a LightGBM stage. Real kernels, a real store under a temp dir."""

from __future__ import annotations

import json
import os
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import nbops_cli, notebook

DATA = (
    "import time\n"
    "import mlflow.pyfunc  # MLflow's own import (~1 s), paid here, not in the timing below\n"
    "import numpy as np\nimport pandas as pd\nimport nbops\n"
    "rng = np.random.default_rng(0)\n"
    "X = pd.DataFrame(rng.random((200, 4)), columns=list('abcd'))\n"
    "y = (X.a + X.b > 1).astype(int)\n"
)
FITS = {
    "lgbm": (
        "import lightgbm\n"
        "model = lightgbm.LGBMClassifier(n_estimators=10, random_state=0, verbose=-1).fit(X, y)"
    ),
    "xgb": (
        "import xgboost\n"
        "model = xgboost.XGBRegressor(n_estimators=10, max_depth=3, random_state=0).fit(X, y)"
    ),
    "rule": (
        "class Rule:  # defined in the notebook: saved by value, loads without this kernel\n"
        "    def __init__(self, t):\n"
        "        self.t = t\n"
        "    def predict(self, X):\n"
        "        return (X['a'].to_numpy() + X['b'].to_numpy() > self.t).astype(int)\n"
        "model = Rule(1.0)"
    ),
}
LOG = (
    "t = time.perf_counter()\n"
    "uri = nbops.log_model(model, 'model', input_example=X.iloc[:20])\n"
    "took = time.perf_counter() - t"
)
AFTER = (
    "print(f'log_model {took:.3f} s')\n"
    "nbops.log_metric('pred_sum', float(np.asarray(model.predict(X.iloc[:50])).sum()))"
)
FLAVOR = {"lgbm": "lightgbm", "xgb": "xgboost", "rule": "pyfunc"}
PINNED = {"lgbm": "lightgbm", "xgb": "xgboost-cpu", "rule": "cloudpickle"}


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `nbops run` of the three stages, shared by the tests (kernels are slow on 2 cores)."""
    root = tmp_path_factory.mktemp("models") / "proj"
    (root / ".nbops").mkdir(parents=True)
    yaml = "experiment: models\nstages:\n"
    for stage, fit in FITS.items():
        notebook(root / f"{stage}.ipynb", DATA, fit, LOG, AFTER)
        yaml += f"  {stage}:\n    notebook: {stage}.ipynb\n"
    (root / "nbops.yaml").write_text(yaml)
    env = {**os.environ, "NBOPS_PROJECT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = nbops_cli("run", cwd=root, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("models")
    ids = {
        r.data.tags["nbops.stage"]: r.info.run_id
        for r in client.search_runs([exp.experiment_id], "tags.`nbops.stage` != ''")
    }
    return {"root": root, "env": env, "client": client, "ids": ids}


def _executed_cells(root: Path, run_id: str, stage: str) -> list[dict[str, Any]]:
    nb = json.loads((root / ".nbops" / "runs" / run_id / f"{stage}.ipynb").read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("stage", list(FITS))
def test_a_logged_model_is_promoted_and_served_from_the_registry(stages, stage, monkeypatch):
    root, client, rid = stages["root"], stages["client"], stages["ids"][stage]
    run = client.get_run(rid)
    assert run.data.tags["nbops.model.model"] == FLAVOR[stage]
    # the log_model cell printed nothing (no MLflow warnings or INFO lines), and took < 1 s:
    # no requirement inference in a subprocess (5-14 s), no scan of the installed packages
    cells = _executed_cells(root, rid, stage)
    (log_cell,) = [c for c in cells if "nbops.log_model(" in "".join(c["source"])]
    assert log_cell["outputs"] == []
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c["outputs"])
    took = float(re.search(r"log_model (\d+\.\d+) s", printed).group(1))
    assert took < 1.0, printed

    name = f"models-{stage}"
    out = nbops_cli("promote", rid, "--model", name, cwd=root, env=stages["env"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr == "", out.stderr
    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.run_id == rid and mv.source == f"runs:/{rid}/model"

    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    import yaml

    local = Path(client.download_artifacts(rid, "model", str(root / "dl" / stage)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert "python_function" in mlmodel["flavors"]
    if FLAVOR[stage] != "pyfunc":
        assert FLAVOR[stage] in mlmodel["flavors"]
    # the signature, from the input example and the model's predictions on it
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in inputs] == list("abcd")
    example = json.loads((local / "input_example.json").read_text())
    assert len(example["data"]) == 10  # the first 10 of the 20 rows passed
    reqs = (local / "requirements.txt").read_text().split()
    pinned = PINNED[stage]
    assert f"{pinned}=={version(pinned)}" in reqs
    assert all("==" in r for r in reqs), reqs

    # the environment, not mlflow.set_tracking_uri(): that is process-wide state every later
    # test would read (and the variable is restored when this test ends)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((200, 4)), columns=list("abcd")).iloc[:50]
    got = float(np.asarray(served.predict(x)).sum())
    assert got == pytest.approx(run.data.metrics["pred_sum"], rel=1e-6)


def test_verify_reproduces_a_stage_that_logs_a_lightgbm_model(stages):
    rid = stages["ids"]["lgbm"]
    out = nbops_cli("verify", rid, cwd=stages["root"], env=stages["env"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"run {rid} reproduced" in out.stdout
    tags = stages["client"].get_run(rid).data.tags
    assert tags["nbops.verified"] == "true"
    again = stages["client"].get_run(tags["nbops.verified_by"])
    assert again.data.tags["nbops.model.model"] == "lightgbm"
