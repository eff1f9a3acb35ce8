"""Every command and surface against a real ``mlflow server`` on PostgreSQL with proxied
artifacts (``mlflow-artifacts:/...``): one example-pipeline run (with its sweep) on the shared
team server feeds the CLI, registry, drift, schedule, sidebar (REST) and widget checks; the magics
log from a real kernel. Nothing here reads the server's artifact directory: every byte comes back
through the server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, execute, nbops_cli, notebook, outputs_text
from tests.integration.conftest import error_of
from tests.team.conftest import unique
from tests.team.servers import MlflowServer, Postgres


@dataclass
class Shared:
    root: Path
    env: dict[str, str]
    experiment: str
    runs: dict[str, str]  # run name -> run id (the newest of that name)

    def cli(self, *args: str) -> Any:
        res = nbops_cli(*args, cwd=self.root, env=self.env)
        assert "Traceback" not in res.stderr, res.stderr
        return res


def _env(root: Path, server: MlflowServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(server.env_for())
    env["NBOPS_PROJECT_ROOT"] = str(root)
    env.pop("NBOPS_VERBOSE", None)
    return env


def _hidden_experiment(server: MlflowServer) -> tuple[str, str]:
    """An experiment tagged nbops.hidden (as nbops' own audit and blob experiments are), with a
    run: (its name, the run's id)."""
    from mlflow.tracking import MlflowClient

    from nbops import tags

    client = MlflowClient(server.url)
    name = unique("nbops-own")
    exp = client.create_experiment(name, tags={tags.HIDDEN: "true"})
    run = client.create_run(exp)
    client.set_terminated(run.info.run_id)
    return name, run.info.run_id


def _run_ids(server: MlflowServer, experiment: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    out: dict[str, str] = {}
    for r in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        out[r.info.run_name] = r.info.run_id
    return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, team_server: MlflowServer) -> Shared:
    """The example pipeline (prepare, a 3-point sweep of train, evaluate) run once on the server."""
    root = tmp_path_factory.mktemp("surfaces") / "proj"
    shutil.copytree(
        REPO / "example_notebooks", root, ignore=shutil.ignore_patterns(".nbops", ".ipynb_*")
    )
    experiment = unique("wine")
    cfg = root / "nbops.yaml"
    cfg.write_text(cfg.read_text().replace("experiment: wine", f"experiment: {experiment}"))
    env = _env(root, team_server)
    res = nbops_cli("run", cwd=root, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = _run_ids(team_server, experiment)
    assert {"pipeline", "prepare", "train", "train[C=0.1]", "evaluate"} <= set(runs), runs
    return Shared(root, env, experiment, runs)


def test_runs_show_diff_checkout_lineage_verify_on_the_server(shared: Shared) -> None:
    point, other = shared.runs["train[C=1.0]"], shared.runs["train[C=0.1]"]
    res = shared.cli("runs", "-e", shared.experiment, "--json")
    assert res.returncode == 0, res.stderr
    listed = {r["run_id"] for r in json.loads(res.stdout)}
    assert set(shared.runs.values()) <= listed

    res = shared.cli("show", point)
    assert res.returncode == 0, res.stderr
    assert "mlflow-artifacts:/" in res.stdout and "C = 1.0" in res.stdout

    res = shared.cli("diff", point, other)
    assert res.returncode == 0, res.stderr
    assert "C: 1.0 → 0.1" in res.stdout

    model = shared.root / "models" / "model-C1.0.pkl"
    want = model.read_bytes()
    model.unlink()
    res = shared.cli("checkout", point)
    assert res.returncode == 0, res.stderr
    assert "restored models/model-C1.0.pkl" in res.stdout and model.read_bytes() == want

    res = shared.cli("lineage", shared.runs["evaluate"], "--json")
    assert res.returncode == 0, res.stderr
    text = json.dumps(json.loads(res.stdout))
    assert shared.runs["prepare"] in text and point in text  # upstream by content hash

    res = shared.cli("verify", point)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"run {point} reproduced" in res.stdout


def test_promote_models_lineage_of_an_alias_and_rollback(shared: Shared) -> None:
    name = unique("wine-model")
    first, second = shared.runs["train[C=1.0]"], shared.runs["train[C=0.1]"]
    res = shared.cli("promote", first, "--model", name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"as {name} version 1; @champion -> version 1" in res.stdout
    res = shared.cli("promote", second, "--model", name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "@champion -> version 2 (was version 1)" in res.stdout
    assert "INFO" not in res.stdout + res.stderr  # MLflow's registry wait line is hidden

    res = shared.cli("models")
    assert res.returncode == 0 and name in res.stdout and "@champion=v2" in res.stdout
    res = shared.cli("lineage", f"{name}@champion")
    assert res.returncode == 0, res.stderr
    assert f"model {name} version 2 @champion" in res.stdout and second in res.stdout

    res = shared.cli("rollback", name)
    assert res.returncode == 0, res.stderr
    assert "version 2 -> version 1" in res.stdout
    res = shared.cli("models", name)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("1 "))
    assert "@champion" in line and first in line


def test_drift_retrain_and_a_scheduled_execution_on_the_server(
    shared: Shared, team_server: MlflowServer
) -> None:
    import pandas as pd

    data = shared.root / "data"
    cur = pd.read_csv(data / "train.csv")
    cur["alcohol"] = cur["alcohol"] * 3 + 5
    cur.to_csv(data / "drifted.csv", index=False)
    res = shared.cli("drift", "data/train.csv", "data/test.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    res = shared.cli("drift", "data/train.csv", "data/drifted.csv", "--json")
    assert res.returncode == 3, res.stdout + res.stderr

    cfg = shared.root / "nbops.yaml"
    before = cfg.read_text()
    cfg.write_text(
        before
        + "drift:\n  reference: data/train.csv\n  current: data/drifted.csv\n"
        + "  on_drift: [evaluate]\n"
    )
    try:
        res = shared.cli("drift", "--retrain")
    finally:
        cfg.write_text(before)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "retrain done: nbops run evaluate --force" in res.stdout, res.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(team_server.url)
    drift_run = res.stdout.split("nbops.drift_run=", 1)[1].split()[0]
    assert client.get_run(drift_run).info.status == "FINISHED"

    sched = unique("nightly")
    res = shared.cli("schedule", "add", sched, "--cron", "0 2 * * *", "--stages", "evaluate")
    assert res.returncode == 0, res.stderr
    res = shared.cli("schedule", "list")
    assert sched in res.stdout
    res = shared.cli("schedule", "run", sched, "--foreground")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"schedule {sched}: ok (runs: " in res.stdout
    ran = res.stdout.split("(runs: ", 1)[1].split(";")[0].split(",")[0].strip()
    assert client.get_run(ran).info.status == "FINISHED"
    res = shared.cli("schedule", "history", sched)
    assert res.returncode == 0 and "manual" in res.stdout and "ok" in res.stdout
    assert ran in res.stdout


# --- the sidebar's REST API, in-process, on the server store ----------------------------------
@pytest.fixture
def jp_server_config(shared: Shared, team_server: MlflowServer) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(shared.root), "tracking_uri": team_server.url},
    }


async def test_the_sidebar_reads_runs_notebooks_and_artifacts_through_the_server(
    jp_fetch: Any,
    shared: Shared,
    team_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # whatever the handlers fetch from the server is kept under the project's .nbops/tmp/, never
    # in the system's temp dir (nbops writes nothing outside the project)
    import tempfile

    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)

    async def get(*parts: str, **params: str) -> Any:
        resp = await jp_fetch("nbops", "api", *parts, params=params)
        return json.loads(resp.body) if "json" in resp.headers["Content-Type"] else resp.body

    hidden, hidden_run = _hidden_experiment(team_server)
    exps = await get("experiments")
    names = [e["name"] for e in exps["experiments"]]
    assert shared.experiment in names and hidden not in names  # nbops' own are not listed
    every = await get("runs", max_results="1000")
    assert hidden_run not in {r["run_id"] for r in every["runs"]}
    page = await get("runs", experiment=shared.experiment, max_results="100")
    assert page["source"] in ("mlflow", "postgres")
    assert set(shared.runs.values()) <= {r["run_id"] for r in page["runs"]}

    point = shared.runs["train[C=1.0]"]
    detail = await get("runs", point)
    assert detail["stage"] == "train" and detail["params"]["C"] == "1.0"
    assert "notebook/02_train.ipynb" in detail["artifacts"], detail
    assert detail["has_notebook"] is True and detail["artifacts_note"] is None

    # an artifact comes back through the server's proxy, byte for byte
    body = await get("runs", point, "artifacts", "notebook/02_train.ipynb")
    nb = json.loads(body)
    assert nb["cells"] and "nbformat" in nb
    fetched = [p for p in made if p.name.startswith("nbops-artifact-")]
    assert fetched and all(p.is_relative_to(shared.root / ".nbops" / "tmp") for p in fetched)
    assert not any(p.exists() for p in fetched)  # and removed after the answer
    # paths that leave the run's artifacts are refused before the store is asked
    for bad in ("../../etc/passwd", "/etc/passwd", "~/x", "notebook/../../other"):
        code, err = await error_of(jp_fetch, "runs", point, "artifacts", bad)
        assert code in (400, 404), (bad, code, err)
    code, err = await error_of(jp_fetch, "runs", point, "artifacts", "no/such/file.txt")
    assert code == 404 and point in err["message"]
    code, err = await error_of(jp_fetch, "runs", point, "artifacts", "notebook")
    assert code == 404  # a directory is never downloaded whole

    # the executed notebook: kept here, and from the server when it is not
    kept = shared.root / ".nbops" / "runs" / point
    moved = kept.with_name(point + ".away")
    kept.rename(moved)
    try:
        served = await get("runs", point, "notebook")
        assert served["cells"] == nb["cells"]
        diff = await get("diff", a=point, b=shared.runs["train[C=0.1]"])
        assert any(c["status"] != "unchanged" for c in diff["cells"])
    finally:
        moved.rename(kept)

    ids = [shared.runs[n] for n in ("train[C=0.01]", "train[C=0.1]", "train[C=1.0]")]
    cmp = await get("compare", run_ids=",".join(ids))
    assert [r["run_id"] for r in cmp["runs"]] == ids and "C" in cmp["params_differ"]
    assert set(cmp["histories"]["cv_accuracy"]) == set(ids)
    code, err = await error_of(jp_fetch, "compare", params={"run_ids": f"{ids[0]},{'f' * 32}"})
    assert code == 404 and "f" * 32 in err["message"]
    hist = await get("runs", point, "metrics", "cv_accuracy")
    assert len(hist["history"]) == 1

    lineage = await get("runs", shared.runs["evaluate"], "lineage")
    assert shared.runs["prepare"] in json.dumps(lineage)

    pipe = await get("pipeline")
    assert [s["status"] for s in pipe["stages"]] == ["up to date"] * 3, pipe

    # a re-run from the sidebar runs on the server too, tagged with the run it re-runs
    evaluate = shared.runs["evaluate"]
    resp = await jp_fetch("nbops", "api", "runs", evaluate, "rerun", method="POST", body="{}")
    assert resp.code == 202
    job_id = json.loads(resp.body)["job_id"]
    deadline = time.monotonic() + 300
    while (job := await get("jobs", job_id))["state"] == "running":
        assert time.monotonic() < deadline, job["log_tail"]
        await asyncio.sleep(0.5)  # polling a job with a deadline, as the sidebar does
    assert job["state"] == "done", job["log_tail"]
    again = await get("runs", job["run_id"])
    assert again["rerun_of"] == evaluate and again["stage"] == "evaluate"
    assert again["status"] == "FINISHED" and again["metrics"]["accuracy"] > 0.85


async def test_the_sidebar_refuses_a_remote_artifact_over_the_size_bound(
    jp_fetch: Any, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbops.server import limits

    point = shared.runs["train[C=1.0]"]
    monkeypatch.setattr(limits, "MAX_FETCHED_ARTIFACT_BYTES", 100)
    code, err = await error_of(jp_fetch, "runs", point, "artifacts", "notebook/02_train.ipynb")
    assert code == 400, err
    assert "at most 100 bytes" in err["message"] and "mlflow artifacts download" in err["message"]


# --- the magics in a real kernel, and the widgets --------------------------------------------
def test_track_magics_in_a_kernel_log_to_the_server(
    team_project: Path, team_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    experiment = unique("magic")
    nb = notebook(
        team_project / "fit.ipynb",
        ("alpha = 0.5", ["parameters"]),
        "%load_ext nbops",
        f"%track start -e {experiment} -n first",
        "%%track -n fit\nlr = 0.1\nimport math\nacc = math.sqrt(0.81)\nacc",
        "%track stop",
    )
    out = execute(nb)
    assert "nbops: cell fit logged params lr; metrics acc" in outputs_text(out.cells[3])
    text = "".join(outputs_text(c) for c in out.cells)
    assert "Traceback" not in text and "View run" not in outputs_text(out.cells[4])
    client = MlflowClient(team_server.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.params["lr"] == "0.1" and run.data.metrics["acc"] == 0.9
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    files = {a.path for a in client.list_artifacts(run.info.run_id, "cells/fit")}
    assert "cells/fit/source.py" in files


def test_runs_compare_and_the_runs_widget_on_the_server(
    shared: Shared, team_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(shared.root))
    import nbops

    frame = nbops.runs(shared.experiment)
    assert set(shared.runs.values()) <= set(frame["run_id"])
    hidden, hidden_run = _hidden_experiment(team_server)
    assert hidden_run not in set(nbops.runs()["run_id"])  # every experiment but nbops' own
    assert list(nbops.runs(hidden)["run_id"]) == [hidden_run]  # named, it is listed
    ids = [shared.runs["train[C=0.01]"], shared.runs["train[C=1.0]"]]
    cmp = nbops.compare(ids)
    assert cmp.run_ids == ids and "C" in cmp.params.index
    browser = nbops.runs_widget(shared.experiment)
    assert set(shared.runs.values()) <= set(browser.run_ids)
    browser.filter.value = "params.C = '0.1'"
    assert browser.run_ids == [shared.runs["train[C=0.1]"]]


async def test_artifacts_on_a_host_of_their_own_are_neither_listed_nor_fetched(
    jp_fetch: Any, shared: Shared, team_server: MlflowServer, postgres: Postgres
) -> None:
    """A run row whose artifact URI names another host (MLflow 3.17's server refuses such an
    artifact_location, older ones and MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES allow it;
    here it is written into the row in PostgreSQL) is not read: MLflow would send that host the
    tracking credentials. Nothing connects to it."""
    import socket
    import threading

    from mlflow.tracking import MlflowClient

    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.settimeout(0.2)
    port = trap.getsockname()[1]
    knocks: list[Any] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                knocks.append(trap.accept()[0])
            except OSError:
                continue

    waiter = threading.Thread(target=accept, daemon=True)
    waiter.start()
    client = MlflowClient(team_server.url)
    try:
        exp = client.create_experiment(unique("elsewhere"))
        for where in (f"mlflow-artifacts://127.0.0.1:{port}/x", f"http://127.0.0.1:{port}/x"):
            run = client.create_run(exp).info.run_id
            client.set_terminated(run)
            postgres.psql(
                f"UPDATE runs SET artifact_uri = '{where}' WHERE run_uuid = '{run}'",
                database="mlflow",
            )
            resp = await jp_fetch("nbops", "api", "runs", run)
            detail = json.loads(resp.body)
            assert detail["artifacts"] == [] and detail["has_notebook"] is False
            assert "host of their own" in detail["artifacts_note"], detail
            code, err = await error_of(jp_fetch, "runs", run, "artifacts", "notebook/a.ipynb")
            assert code == 404 and "mlflow artifacts download" in err["message"], err
            code, _ = await error_of(jp_fetch, "runs", run, "notebook")
            assert code == 404
    finally:
        stop.set()
        waiter.join()
        trap.close()
    assert knocks == []
