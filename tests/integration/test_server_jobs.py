"""Re-runs and pipeline runs through the server, on real kernels: the new run is tagged
nbops.rerun_of and carries the edited parameters."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import notebook

LOGGING_CELL = "import nbops\nnbops.log_param('C_seen', C)\nnbops.log_metric('acc', C / 10)\n"


@pytest.fixture
def jp_server_config(project: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(project)},
    }


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    async def call(*parts: str, **kw: Any) -> Any:
        resp = await jp_fetch("nbops", "api", *parts, **kw)
        return resp.code, json.loads(resp.body)

    return call


async def wait_job(api: Any, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = await api("jobs", job_id)
        if job["state"] != "running":
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} still running after {timeout} s: {job['log_tail']}")


async def test_pipeline_run_then_rerun_of_its_stage_run(
    api: Any, jp_fetch: Any, project: Path
) -> None:
    notebook(project / "train.ipynb", ("C = 1.0\n", ["parameters"]), LOGGING_CELL)
    (project / "nbops.yaml").write_text(
        "experiment: srv\nstages:\n  train:\n    notebook: train.ipynb\n    params: {C: 2.0}\n"
    )
    _, pipe = await api("pipeline")
    assert pipe["path"] == str(project / "nbops.yaml")
    assert [(s["name"], s["status"]) for s in pipe["stages"]] == [("train", "never run")]

    code, accepted = await api(
        "pipeline", "run", method="POST", body=json.dumps({"stages": ["train"]})
    )
    assert code == 202 and accepted["state"] == "running"
    job = await wait_job(api, accepted["job_id"])
    assert job["state"] == "done", job["log_tail"]
    assert job["kind"] == "pipeline" and len(job["run_ids"]) == 1
    stage_run = job["run_ids"][0]

    _, pipe = await api("pipeline")
    assert pipe["stages"][0]["status"] == "up to date", pipe
    assert pipe["stages"][0]["last_run_id"] == stage_run
    _, first = await api("runs", stage_run)
    assert first["stage"] == "train" and first["metrics"]["acc"] == pytest.approx(0.2)
    assert first["has_notebook"] is True

    # a parameter the notebook does not declare: 400 naming the declared ones, nothing started
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "nbops", "api", "runs", stage_run, "rerun", method="POST",
            body=json.dumps({"params": {"gamma": 1}}),
        )  # fmt: skip
    assert err.value.code == 400
    body = json.loads(err.value.response.body)
    assert "gamma" in body["message"] and "declares: C" in body["message"]

    code, accepted = await api(
        "runs", stage_run, "rerun", method="POST", body=json.dumps({"params": {"C": 5.0}})
    )
    assert code == 202
    job = await wait_job(api, accepted["job_id"])
    assert job["state"] == "done", job["log_tail"]
    assert job["rerun_of"] == stage_run and job["run_id"] not in (None, stage_run)
    _, new = await api("runs", job["run_id"])
    assert new["rerun_of"] == stage_run and new["stage"] == "train"
    assert new["params"]["C"] == "5.0" and new["metrics"]["acc"] == pytest.approx(0.5)
    # the executed notebooks of both runs can be diffed: the injected parameter differs
    _, diff = await api("diff", params={"a": stage_run, "b": job["run_id"]})
    changed = [c for c in diff["cells"] if c["status"] != "unchanged"]
    assert any("5.0" in (c["source_b"] or "") for c in changed)


async def test_rerun_of_a_tracked_notebook_run_executes_it_with_new_params(
    api: Any, project: Path
) -> None:
    nb = notebook(
        project / "explore.ipynb",
        ("lr = 0.1\nkind = 'rf'\n", ["parameters"]),
        "import nbops\nnbops.start_run('explore')\nnbops.log_params({'lr': lr, 'kind': kind})\n"
        "nbops.log_metric('score', lr * 2)\nnbops.end_run()\n",
    )
    # the original run, as a tracked notebook run records itself
    from nbops.mlflow.store import open_store

    store = open_store(f"sqlite:///{project / '.nbops' / 'mlflow.db'}")
    exp = store.experiment_id("explore")
    original = store.create_run(exp, 1_700_000_000_000, "explore", {"nbops.notebook": str(nb)})
    store.log_batch(original, params=[("lr", "0.1"), ("kind", "svm")])
    store.set_terminated(original, "FINISHED", 1_700_000_001_000)

    code, accepted = await api(
        "runs", original, "rerun", method="POST", body=json.dumps({"params": {"lr": 0.3}})
    )
    assert code == 202
    job = await wait_job(api, accepted["job_id"])
    assert job["state"] == "done", job["log_tail"]
    _, new = await api("runs", job["run_id"])
    assert new["rerun_of"] == original
    assert new["params"] == {"kind": "svm", "lr": "0.3"}  # its own kind, the edited lr
    assert new["metrics"]["score"] == pytest.approx(0.6)
    assert new["notebook"] == str(nb)


async def test_a_pipeline_run_that_cannot_start_is_a_failed_job_saying_why(
    api: Any, jp_fetch: Any, project: Path
) -> None:
    notebook(project / "train.ipynb", ("C = 1.0\n", ["parameters"]), LOGGING_CELL)
    (project / "nbops.yaml").write_text("stages:\n  train:\n    notebook: train.ipynb\n")
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "nbops", "api", "pipeline", "run", method="POST",
            body=json.dumps({"stages": ["tran"]}),
        )  # fmt: skip
    assert err.value.code == 400 and "tran" in json.loads(err.value.response.body)["message"]
    code, accepted = await api(
        "pipeline", "run", method="POST", body=json.dumps({"params": {"gamma": 2}})
    )
    assert code == 202
    job = await wait_job(api, accepted["job_id"], timeout=120)
    assert job["state"] == "failed" and "gamma" in job["error"], job
    assert job["finished"] >= job["started"]


def test_rerun_of_a_sweep_point_asks_for_that_point_only(project: Path) -> None:
    """The launch a re-run makes: the run's own params then the edits; a swept key becomes a
    one-value --sweep (so only that point runs), the rest -p STAGE.k=v."""
    from nbops.mlflow.readers.base import RunInfo
    from nbops.server import models as m
    from nbops.server.launches import rerun

    notebook(project / "train.ipynb", ("C = 1.0\nseed = 0\n", ["parameters"]), LOGGING_CELL)
    (project / "nbops.yaml").write_text(
        "stages:\n  train:\n    notebook: train.ipynb\n    sweep: {C: [0.1, 1.0]}\n"
    )
    rid = "a" * 32
    summary = m.RunSummary(
        run_id=rid,
        experiment_id="1",
        status="FINISHED",
        params={"C": "0.1", "seed": "0", "logged_only": "x"},
        stage="train",
    )
    info = RunInfo(summary, {"nbops.stage": "train", "nbops.sweep_point": "train[C=0.1]"}, None)
    launch = rerun(project, "sqlite:///x.db", info, {"C": 5.0}, "job1", project / "jobs")
    argv = launch.argv
    assert argv[argv.index("run") + 1 :][:2] == ["train", "--force"]
    assert argv[argv.index("--sweep") : argv.index("--sweep") + 2] == ["--sweep", "C=5.0"]
    assert "train.seed=0" in argv and not any("train.C" in a or "logged_only" in a for a in argv)
    assert f"nbops.rerun_of={rid}" in argv and launch.cwd == project


def test_rerun_of_a_pipeline_run_says_it_executed_no_notebook(project: Path) -> None:
    """A pipeline run is not 'a run no notebook made': the refusal says what it is and what to
    re-run instead."""
    from nbops.errors import Conflict
    from nbops.mlflow.readers.base import RunInfo
    from nbops.server import models as m
    from nbops.server.launches import rerun

    rid = "b" * 32
    summary = m.RunSummary(run_id=rid, experiment_id="1", status="FINISHED", params={})
    info = RunInfo(summary, {"nbops.pipeline": str(project / "nbops.yaml")}, None)
    with pytest.raises(Conflict) as err:
        rerun(project, "sqlite:///x.db", info, {}, "job1", project / "jobs")
    assert "is the pipeline run of an `nbops run`" in err.value.message
    assert "nbops run" in (err.value.hint or "")
