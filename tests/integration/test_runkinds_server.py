"""The sidebar's executed-notebook and diff endpoints on a sweep's run and a pipeline run
(through a real in-process jupyter_server and a real SQLite store): a 404 naming the child runs
that executed the notebook, never just "has no executed notebook"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbops import tags
from tests.integration.conftest import error_of


@pytest.fixture
def sweep(project: Path) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    from nbops.mlflow.store import open_store

    uri = f"sqlite:///{project / '.nbops' / 'mlflow.db'}"
    exp = open_store(uri).experiment_id("wine")
    client = MlflowClient(uri)
    t0 = 1_700_000_000_000

    def run(name: str, i: int, **run_tags: str) -> str:
        return str(
            client.create_run(exp, start_time=t0 + i, run_name=name, tags=run_tags).info.run_id
        )

    ids = {"P": run("pipeline", 0, **{tags.PIPELINE: "nbops.yaml"})}
    parent = {tags.MLFLOW_PARENT_RUN_ID: ids["P"]}
    ids["S"] = run("prepare", 1, **parent, **{tags.STAGE: "prepare"})
    ids["T"] = run("train", 2, **parent, **{tags.STAGE: "train"})
    for i, c in enumerate(("0.1", "1.0")):
        ids[c] = run(
            f"train[C={c}]",
            3 + i,
            **{
                tags.MLFLOW_PARENT_RUN_ID: ids["T"],
                tags.STAGE: "train",
                tags.SWEEP_POINT: f"train[C={c}]",
            },
        )
    return ids


@pytest.fixture
def jp_server_config(project: Path, sweep: dict[str, str]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(project)},
    }


async def test_a_sweep_and_a_pipeline_run_name_the_runs_that_executed_the_notebook(
    jp_fetch: Any, sweep: dict[str, str]
) -> None:
    points = f"{sweep['0.1']} (train[C=0.1]), {sweep['1.0']} (train[C=1.0])"
    code, body = await error_of(jp_fetch, "runs", sweep["T"], "notebook")
    assert code == 404 and body["error"] == "not_found"
    assert body["message"].startswith(
        f"run {sweep['T']} is the sweep of stage train: it executed no notebook itself; its 2 "
        f"point runs did: {points}"
    ), body
    code, body = await error_of(jp_fetch, "diff", params={"a": sweep["T"], "b": sweep["0.1"]})
    assert code == 404 and f"its 2 point runs did: {points}" in body["message"]
    assert "diff two of them" in body["message"] + str(body.get("hint"))
    code, body = await error_of(jp_fetch, "runs", sweep["P"], "notebook")
    assert code == 404
    assert f"its 2 stage runs did: {sweep['S']} (prepare), {sweep['T']} (train)" in body["message"]
    code, body = await error_of(jp_fetch, "runs", sweep["S"], "notebook")
    assert code == 404 and "it is the run of a pipeline stage" in body["message"]
