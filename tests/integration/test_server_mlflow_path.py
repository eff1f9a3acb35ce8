"""The server on the MlflowClient path (what every non-SQLite store gets; forced here with
NbopsApp.fast_path=False on a real SQLite store) answers like the SQL path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.integration.server_seed import small_experiment


@pytest.fixture
def seeded(project: Path) -> dict[str, Any]:
    return small_experiment(project)


@pytest.fixture
def jp_server_config(project: Path, seeded: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(project), "fast_path": False},
    }


async def test_mlflow_path_serves_the_same_answers(
    jp_fetch: Any, jp_serverapp: Any, seeded: dict, project: Path
) -> None:
    async def get(*parts: str, **params: str) -> Any:
        resp = await jp_fetch("nbops", "api", *parts, params=params)
        return json.loads(resp.body)

    from nbops.mlflow.readers.sqlite import SqliteReader

    fast = SqliteReader(project / ".nbops" / "mlflow.db", lambda: None)  # type: ignore[arg-type, return-value]
    exps = await get("experiments")
    assert exps == json.loads(
        json.dumps({"experiments": [e.model_dump() for e in fast.experiments()]})
    )

    flt, order = "params.kind = 'rf' and metrics.acc > 0.55", "metrics.acc DESC"
    seen, token = [], None
    while True:
        params = {"experiment": "iris", "filter": flt, "order_by": order, "max_results": "2"}
        if token:
            params["page_token"] = token
        body = await get("runs", **params)
        assert body["source"] == "mlflow" and body["total"] is None
        seen += body["runs"]
        token = body["next_page_token"]
        if not token:
            break
    want = fast.search(fast.experiment_ids("iris"), flt, [order], 100, None).runs
    assert seen == json.loads(json.dumps([r.model_dump() for r in want]))
    assert [r["run_name"] for r in seen] == ["run-4", "run-2", "run-1"]

    detail = await get("runs", seeded["run-0"])
    assert detail["artifacts"] == ["notebook/train.ipynb", "reports/note.txt"]
    assert detail["has_notebook"] is True
    ids = [seeded[f"run-{i}"] for i in range(5)]
    cmp = await get("compare", run_ids=",".join(ids))
    assert cmp == json.loads(fast.compare(ids).model_dump_json())
    hist = await get("runs", seeded["run-1"], "metrics", "acc")
    assert [p["step"] for p in hist["history"]] == [0, 1, 2, 3, 4]
    diff = await get("diff", a=seeded["run-0"], b=seeded["run-1"])
    assert [c["status"] for c in diff["cells"]] == ["unchanged", "modified", "modified", "added"]
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("nbops", "api", "runs", "0" * 32)
    assert err.value.code == 404
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("nbops", "api", "runs", params={"filter": "metrics.acc >>> 1"})
    assert err.value.code == 400
