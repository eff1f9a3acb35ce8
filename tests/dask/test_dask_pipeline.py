"""The example pipeline (prepare -> a 3-point sweep of train -> evaluate) run on a real dask
cluster gives what it gives on this machine: the same outs, metrics, run tree and records, and
every command treats its stage runs as local ones.

One run here and one run on the shared cluster (``dask_cluster``: workers ``w0`` and ``w1``, the
latter with ``GPU=1``), each in its own copy of the example under ``dask_hidden``: the workers see
that folder empty, so a stage that used the shared filesystem instead of what nbops ships fails.
In both copies ``evaluate`` asks for ``resources: {GPU: 1}``. Both runs are module-scoped (a run
costs ~10 s on 2 cores); the tests only read them, but for the last, which re-runs (a no-op).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import xxhash

from nbops import tags
from tests.conftest import REPO, states
from tests.dask.cluster import Cluster
from tests.dask.conftest import dask_env

EVALUATE = "  evaluate:\n    notebook: 03_evaluate.ipynb\n"
POINTS = ["train[C=0.01]", "train[C=0.1]", "train[C=1.0]"]
TREE = {
    "pipeline": None,
    "prepare": "pipeline",
    "train": "pipeline",
    **dict.fromkeys(POINTS, "train"),
    "evaluate": "pipeline",
}
NOTEBOOK_RUNS = ["prepare", *POINTS, "evaluate"]  # the runs whose notebook ran (on a worker)


def example_copy(hidden: Path, name: str) -> Path:
    """The example pipeline (notebooks and nbops.yaml only) in a new folder under ``hidden``, its
    evaluate stage asking for a GPU."""
    root = hidden / f"{name}-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    for p in (REPO / "example_notebooks").iterdir():
        if p.suffix == ".ipynb" or p.name == "nbops.yaml":
            shutil.copy2(p, root / p.name)
    (root / ".nbops").mkdir()
    yaml = (root / "nbops.yaml").read_text()
    assert EVALUATE in yaml
    (root / "nbops.yaml").write_text(yaml.replace(EVALUATE, EVALUATE + "    resources: {GPU: 1}\n"))
    return root


def nbops(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbops", *args],
        cwd=root,
        env=dask_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def digest(path: Path) -> str:
    return xxhash.xxh3_128(path.read_bytes()).hexdigest()


@dataclass
class Executed:
    """One ``nbops run`` of a copy of the example and what it left."""

    root: Path
    out: subprocess.CompletedProcess[str]
    client: Any  # MlflowClient on the copy's embedded store
    runs: dict[str, Any]  # run name -> Run
    jobs: int = 0  # jobs the cluster's workers ran for it

    @property
    def text(self) -> str:
        return self.out.stdout + self.out.stderr

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            (self.root / ".nbops" / "pipeline" / "state.json").read_text()
        )
        return state

    def names(self) -> dict[str, str]:
        return {r.info.run_id: name for name, r in self.runs.items()}


def execute(root: Path, *args: str) -> Executed:
    from mlflow.tracking import MlflowClient

    out = nbops(root, "run", "--summary", "s.json", *args)
    client = MlflowClient(f"sqlite:///{root / '.nbops' / 'mlflow.db'}")
    runs: dict[str, Any] = {}
    exp = client.get_experiment_by_name("wine")
    if exp is not None:
        for r in client.search_runs([exp.experiment_id]):
            assert r.info.run_name not in runs, f"two runs named {r.info.run_name}"
            runs[r.info.run_name] = r
    return Executed(root, out, client, runs)


def jobs_run(cluster: Cluster) -> dict[str, int]:
    """Worker address -> how many jobs its process has run (dask_worker.JOBS_RUN)."""
    with cluster.client() as c:
        return dict(
            c.run(lambda: __import__("nbops.executors.dask_worker", fromlist=["_"]).JOBS_RUN)
        )


def scheduler_transitions(cluster: Cluster) -> int:
    """How many task transitions the scheduler has made since it started: any task submitted
    moves it."""
    with cluster.client() as c:
        return int(c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter))


@pytest.fixture(scope="module")
def here(dask_hidden: Path) -> Executed:
    return execute(example_copy(dask_hidden, "local"))


@pytest.fixture(scope="module")
def there(dask_hidden: Path, dask_cluster: Cluster) -> Executed:
    before = sum(jobs_run(dask_cluster).values())
    done = execute(example_copy(dask_hidden, "cluster"), "--dask", dask_cluster.address)
    done.jobs = sum(jobs_run(dask_cluster).values()) - before
    return done


def addresses(cluster: Cluster) -> dict[str, str]:
    return {name: w["address"] for name, w in cluster.worker_info().items()}


def test_the_example_on_the_cluster_gives_the_same_outs_metrics_and_run_tree(
    here: Executed, there: Executed, dask_cluster: Cluster
) -> None:
    for run in (here, there):
        assert run.out.returncode == 0, run.text
        assert "Traceback" not in run.text, run.text
        assert set(states(run.out.stdout).values()) == {"done"}, run.out.stdout
        assert json.loads((run.root / "s.json").read_text())["status"] == "ok"
    assert there.jobs == len(NOTEBOOK_RUNS), "jobs the workers ran"

    # the outs: the same files, the same digests in .nbops/pipeline/state.json
    local, remote = here.state()["stages"], there.state()["stages"]
    assert local.keys() == remote.keys() == {"prepare", "train", "evaluate"}
    for stage, points in local.items():
        assert points.keys() == remote[stage].keys(), stage
        for point, record in points.items():
            other = remote[stage][point]
            assert record["outs"] == other["outs"] and record["outs"], (stage, point)
            assert record["deps"] == other["deps"] and record["params"] == other["params"]
            for path, d in other["outs"].items():  # and on disk, where the runner is
                assert digest(there.root / path) == d == digest(here.root / path), path

    # the run tree, statuses, metrics, params, dep and out digests: run by run
    for run in (here, there):
        names = run.names()
        tree = {
            name: names.get(r.data.tags.get(tags.MLFLOW_PARENT_RUN_ID, ""))
            for name, r in run.runs.items()
        }
        assert tree == TREE, run.root
        assert {r.info.status for r in run.runs.values()} == {"FINISHED"}
    for name, r in here.runs.items():
        o = there.runs[name]
        assert o.data.metrics == r.data.metrics, name
        assert o.data.params == r.data.params, name
        same = [k for k in r.data.tags if k.startswith((tags.OUT_PREFIX, tags.DEP_PREFIX))]
        assert {k: o.data.tags.get(k) for k in same} == {k: r.data.tags[k] for k in same}, name
    assert there.runs["train[C=0.1]"].data.metrics["cv_accuracy"] > 0.9

    # what the stages logged on the workers reached the store: the model, the executed notebook
    for name in POINTS:
        run_id = there.runs[name].info.run_id
        assert there.runs[name].data.tags[tags.MODEL_PREFIX + "model"]
        listed = {a.path for a in there.client.list_artifacts(run_id)}
        assert {"model", "notebook", "outs.json"} <= listed, (name, listed)
        assert "MLmodel" in {
            a.path.rsplit("/", 1)[-1] for a in there.client.list_artifacts(run_id, "model")
        }
        executed = Path(there.client.download_artifacts(run_id, "notebook/02_train.ipynb"))
        assert "cross-validated accuracy" in executed.read_text(), name
    evaluate = there.runs["evaluate"].info.run_id
    figure = {a.path for a in there.client.list_artifacts(evaluate)}
    assert "confusion_matrix.png" in figure, figure

    # where each ran: a worker's address on the cluster's runs, nothing on the local ones; the
    # stage that asks for a GPU ran on the worker that has one, and the table says so
    workers = addresses(dask_cluster)
    for name in NOTEBOOK_RUNS:
        assert tags.WORKER not in here.runs[name].data.tags, name
        assert there.runs[name].data.tags.get(tags.WORKER) in workers.values(), name
    assert there.runs["evaluate"].data.tags[tags.WORKER] == workers["w1"]
    rows = [line for line in there.out.stdout.splitlines() if " evaluate " in line]
    assert any("w1" in line for line in rows), there.out.stdout


def test_status_checkout_lineage_and_verify_take_a_cluster_stage_run_as_a_local_one(
    here: Executed, there: Executed
) -> None:
    assert there.out.returncode == 0, there.text
    ok = nbops(there.root, "status", "--check")
    assert ok.returncode == 0 and "everything is up to date" in ok.stdout, ok.stdout + ok.stderr

    # checkout of a sweep point the cluster ran restores its files, byte for byte
    own = ["models/model-C0.1.pkl", "models/model-C0.1.json"]
    before = {p: (there.root / p).read_bytes() for p in own}
    for p in own:
        (there.root / p).unlink()
    stale = nbops(there.root, "status", "--check")
    assert stale.returncode == 1 and "train[C=0.1]" in stale.stdout, stale.stdout
    done = nbops(there.root, "checkout", there.runs["train[C=0.1]"].info.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(f"restored {p}" for p in own)
    assert {p: (there.root / p).read_bytes() for p in own} == before

    # lineage of evaluate: the same tree as the local run's, ids and folders aside
    def lineage(run: Executed) -> Any:
        out = nbops(run.root, "lineage", "--json", run.runs["evaluate"].info.run_id)
        assert out.returncode == 0, out.stdout + out.stderr
        text = out.stdout.replace(str(run.root), "ROOT")
        for run_id, name in run.names().items():
            text = text.replace(run_id, f"<{name}>")
        return json.loads(text)

    tree = lineage(there)
    assert tree == lineage(here)
    executed = tree["run"]["executed_notebook"].replace("ROOT", str(there.root))
    executed = executed.replace("<evaluate>", there.runs["evaluate"].info.run_id)
    assert "best C=0.1: test accuracy" in Path(executed).read_text()
    ups = {u["run"]["name"] for u in tree["run"]["upstream"]}
    assert {"prepare", "train[C=0.1]"} <= ups, ups

    # verify re-executes the point here and finds what the worker found
    point = there.runs["train[C=0.1]"].info.run_id
    verified = nbops(there.root, "verify", point)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert there.client.get_run(point).data.tags[tags.VERIFIED] == "true"


def test_a_noop_rerun_on_the_cluster_touches_no_worker(
    there: Executed, dask_cluster: Cluster
) -> None:
    assert there.out.returncode == 0, there.text
    jobs, transitions = jobs_run(dask_cluster), scheduler_transitions(dask_cluster)
    again = nbops(there.root, "run", "--dask", dask_cluster.address)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(states(again.stdout).values()) == {"up to date"}, again.stdout
    assert jobs_run(dask_cluster) == jobs
    assert scheduler_transitions(dask_cluster) == transitions
