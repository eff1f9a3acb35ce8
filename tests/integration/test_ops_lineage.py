"""nbops lineage of a model produced by a small pipeline run (real kernels via nbops run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbops.errors import NotFound
from nbops.ops import registry
from nbops.ops.lineage import lineage
from tests.conftest import nbops_cli, notebook

YAML = """\
experiment: lin
stages:
  make:
    notebook: make.ipynb
    params: {n: 40}
    outs: [data.csv]
  train:
    notebook: train.ipynb
    deps: [data.csv]
    outs: [model.pkl]
    params: {C: 0.5}
gates:
  lin-model: {stage: train, require: {accuracy: ">= 0.5"}}
"""


@pytest.fixture
def built(project: Path) -> Path:
    notebook(
        project / "make.ipynb",
        ("n = 10", ["parameters"]),
        "rows = ['x,y'] + [f'{i},{i % 2}' for i in range(n)]\n"
        "open('data.csv', 'w').write('\\n'.join(rows) + '\\n')",
    )
    notebook(
        project / "train.ipynb",
        ("C = 1.0", ["parameters"]),
        "import pickle\nimport nbops\nimport pandas as pd\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "df = pd.read_csv('data.csv')\n"
        "model = LogisticRegression(C=C).fit(df[['x']] % 2, df['y'])\n"
        "nbops.log_metric('accuracy', model.score(df[['x']] % 2, df['y']))\n"
        "pickle.dump(model, open('model.pkl', 'wb'))\n"
        "nbops.log_model(model, 'model')",
    )
    (project / "nbops.yaml").write_text(YAML)
    out = nbops_cli("run", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    return project


def stage_run(client: object, stage: str) -> object:
    exp = client.get_experiment_by_name("lin")
    (run,) = client.search_runs([exp.experiment_id], f"tags.`nbops.stage` = '{stage}'")
    return run


def test_lineage_walks_from_model_to_the_upstream_stage_and_its_data(built, client):
    train, make = stage_run(client, "train"), stage_run(client, "make")
    registry.promote(train.info.run_id, "lin-model")
    out = nbops_cli("lineage", "lin-model@champion", "--json", cwd=built)
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert tree["model"]["name"] == "lin-model" and tree["model"]["version"] == "1"
    assert tree["model"]["aliases"] == ["champion"]
    run = tree["run"]
    assert run["run_id"] == train.info.run_id and run["stage"] == "train"
    assert run["params"]["C"] == "0.5" and run["models"] == ["model"]
    assert run["executed_notebook"].endswith(f"{train.info.run_id}/train.ipynb")
    assert Path(run["executed_notebook"]).is_file()
    digest = make.data.tags["nbops.out.data.csv"]
    assert run["data"]["deps"] == {"data.csv": digest}
    assert run["pipeline_run"] == make.data.tags["mlflow.parentRunId"]
    (up,) = run["upstream"]
    assert up["dep"] == "data.csv" and up["digest"] == digest
    assert up["run"]["run_id"] == make.info.run_id and up["run"]["params"]["n"] == "40"
    assert up["run"]["upstream"] == []
    # the same by version and by run id, as a tree on the terminal
    text = nbops_cli("lineage", "lin-model/1", cwd=built)
    assert text.returncode == 0, text.stderr
    assert "model lin-model version 1 @champion" in text.stdout
    assert "<- data.csv made by" in text.stdout and make.info.run_id in text.stdout
    assert f"reads     data.csv  {digest[:12]}" in text.stdout
    by_run = nbops_cli("lineage", make.info.run_id, "--json", cwd=built)
    assert json.loads(by_run.stdout)["model"] is None
    # unknown things are named (exit 2 on the command line)
    bad = nbops_cli("lineage", "lin-model@prod", cwd=built)
    assert bad.returncode == 2 and "has no alias 'prod'" in bad.stderr, bad.stderr
    for target, msg in [
        ("lin-model/9", "has no version '9'"),
        ("nope@champion", "model 'nope' is not registered"),
        ("f" * 32, "does not exist"),
    ]:
        with pytest.raises(NotFound, match=msg):
            lineage(target)
