"""The /nbops/api/ server extension on a real SQLite MLflow store, through a real in-process
jupyter_server (pytest-jupyter's jp_fetch): every read endpoint, auth, XSRF and path safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import error_of
from tests.integration.server_seed import small_experiment


@pytest.fixture
def seeded(project: Path) -> dict[str, Any]:
    return small_experiment(project)


@pytest.fixture
def jp_server_config(project: Path, seeded: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(project)},
    }


async def test_experiments_list_names_counts_and_last_run(api: Any, seeded: dict) -> None:
    body = await api("experiments")
    by_name = {e["name"]: e for e in body["experiments"]}
    assert by_name["iris"]["run_count"] == 5
    assert by_name["iris"]["experiment_id"] == seeded["experiment"]
    assert by_name["iris"]["last_run_time"] == 1_700_000_004_000
    assert by_name["other"]["run_count"] == 1


async def test_runs_newest_first_with_params_metrics_and_nbops_tags(api: Any, seeded: dict) -> None:
    body = await api("runs", params={"experiment": "iris"})
    assert body["source"] == "sqlite"
    assert [r["run_name"] for r in body["runs"]] == [f"run-{i}" for i in (4, 3, 2, 1, 0)]
    assert body["total"] == 5 and body["next_page_token"] is None
    assert body["param_keys"] == ["C", "kind", "seed"]
    assert body["metric_keys"] == ["acc", "loss", "weird"]
    r4, r3, r2, r1 = body["runs"][:4]
    assert r4["metrics"]["weird"] is None  # NaN travels as null, never as invalid JSON
    assert r4["metrics"]["acc"] == pytest.approx(0.94)
    assert r3["rerun_of"] == seeded["run-0"] and r3["params"]["kind"] == "svm"
    assert r2["stage"] == "train" and r2["notebook"].endswith("train.ipynb")
    assert r1["status"] == "FAILED" and r1["duration_s"] == 0.5
    # by id as well as by name
    same = await api("runs", params={"experiment": seeded["experiment"]})
    assert [r["run_id"] for r in same["runs"]] == [r["run_id"] for r in body["runs"]]


async def test_runs_filter_order_and_paging(api: Any, seeded: dict) -> None:
    body = await api(
        "runs",
        params={
            "experiment": "iris",
            "filter": "params.kind = 'rf' and metrics.acc > 0.7",
            "order_by": "metrics.acc ASC",
            "max_results": "1",
        },
    )
    seen = [body["runs"][0]["run_name"]]
    assert body["total"] == 2
    token = body["next_page_token"]
    while token:
        page = await api(
            "runs",
            params={
                "experiment": "iris",
                "filter": "params.kind = 'rf' and metrics.acc > 0.7",
                "order_by": "metrics.acc ASC",
                "max_results": "1",
                "page_token": token,
            },
        )
        seen += [r["run_name"] for r in page["runs"]]
        token = page["next_page_token"]
    assert seen == ["run-2", "run-4"]


async def test_bad_queries_are_400_with_a_message(jp_fetch: Any, seeded: dict) -> None:
    code, body = await error_of(jp_fetch, "runs", params={"filter": "metrics.acc >>> 1"})
    assert code == 400 and body["error"] == "bad_request" and "filter" in body["message"]
    code, body = await error_of(jp_fetch, "runs", params={"max_results": "5000"})
    assert code == 400 and "max_results" in body["message"]
    code, body = await error_of(jp_fetch, "runs", params={"max_results": "ten"})
    assert code == 400
    code, body = await error_of(jp_fetch, "runs", params={"experiment": "nope"})
    assert code == 404 and "iris" in body["message"]  # names the experiments that exist
    code, body = await error_of(jp_fetch, "runs", params={"page_token": "garbage!"})
    assert code == 400 and "page_token" in body["message"]
    code, body = await error_of(jp_fetch, "runs", params={"order_by": "metrics.acc SIDEWAYS"})
    assert code == 400


async def test_run_detail_lists_artifacts_and_notebook(api: Any, seeded: dict) -> None:
    body = await api("runs", seeded["run-0"])
    assert body["run_id"] == seeded["run-0"]
    assert body["artifacts"] == ["notebook/train.ipynb", "reports/note.txt"]
    assert body["has_notebook"] is True
    assert body["tags"]["mlflow.runName"] == "run-0"
    nb = await api("runs", seeded["run-0"], "notebook")
    assert nb["cells"][1]["source"] == "C = 0.1"
    plain = await api("runs", seeded["run-2"])
    assert plain["has_notebook"] is False and plain["artifacts"] == []


async def test_metric_history_is_complete_and_ordered(api: Any, seeded: dict) -> None:
    body = await api("runs", seeded["run-1"], "metrics", "acc")
    assert [p["step"] for p in body["history"]] == [0, 1, 2, 3, 4]
    assert body["history"][4]["value"] == pytest.approx(0.64)


async def test_compare_params_that_differ_best_and_histories(api: Any, seeded: dict) -> None:
    ids = [seeded[f"run-{i}"] for i in (0, 1, 3)]
    body = await api("compare", params={"run_ids": ",".join(ids)})
    assert [r["run_id"] for r in body["runs"]] == ids
    assert body["params_same"] == {"seed": "0"}
    assert body["params_differ"]["C"] == {ids[0]: "0.1", ids[1]: "1.0", ids[2]: "1.0"}
    assert body["params_differ"]["kind"][ids[2]] == "svm"
    assert body["best"] == {"acc": ids[2], "loss": ids[2]}  # loss: lower is better
    assert len(body["histories"]["acc"][ids[1]]) == 5
    assert body["histories"]["loss"][ids[0]][2] == [2, pytest.approx(3.0)]


async def test_diff_aligns_cells_with_nbdime(api: Any, seeded: dict) -> None:
    body = await api("diff", params={"a": seeded["run-0"], "b": seeded["run-1"]})
    statuses = [(c["status"], c["cell_type"]) for c in body["cells"]]
    assert statuses == [
        ("unchanged", "markdown"),
        ("modified", "code"),
        ("modified", "code"),
        ("added", "code"),
    ]
    param_cell = body["cells"][1]
    assert param_cell["source_diff"] == [
        {"op": "delete", "text": "C = 0.1"},
        {"op": "insert", "text": "C = 1.0"},
    ]
    assert body["cells"][2]["outputs_a"] == "accuracy 0.5\n"
    assert body["cells"][2]["outputs_b"] == "accuracy 0.6\n"
    assert body["cells"][3]["source_a"] is None and body["cells"][3]["source_b"] == "print('extra')"


async def test_malformed_and_unknown_run_ids(jp_fetch: Any, seeded: dict) -> None:
    unknown = "0" * 32
    for parts in (
        ("runs", unknown),
        ("runs", unknown, "notebook"),
        ("runs", unknown, "metrics", "acc"),
    ):
        code, body = await error_of(jp_fetch, *parts)
        assert code == 404 and body["error"] == "not_found", parts
    for bad in ("xyz", "A" * 32, "0" * 31, "..", "%2e%2e"):
        code, body = await error_of(jp_fetch, "runs", bad)
        assert code == 400 and "run id" in body["message"], bad
    code, _ = await error_of(jp_fetch, "compare", params={"run_ids": seeded["run-0"]})
    assert code == 400  # one run is not a comparison
    code, _ = await error_of(
        jp_fetch, "compare", params={"run_ids": f"{seeded['run-0']},{unknown}"}
    )
    assert code == 404
    code, _ = await error_of(jp_fetch, "compare", params={"run_ids": f"{seeded['run-0']},../x"})
    assert code == 400
    code, _ = await error_of(jp_fetch, "diff", params={"a": seeded["run-0"], "b": seeded["run-2"]})
    assert code == 404  # run-2 has no notebook
    code, _ = await error_of(jp_fetch, "runs", seeded["run-0"], "metrics", "nope")
    assert code == 404


async def test_artifact_paths_cannot_leave_the_run(
    jp_fetch: Any, seeded: dict, project: Path
) -> None:
    (project / "secret.txt").write_text("top secret")
    rid = seeded["run-0"]
    ok = await jp_fetch("nbops", "api", "runs", rid, "artifacts", "reports/note.txt")
    assert ok.body == b"hello"
    for bad in ("../../../../secret.txt", "reports/../../x", "/etc/passwd", "~/x", ""):
        code, body = await error_of(jp_fetch, "runs", rid, "artifacts", bad)
        assert code in (400, 404) and "top secret" not in json.dumps(body), bad
    # a symlink planted inside the artifact dir that points outside is refused too
    from nbops.server.artifacts import inside

    art = project / ".nbops" / "artifacts"
    run_dir = next(p for p in art.rglob("reports") if p.is_dir())
    (run_dir / "link.txt").symlink_to(project / "secret.txt")
    code, body = await error_of(jp_fetch, "runs", rid, "artifacts", "reports/link.txt")
    assert code == 400 and "leaves" in body["message"]
    with pytest.raises(Exception, match="relative"):
        inside(run_dir, "/etc/passwd")


async def test_requests_without_a_token_are_refused(jp_fetch: Any, seeded: dict) -> None:
    for parts in (("experiments",), ("runs",), ("runs", seeded["run-0"]), ("pipeline",)):
        code, _ = await error_of(jp_fetch, *parts, headers={"Authorization": ""})
        assert code == 403, parts
    code, _ = await error_of(
        jp_fetch,
        "runs",
        seeded["run-0"],
        "rerun",
        method="POST",
        body="{}",
        headers={"Authorization": ""},
    )
    assert code == 403


async def test_cookie_authenticated_post_needs_the_xsrf_token(
    jp_fetch: Any, jp_serverapp: Any, seeded: dict
) -> None:
    token = jp_serverapp.identity_provider.token
    login = await jp_fetch("api", "status", params={"token": token}, headers={"Authorization": ""})
    cookies = [c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie")]
    assert cookies, "logging in with the token sets a cookie"
    cookie = "; ".join(cookies)
    # the cookie alone authenticates a GET ...
    ok = await jp_fetch(
        "nbops", "api", "experiments", headers={"Authorization": "", "Cookie": cookie}
    )
    assert ok.code == 200
    # ... but a POST without the XSRF token is refused before it does anything
    code, body = await error_of(
        jp_fetch,
        "pipeline",
        "run",
        method="POST",
        body="{}",
        headers={"Authorization": "", "Cookie": cookie},
    )
    assert code == 403 and body["error"] == "forbidden" and "_xsrf" in body["message"]
    xsrf = "2|abcd1234|0123456789abcdef0123456789abcdef|1700000000"
    code, body = await error_of(
        jp_fetch,
        "pipeline",
        "run",
        method="POST",
        body="{}",
        headers={
            "Authorization": "",
            "Cookie": f"{cookie}; _xsrf={xsrf}",
            "X-XSRFToken": xsrf,
        },
    )
    assert code == 409 and "nbops.yaml" in body["message"]  # past XSRF: no pipeline here


async def test_bad_bodies_and_unknown_jobs(jp_fetch: Any, seeded: dict) -> None:
    rid = seeded["run-2"]
    code, body = await error_of(jp_fetch, "runs", rid, "rerun", method="POST", body="{not json")
    assert code == 400 and "JSON" in body["message"]
    code, body = await error_of(
        jp_fetch, "runs", rid, "rerun", method="POST", body=json.dumps({"params": [1]})
    )
    assert code == 400 and "params" in body["message"]
    code, body = await error_of(
        jp_fetch, "runs", rid, "rerun", method="POST", body=json.dumps({"parms": {}})
    )
    assert code == 400
    code, body = await error_of(jp_fetch, "jobs", "nope")
    assert code == 404 and body["error"] == "not_found"
    # a run that no notebook made cannot be re-run: 409 saying why
    code, body = await error_of(
        jp_fetch, "runs", seeded["run-0"], "rerun", method="POST", body="{}"
    )
    assert code == 409 and "notebook" in body["message"]


async def test_pipeline_without_nbops_yaml_is_empty(api: Any, seeded: dict) -> None:
    assert await api("pipeline") == {"path": None, "stages": []}


def test_installed_package_enables_the_server_extension() -> None:
    """pip install (editable too) copies jupyter-config/server-config/nbops.json into
    etc/jupyter/jupyter_server_config.d: jupyter lists nbops as enabled and importable."""
    import re
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"^\s*nbops enabled\s*$", text, re.M), text
    assert re.search(r"^\s*nbops 0\.\d+\.\d+ OK\s*$", text, re.M), text
