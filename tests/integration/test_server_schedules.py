"""/nbops/api/schedules and /nbops/api/runs/<id>/lineage through a real in-process jupyter_server
(pytest-jupyter's jp_fetch) over a real project: nbops.yaml, the scheduler's store, and for
run-now a detached `nbops schedule run` executing a notebook in a real kernel."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import notebook
from tests.integration.conftest import error_of

YAML = """\
experiment: sched
stages:
  make:
    notebook: make.ipynb
    params: {n: 3}
    outs: [data.csv]
  train:
    notebook: train.ipynb
    deps: [data.csv]
schedules:
  nightly: {cron: "0 2 * * *", stages: [make], timezone: Europe/Berlin}
"""


@pytest.fixture
def proj(project: Path) -> Path:
    notebook(
        project / "make.ipynb",
        ("n = 1", ["parameters"]),
        "open('data.csv', 'w').write('x\\n' + '\\n'.join(str(i) for i in range(n)) + '\\n')",
    )
    notebook(project / "train.ipynb", "rows = open('data.csv').read().split()\nprint(len(rows))")
    (project / "nbops.yaml").write_text(YAML)
    return project


@pytest.fixture
def jp_server_config(proj: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbops": True}},
        "NbopsApp": {"project_root": str(proj)},
    }


def post(body: dict[str, Any]) -> dict[str, Any]:
    return {"method": "POST", "body": json.dumps(body)}


async def test_list_shows_yaml_schedules_with_next_fire_and_the_daemon_down(api: Any) -> None:
    before = time.time() * 1000
    body = await api("schedules")
    (nightly,) = body["schedules"]
    assert nightly["name"] == "nightly" and nightly["source"] == "nbops.yaml"
    assert nightly["cron"] == "0 2 * * *" and nightly["timezone"] == "Europe/Berlin"
    assert nightly["stages"] == ["make"] and nightly["catchup"] == "latest"
    # 02:00 in Berlin is at most a day (+ a DST hour) ahead
    assert before < nightly["next_fire"] <= before + 25 * 3600 * 1000
    assert nightly["last_status"] is None and nightly["last_run_id"] is None
    assert body["problem"] is None
    daemon = body["daemon"]
    assert daemon["alive"] is False and daemon["pid"] is None
    assert "nbops scheduler" in daemon["hint"] and "project folder" in daemon["hint"]


async def test_create_lists_the_new_schedule(api: Any, proj: Path) -> None:
    made = await api(
        "schedules",
        **post(
            {
                "name": "hourly-make",
                "cron": "15 * * * *",
                "stages": ["make"],
                "params": {"n": 5},
                "catchup": "none",
                "retries": 2,
                "timeout": 600,
                "timezone": "UTC",
            }
        ),
    )
    assert made["name"] == "hourly-make" and made["source"] == "cli"
    assert made["params"] == {"n": 5} and made["retries"] == 2 and made["timeout"] == 600
    nxt = time.gmtime(made["next_fire"] / 1000)
    assert nxt.tm_min == 15 and nxt.tm_sec == 0
    names = [s["name"] for s in (await api("schedules"))["schedules"]]
    assert names == ["hourly-make", "nightly"]
    # the CLI sees the same schedule: one store
    from nbops.scheduler import api as sched

    assert [s["name"] for s in sched.list_schedules(proj)] == names


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x", "cron": "61 * * * *"}, "cron"),
        ({"name": "x", "cron": "0 2 * *"}, "cron"),
        ({"name": "x", "cron": "0 2 * * *", "stages": ["trian"]}, "stages"),
        ({"name": "x", "cron": "0 2 * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"name": "x", "cron": "0 2 * * *", "catchup": "some"}, "catchup"),
        ({"name": "x", "cron": "0 2 * * *", "retries": -1}, "retries"),
        ({"name": "x y", "cron": "0 2 * * *"}, "name"),
        ({"cron": "0 2 * * *"}, "name"),
        ({"name": "x", "cron": "0 2 * * *", "on_failure": "rm -rf /"}, "on_failure"),
        ({"name": "x", "cron": "0 0 30 2 *"}, "schedule 'x': cron: '0 0 30 2 *' never fires"),
        ({"name": "x", "cron": "0 0 31 2,4,6,9,11 *"}, "February has at most 29 days"),
        ({"name": "x", "cron": "0 0 * 2 1#5"}, "more than 5 years away"),
        ({"name": "x", "cron": "@daily", "timezone": "Europe/Nowhere"}, "unknown time zone"),
        ({"name": "x", "cron": "@daily", "retries": "3"}, "schedule 'x': retries: '3' is not a"),
        ({"name": "x", "cron": "@daily", "retries": 1.5}, "retries: 1.5 is not a whole number"),
        ({"name": "x", "cron": "@daily", "retries": True}, "retries: True is not a whole number"),
        ({"name": "x", "cron": "@daily", "retries": 10**12}, "retries: 1000000000000 is out of"),
        ({"name": "x", "cron": "@daily", "timeout": 1.5}, "timeout: 1.5 is not a whole number"),
        ({"name": "x", "cron": "@daily", "timeout": "60"}, "timeout: '60' is not a whole number"),
        ({"name": "x", "cron": "@daily", "timeout": 10**12}, "timeout: 1000000000000 is out of"),
        ({"name": "x", "cron": "@daily", "params": {"nope": 1}}, "declares a parameter 'nope'"),
        ({"name": "x", "cron": "@daily", "params": {"make.m": 1}}, "declares no parameter 'm'"),
        ({"name": "x", "cron": "@daily", "params": {"nada.n": 1}}, "declares a parameter 'nada.n'"),
        (
            {"name": "x", "cron": "@daily", "stages": ["make"], "params": {"train.n": 1}},
            "stage 'train' is not among those the schedule runs",
        ),
        ({"name": "x", "cron": "@daily", "params": {"n": 10**500}}, "501-character number"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    jp_fetch: Any, api: Any, body: dict[str, Any], field: str
) -> None:
    code, err = await error_of(jp_fetch, "schedules", **post(body))
    assert code == 400 and err["error"] == "bad_request"
    assert field in err["message"], err
    assert [s["name"] for s in (await api("schedules"))["schedules"]] == ["nightly"]


async def test_unknown_stage_suggests_the_close_one(jp_fetch: Any) -> None:
    code, err = await error_of(
        jp_fetch, "schedules", **post({"name": "x", "cron": "@daily", "stages": ["trian"]})
    )
    assert code == 400 and "did you mean 'train'?" in err["message"]


async def test_duplicate_names_are_409(jp_fetch: Any, api: Any) -> None:
    await api("schedules", **post({"name": "again", "cron": "@hourly"}))
    code, err = await error_of(jp_fetch, "schedules", **post({"name": "again", "cron": "@daily"}))
    assert code == 409 and err["error"] == "conflict" and "'again' already exists" in err["message"]
    code, err = await error_of(jp_fetch, "schedules", **post({"name": "nightly", "cron": "@daily"}))
    assert code == 409 and "nbops.yaml" in err["message"]


async def test_delete_removes_cli_schedules_and_refuses_yaml_ones(
    jp_fetch: Any, api: Any, proj: Path
) -> None:
    await api("schedules", **post({"name": "temp", "cron": "@hourly"}))
    gone = await api("schedules", "temp", method="DELETE")
    assert gone == {"removed": "temp"}
    assert [s["name"] for s in (await api("schedules"))["schedules"]] == ["nightly"]
    code, err = await error_of(jp_fetch, "schedules", "nightly", method="DELETE")
    assert code == 409 and err["error"] == "conflict"
    assert "nbops.yaml" in err["message"] and "schedules:" in err["message"]
    assert f"{proj / 'nbops.yaml'}:" in err["message"]  # file:line of the schedule
    code, err = await error_of(jp_fetch, "schedules", "temp", method="DELETE")
    assert code == 404 and err["error"] == "not_found" and "temp" in err["message"]
    # removals are audited like the CLI's
    audit = (proj / ".nbops" / "audit.jsonl").read_text()
    assert '"schedule.remove"' in audit and '"temp"' in audit


async def test_unknown_schedule_history_and_run_are_404(jp_fetch: Any) -> None:
    code, err = await error_of(jp_fetch, "schedules", "nope", "history")
    assert code == 404 and "nope" in err["message"]
    code, err = await error_of(jp_fetch, "schedules", "nope", "run", **post({}))
    assert code == 404
    code, err = await error_of(jp_fetch, "schedules", "nightly", "history", params={"limit": "0"})
    assert code == 400 and "limit" in err["message"]


async def test_one_bad_stored_schedule_is_listed_invalid_and_the_others_are_not_hidden(
    api: Any, jp_fetch: Any, proj: Path
) -> None:
    import sqlite3

    await api("schedules", **post({"name": "hourly", "cron": "@hourly", "params": {"n": 2}}))
    db = sqlite3.connect(proj / ".nbops" / "scheduler" / "scheduler.db", isolation_level=None)
    db.execute(  # as an older nbops or a hand edit stored it, past the validation
        "INSERT INTO schedules VALUES ('feb30', json_object('name', 'feb30', 'cron', "
        "'0 0 30 2 *'), 0), ('junk', '{not json', 0)"
    )
    db.close()
    body = await api("schedules")
    by_name = {s["name"]: s for s in body["schedules"]}
    assert set(by_name) == {"feb30", "hourly", "junk", "nightly"} and body["problem"] is None
    assert by_name["hourly"]["next_fire"] and by_name["hourly"]["invalid"] is None
    assert by_name["nightly"]["next_fire"] and by_name["nightly"]["invalid"] is None
    assert "'0 0 30 2 *' never fires" in by_name["feb30"]["invalid"]
    assert by_name["feb30"]["next_fire"] is None and by_name["feb30"]["cron"] == "0 0 30 2 *"
    assert "not a JSON object" in by_name["junk"]["invalid"]
    code, err = await error_of(jp_fetch, "schedules", "feb30", "run", **post({}))
    assert code == 400 and "is invalid and does not run" in err["message"]
    await api("schedules", "junk", method="DELETE")  # an invalid one can be removed
    assert "junk" not in {s["name"] for s in (await api("schedules"))["schedules"]}


async def test_a_damaged_scheduler_database_is_the_lists_problem_and_a_503_elsewhere(
    api: Any, jp_fetch: Any, proj: Path
) -> None:
    await api("schedules")  # the database exists
    path = proj / ".nbops" / "scheduler" / "scheduler.db"
    for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        extra.unlink(missing_ok=True)
    path.write_bytes(b"")
    body = await api("schedules")
    assert body["schedules"] == [] and f"{path} is empty (0 bytes)" in body["problem"]
    assert "mv " in body["problem"]
    for args, kw in (
        (("schedules",), post({"name": "x", "cron": "@daily"})),
        (("schedules", "nightly", "history"), {}),
        (("schedules", "nightly", "run"), post({})),
        (("schedules", "nightly"), {"method": "DELETE"}),
    ):
        code, err = await error_of(jp_fetch, *args, **kw)
        # the server's state, not the request's (as a damaged tracking store): 503
        assert code == 503 and err["error"] == "unavailable", (args, err)
        assert str(path) in err["message"], (args, err)
    assert path.read_bytes() == b""  # never replaced


async def test_without_nbops_yaml_the_list_says_why(api: Any, proj: Path) -> None:
    (proj / "nbops.yaml").unlink()
    body = await api("schedules")
    assert body["schedules"] == [] and "nbops.yaml" in body["problem"]
    assert body["daemon"]["alive"] is False


async def poll(deadline_s: float, check: Any) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.5)  # polling interval of a poll with a deadline


async def test_run_now_records_history_with_run_ids_and_the_run_has_lineage(
    api: Any, jp_fetch: Any
) -> None:
    accepted = await jp_fetch("nbops", "api", "schedules", "nightly", "run", **post({}))
    assert accepted.code == 202
    body = json.loads(accepted.body)
    assert body["schedule"] == "nightly" and body["queued"] is False and body["pid"] > 0

    async def finished() -> Any:
        rows = (await api("schedules", "nightly", "history"))["executions"]
        return rows if rows and rows[0]["status"] not in ("running",) else None

    t0 = time.monotonic()
    (row,) = await poll(240, finished)
    print(f"run-now to a finished history row: {time.monotonic() - t0:.1f} s")
    assert row["status"] == "ok", row
    assert row["reason"] == "manual" and row["error"] is None
    assert row["start_time"] <= row["end_time"] and row["duration_s"] > 0
    assert row["run_ids"] and row["pipeline_run_id"]
    listed = (await api("schedules"))["schedules"][0]
    assert listed["last_status"] == "ok" and listed["last_run_id"] == row["pipeline_run_id"]

    stage_run = row["run_ids"][0]
    lin = await api("runs", stage_run, "lineage")
    run = lin["run"]
    assert run["run_id"] == stage_run and run["stage"] == "make"
    assert run["params"]["n"] == "3"
    assert run["notebook"].endswith("make.ipynb")
    assert set(run["data"]["outs"]) == {"data.csv"} and len(run["data"]["outs"]["data.csv"]) > 8
    assert run["pipeline_run"] == row["pipeline_run_id"]
    assert run["upstream"] == [] and "commit" in run["git"]
    assert lin["verified"] is None  # never verified


async def test_lineage_reports_the_verified_tag_and_upstream_runs(
    api: Any, jp_fetch: Any, proj: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from tests.conftest import nbops_cli, store_uri

    done = nbops_cli("run", cwd=proj)
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(store_uri(proj))
    exp = client.get_experiment_by_name("sched")
    (train,) = client.search_runs([exp.experiment_id], "tags.`nbops.stage` = 'train'")
    (make,) = client.search_runs([exp.experiment_id], "tags.`nbops.stage` = 'make'")
    client.set_tag(train.info.run_id, "nbops.verified", "false")
    lin = await api("runs", train.info.run_id, "lineage")
    assert lin["verified"] == "false"
    (up,) = lin["run"]["upstream"]
    assert up["dep"] == "data.csv" and up["run"]["run_id"] == make.info.run_id
    assert up["digest"] == make.data.tags["nbops.out.data.csv"]
    code, err = await error_of(jp_fetch, "runs", "0" * 32, "lineage")
    assert code == 404 and "0" * 32 in err["message"]
    code, err = await error_of(jp_fetch, "runs", "not-a-run", "lineage")
    assert code == 400


async def test_a_running_daemon_is_shown_alive_and_run_now_is_queued_for_it(
    api: Any, jp_fetch: Any, proj: Path
) -> None:
    import signal
    import subprocess
    import sys

    daemon = subprocess.Popen(
        [sys.executable, "-m", "nbops", "scheduler"],
        cwd=proj,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        async def alive() -> Any:
            d = (await api("schedules"))["daemon"]
            assert daemon.poll() is None, daemon.communicate()[1]
            return d if d["alive"] else None

        d = await poll(60, alive)
        assert d["pid"] == daemon.pid and d["hint"] is None
        assert d["since"] and d["since"] <= time.time() * 1000
        accepted = await api("schedules", "nightly", "run", **post({}))
        assert accepted == {"schedule": "nightly", "queued": True, "pid": None}

        async def done() -> Any:
            rows = (await api("schedules", "nightly", "history"))["executions"]
            return rows if rows and rows[0]["status"] != "running" else None

        (row,) = await poll(240, done)
        assert row["status"] == "ok" and row["reason"] == "manual", row
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=150)

    async def down() -> Any:
        d = (await api("schedules"))["daemon"]
        return d if not d["alive"] else None

    d = await poll(30, down)
    assert d["pid"] is None and "nbops scheduler" in d["hint"]


async def test_requests_without_a_token_are_refused(jp_fetch: Any) -> None:
    no_auth = {"headers": {"Authorization": ""}}
    for parts in (("schedules",), ("schedules", "nightly", "history")):
        code, _ = await error_of(jp_fetch, *parts, **no_auth)
        assert code == 403, parts
    code, _ = await error_of(
        jp_fetch, "schedules", **post({"name": "x", "cron": "@daily"}), **no_auth
    )
    assert code == 403
    code, _ = await error_of(jp_fetch, "schedules", "nightly", method="DELETE", **no_auth)
    assert code == 403


async def test_cookie_authenticated_posts_need_the_xsrf_token(
    jp_fetch: Any, jp_serverapp: Any, api: Any
) -> None:
    token = jp_serverapp.identity_provider.token
    login = await jp_fetch("api", "status", params={"token": token}, headers={"Authorization": ""})
    cookie = "; ".join(c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie"))
    assert cookie
    ok = await jp_fetch(
        "nbops", "api", "schedules", headers={"Authorization": "", "Cookie": cookie}
    )
    assert ok.code == 200
    create = post({"name": "sneaky", "cron": "@daily"})
    code, _ = await error_of(
        jp_fetch, "schedules", **create, headers={"Authorization": "", "Cookie": cookie}
    )
    assert code == 403
    code, _ = await error_of(
        jp_fetch,
        "schedules",
        "nightly",
        "run",
        **post({}),
        headers={"Authorization": "", "Cookie": cookie},
    )
    assert code == 403
    assert [s["name"] for s in (await api("schedules"))["schedules"]] == ["nightly"]
    xsrf = "2|abcd1234|0123456789abcdef0123456789abcdef|1700000000"
    made = await jp_fetch(
        "nbops",
        "api",
        "schedules",
        **create,
        headers={"Authorization": "", "Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf},
    )
    assert made.code == 201 and json.loads(made.body)["name"] == "sneaky"
