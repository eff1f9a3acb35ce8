"""nbops verify: a deterministic stage reproduces (even after its input changed in the project);
one that reads the clock or an unseeded generator does not. Real kernels, real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops.errors import NotFound
from nbops.ops.verify import normalize, verify
from nbops.tracking import audit
from tests.conftest import nbops_cli, notebook

YAML = """\
experiment: rep
stages:
  make:
    notebook: make.ipynb
    outs: [data.csv]
  det:
    notebook: det.ipynb
    deps: [data.csv]
    params: {seed: 7}
  clock:
    notebook: clock.ipynb
  unseeded:
    notebook: unseeded.ipynb
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One pipeline execution shared by the tests (kernels are slow on 2 cores)."""
    root = tmp_path_factory.mktemp("verify") / "proj"
    (root / ".nbops").mkdir(parents=True)
    notebook(root / "make.ipynb", "open('data.csv', 'w').write('v\\n1\\n2\\n3\\n')")
    notebook(
        root / "det.ipynb",
        ("seed = 0", ["parameters"]),
        "import datetime\nimport nbops\nimport numpy as np\nimport pandas as pd\n"
        "rng = np.random.default_rng(seed)\n"
        "total = float(pd.read_csv('data.csv')['v'].sum() + rng.random())\n"
        "nbops.log_metric('total', total)\nprint(f'total {total:.12f}')",
        # volatile outputs: masked, not differences
        "print('at', datetime.datetime.now(), 'object', object())",
        "total * 2",
    )
    notebook(
        root / "clock.ipynb",
        "import random, time\nimport nbops\nrandom.seed(time.time_ns())\n"
        "draw = random.random()\nprint(f'draw {draw:.12f}')\nnbops.log_metric('draw', draw)",
    )
    notebook(
        root / "unseeded.ipynb",
        "import nbops\nimport numpy as np\ndraw = float(np.random.default_rng().random())\n"
        "print(f'draw {draw:.12f}')\nnbops.log_metric('draw', draw)",
    )
    (root / "nbops.yaml").write_text(YAML)
    env = {**__import__("os").environ, "NBOPS_PROJECT_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = nbops_cli("run", cwd=root, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("rep")
    ids = {
        r.data.tags["nbops.stage"]: r.info.run_id
        for r in client.search_runs([exp.experiment_id], "tags.`nbops.stage` != ''")
    }
    return {"root": str(root), **ids}


@pytest.fixture
def rep(runs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", runs["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(runs["root"])
    return runs


def _client(rep: dict[str, str]):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{Path(rep['root']) / '.nbops' / 'mlflow.db'}")


def test_a_deterministic_stage_is_reproduced_from_restored_inputs(rep):
    root = Path(rep["root"])
    (root / "data.csv").write_text("v\n100\n")  # the project moved on; the run read 1, 2, 3
    out = nbops_cli("verify", rep["det"], cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restored inputs: data.csv" in out.stdout
    assert f"run {rep['det']} reproduced" in out.stdout
    # every code cell was compared: parameters, injected parameters and the three of the notebook
    assert "5 code cells compared" in out.stdout
    assert (root / "data.csv").read_text() == "v\n100\n"  # the project's file is untouched
    run = _client(rep).get_run(rep["det"])
    assert run.data.tags["nbops.verified"] == "true"
    vrun = _client(rep).get_run(run.data.tags["nbops.verified_by"])
    assert vrun.data.tags["nbops.verify_of"] == rep["det"]
    assert vrun.data.metrics["total"] == run.data.metrics["total"]
    assert vrun.data.params["seed"] == "7"
    (rec,) = [r for r in audit.select(action="verify") if r["run_id"] == rep["det"]]
    assert rec["ok"] is True


@pytest.mark.parametrize("stage", ["clock", "unseeded"])
def test_a_stage_that_reads_the_clock_or_an_unseeded_generator_is_not(rep, stage):
    v = verify(rep[stage])
    assert not v.ok and v.error is None
    assert len(v.metric_diffs) == 1 and v.metric_diffs[0].startswith("draw: ")
    (cell,) = v.cell_diffs
    assert cell.expected.startswith("draw 0.") and cell.got.startswith("draw 0.")
    assert cell.expected != cell.got
    assert _client(rep).get_run(rep[stage]).data.tags["nbops.verified"] == "false"


def test_cli_reports_differences_with_exit_1(rep):
    out = nbops_cli("verify", rep["clock"], cwd=rep["root"])
    assert out.returncode == 1
    assert "DIFFERS metric draw:" in out.stdout and "DIFFERS code cell 0" in out.stdout
    assert "NOT reproduced" in out.stdout


def test_a_run_without_an_executed_notebook_is_named(rep):
    client = _client(rep)
    rid = client.create_run(client.get_experiment_by_name("rep").experiment_id).info.run_id
    with pytest.raises(NotFound, match=f"run {rid} has no executed notebook"):
        verify(rid)
    out = nbops_cli("verify", "0" * 32, cwd=rep["root"])
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_volatile_outputs_are_masked():
    text = "at 2026-11-25 09:17:09.123456 object <object object at 0x7f3a2c1b9e40> took 1.25 s"
    assert normalize(text) == "at <timestamp> object <object object at 0x<address>> took <duration>"
    assert normalize("/tmp/x/proj/a.csv", "/tmp/x/proj", "/home/p") == "/home/p/a.csv"
    assert normalize("'runs:/20261125-092434-a41acaa5/model'") == "'runs:/<id>/model'"
