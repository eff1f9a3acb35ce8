"""The shared audit trail on the team's server: two machines (project directories) append to one
trail that both list and verify, with users; 8 processes appending at once lose nothing; on a
basic-auth server the records name the logged-in user, and a user without EDIT on the trail
keeps records pending until an admin grants it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nbops.tracking import audit, audit_shared
from tests.conftest import nbops_cli
from tests.team.conftest import unique
from tests.team.servers import MlflowServer

RUN = """
import nbops
with nbops.start_run({experiment!r}):
    nbops.log_metric("accuracy", 0.9)
"""

APPEND = """
import sys
from nbops.tracking import audit
proc, batch = int(sys.argv[1]), sys.argv[2]
for n in range(20):
    audit.record("load.append", proc=proc, n=n, batch=batch)
"""


def _env(root: Path, server: MlflowServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(server.env_for())
    env.update(NBOPS_PROJECT_ROOT=str(root), **extra)
    return env


def _grant(server: MlflowServer, user: str, experiment_id: str, permission: str) -> None:
    """``permission`` on one experiment through MLflow 3.17's permission API (the fixture's
    ``grant`` calls the 2.x path, which this server answers with 404)."""
    server.admin_request(
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        {
            "username": user,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": permission,
        },
    )


def _machine(base: Path, name: str) -> Path:
    root = base / name
    (root / ".nbops").mkdir(parents=True)
    return root


def _trail(root: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    r = nbops_cli("audit", "--json", cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def _descends(recs: dict[str, dict[str, Any]], child: str, parent: str) -> bool:
    """Whether the record ``child`` names ``parent``, directly or through records it names."""
    todo, seen = [child], set()
    while todo:
        h = todo.pop()
        if h == parent:
            return True
        if h not in seen:
            seen.add(h)
            todo += recs[h]["prev"] if h in recs else []
    return False


def test_two_machines_and_eight_concurrent_appenders_share_one_trail_that_verifies(
    team_project: Path, team_server: MlflowServer, tmp_path: Path
) -> None:
    from nbops.ops import registry
    from tests.integration.test_ops_registry import model_run

    alice, bob = unique("alice"), unique("bob")
    machine_a = _machine(tmp_path, "machine-a")
    env_a = _env(machine_a, team_server, MLFLOW_TRACKING_USERNAME=alice)
    env_b = _env(team_project, team_server, MLFLOW_TRACKING_USERNAME=bob)
    experiment = unique("audited")
    # machine A: a tracked run (its writer process records run.start and run.end)
    subprocess.run(
        [sys.executable, "-c", RUN.format(experiment=experiment)],
        cwd=machine_a,
        env=env_a,
        check=True,
        timeout=300,
    )
    # machine B (this process): a run with a model, promoted
    from nbops.mlflow.store import open_store

    open_store()  # MLflow imported here first: the sink's thread must not import it at once
    os.environ["MLFLOW_TRACKING_USERNAME"] = bob
    try:
        rid = model_run(accuracy=0.95)
        model = unique("wine")
        registry.promote(rid, model)
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"]
    # 8 processes, two on each of 4 project directories, 20 records each, at once
    batch = unique("batch")
    dirs = [_machine(tmp_path, f"load-{i}") for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPEND, str(k), batch],
            cwd=dirs[k % 4],
            env=_env(dirs[k % 4], team_server, MLFLOW_TRACKING_USERNAME=f"{batch}-{k % 4}"),
        )
        for k in range(8)
    ]
    assert [p.wait(timeout=900) for p in procs] == [0] * 8
    assert not any(audit_shared.pending_path(d).exists() for d in dirs)

    seen_a, seen_b = _trail(machine_a, env_a), _trail(team_project, env_b)
    assert seen_a == seen_b  # one trail, whichever machine lists it
    mine = [r for r in seen_a if r.get("who") in (alice, bob)]
    assert [(r["who"], r["action"]) for r in mine] == [
        (alice, "run.start"),
        (alice, "run.end"),
        (bob, "run.start"),
        (bob, "run.end"),
        (bob, "promote"),
    ]
    assert (
        mine[4]["model"] == model and mine[4]["run_id"] == rid and mine[1]["status"] == "FINISHED"
    )
    assert all(r["host"] for r in mine)
    load = [r for r in seen_a if r.get("batch") == batch]
    assert sorted((r["proc"], r["n"]) for r in load) == [
        (k, n) for k in range(8) for n in range(20)
    ]
    assert {r["who"] for r in load} == {f"{batch}-{i}" for i in range(4)}
    by_hash = {r["hash"]: r for r in seen_a}
    assert len(by_hash) == len(seen_a)
    for k in range(8):  # each process's records in the order it appended them
        chain = sorted((r for r in load if r["proc"] == k), key=lambda r: r["n"])
        assert all(
            _descends(by_hash, b["hash"], a["hash"]) for a, b in zip(chain, chain[1:], strict=False)
        )
    assert [r["seq"] for r in seen_a] == sorted(r["seq"] for r in seen_a)  # listed by seq
    listed = nbops_cli("audit", "--action", "promote", cwd=machine_a, env=env_a)
    assert listed.returncode == 0 and bob in listed.stdout and model in listed.stdout

    for root, env in ((machine_a, env_a), (team_project, env_b)):
        ok = nbops_cli("audit", "--verify", cwd=root, env=env)
        assert ok.returncode == 0, ok.stderr
        assert f"shared audit trail intact: {len(seen_a)} records by" in ok.stdout
        assert f"in experiment nbops-audit on {team_server.url}" in ok.stdout


def test_on_a_basic_auth_server_records_name_the_user_and_wait_for_a_missing_grant(
    auth_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _machine(tmp_path, "auth")
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")  # a loaded machine's first request
    monkeypatch.chdir(root)
    for k, v in auth_server.env_for().items():  # admin: makes sure the trail exists
        monkeypatch.setenv(k, v)
    assert "hash" in audit.record("schedule.add", schedule="nightly")
    got = auth_server.admin_request(
        "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=nbops-audit"
    )
    exp_id = got["experiment"]["experiment_id"]
    ana, ben = unique("ana"), unique("ben")
    for user in (ana, ben):
        pw = auth_server.add_user(user)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pw)
        if user == ana:
            _grant(auth_server, ana, exp_id, "EDIT")
            rec = audit.record("promote", model="wine")
            assert rec["who"] == ana and rec["hash"]
        else:  # READ only (the server's default): kept pending, said with the fix
            rec = audit.record("rollback", model="wine")
            assert "hash" not in rec and rec["who"] == ben
            env = {**os.environ}
            waiting = nbops_cli("audit", cwd=root, env=env)
            assert waiting.returncode == 0, waiting.stderr
            assert "1 record(s) still wait in .nbops/audit.pending.jsonl" in waiting.stderr
            assert f"refused user '{ben}' permission to create a run in experiment " in (
                waiting.stderr
            )
            assert "'nbops-audit'" in waiting.stderr and "(HTTP 403: it needs EDIT)" in (
                waiting.stderr
            )
            _grant(auth_server, ben, exp_id, "EDIT")
            sent = nbops_cli("audit", cwd=root, env=env)
            assert sent.returncode == 0 and "delivered 1 pending record(s)" in sent.stderr
            rows = [ln.split() for ln in sent.stdout.splitlines()[1:]]
            assert [(r[3], r[5]) for r in rows if r[3] in (ana, ben)] == [
                (ana, "promote"),
                (ben, "rollback"),
            ]
            ok = nbops_cli("audit", "--verify", cwd=root, env=env)
            assert ok.returncode == 0, ok.stderr
    wrong = nbops_cli("audit", cwd=root, env={**os.environ, "MLFLOW_TRACKING_PASSWORD": "not-it"})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert auth_server.url in wrong.stderr
