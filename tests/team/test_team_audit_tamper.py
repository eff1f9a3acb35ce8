"""The shared audit trail on a server of its own: tampering through MLflow's REST API and SQL on
the server's PostgreSQL is found and named, and a server that is down loses no record (pending,
then delivered in order)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbops.tracking import audit, audit_shared
from tests.conftest import nbops_cli
from tests.team.conftest import own_server
from tests.team.servers import MlflowServer, Postgres, request


@pytest.fixture
def server(postgres: Postgres, tmp_path: Path) -> Iterator[MlflowServer]:
    s = own_server(postgres, tmp_path / "srv")
    try:
        yield s
    finally:
        s.stop()


def _project(root: Path, server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    (root / ".nbops").mkdir(parents=True)
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.chdir(root)
    return root


def _db(server: MlflowServer) -> str:
    return server.backend_uri.rsplit("/", 1)[1]


def _runs(postgres: Postgres, server: MlflowServer) -> dict[int, str]:
    """seq -> run id of the trail's runs, from the database itself."""
    out = postgres.psql(
        "SELECT p.value, p.run_uuid FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
        "JOIN experiments e ON e.experiment_id = r.experiment_id "
        "WHERE e.name = 'nbops-audit' AND p.key = 'seq'",
        database=_db(server),
    )
    return {int(v): rid for v, rid in (ln.split("|") for ln in out.splitlines() if ln)}


def _record_param(postgres: Postgres, server: MlflowServer, run_id: str) -> str:
    return postgres.psql(
        f"SELECT value FROM params WHERE run_uuid = '{run_id}' AND key = 'record'",
        database=_db(server),
    ).strip()


def _set_param(postgres: Postgres, server: MlflowServer, run_id: str, key: str, v: str) -> None:
    postgres.psql(
        f"UPDATE params SET value = $v${v}$v$ WHERE run_uuid = '{run_id}' AND key = '{key}'",
        database=_db(server),
    )


def _hard_delete(postgres: Postgres, server: MlflowServer, run_id: str) -> None:
    tables = ("params", "tags", "latest_metrics", "metrics")
    sql = "; ".join(f"DELETE FROM {t} WHERE run_uuid = '{run_id}'" for t in tables)
    postgres.psql(sql + f"; DELETE FROM runs WHERE run_uuid = '{run_id}'", database=_db(server))


def _verify(root: Path) -> tuple[int, list[str]]:
    r = nbops_cli("audit", "--verify", cwd=root)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stderr.strip().splitlines() + r.stdout.strip().splitlines()


def test_edits_deletions_and_removals_on_the_server_are_named(
    postgres: Postgres, server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "a", server, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    sealed = [audit.record("promote", model="wine", version=str(i)) for i in range(1, 7)]
    assert [r["seq"] for r in sealed] == [1, 2, 3, 4, 5, 6]  # one project: one chain
    assert sealed[0]["prev"] == [] and all(
        b["prev"] == [a["hash"]] for a, b in zip(sealed, sealed[1:], strict=False)
    )
    assert not (root / ".nbops" / "audit.jsonl").exists()  # the server holds it, not a file
    code, out = _verify(root)
    assert code == 0 and "shared audit trail intact: 6 records by 1 user@host" in out[-1], out
    listed = nbops_cli("audit", cwd=root).stdout.splitlines()
    assert listed[0].split()[:5] == ["SEQ", "WHEN", "(UTC)", "WHO", "HOST"]
    assert "carol" in listed[3] and "version=3" in listed[3]
    runs = _runs(postgres, server)
    assert sorted(runs) == [1, 2, 3, 4, 5, 6]

    # an edited param (SQL): named by its run, and fine again once put back
    original = _record_param(postgres, server, runs[3])
    _set_param(postgres, server, runs[3], "record", original.replace('"wine"', '"evil"'))
    code, out = _verify(root)
    assert code == 1
    assert (
        f"run {runs[3]} (record 3): record 3's content does not match its hash (edited)"
        in (out[-1])
    )
    _set_param(postgres, server, runs[3], "record", original)
    assert _verify(root)[0] == 0

    # deleted through MLflow's REST API, then marked deleted in SQL: both named, restorable
    request(server.url, "POST", "/api/2.0/mlflow/runs/delete", {"run_id": runs[2]})
    code, out = _verify(root)
    assert code == 1 and f"run {runs[2]} (record 2): record 2 (promote by carol@" in out[-1]
    assert "was deleted (its run is marked deleted)" in out[-1]
    assert f"mlflow runs restore --run-id {runs[2]}" in out[-1]
    listed_ids = [r.get("version") for r in audit.select()]
    assert listed_ids == ["1", "3", "4", "5", "6"]  # a deleted record is not listed
    request(server.url, "POST", "/api/2.0/mlflow/runs/restore", {"run_id": runs[2]})
    postgres.psql(
        f"UPDATE runs SET lifecycle_stage = 'deleted' WHERE run_uuid = '{runs[4]}'",
        database=_db(server),
    )
    code, out = _verify(root)
    assert code == 1 and f"run {runs[4]} (record 4)" in out[-1] and "deleted" in out[-1]
    postgres.psql(
        f"UPDATE runs SET lifecycle_stage = 'active' WHERE run_uuid = '{runs[4]}'",
        database=_db(server),
    )
    assert _verify(root)[0] == 0

    # a forged record that recomputes its own hash breaks the link of the record after it
    forged = json.loads(original)
    forged["model"] = "evil"
    forged["hash"] = audit.digest(forged)
    _set_param(postgres, server, runs[3], "record", audit_shared.canonical(forged))
    _set_param(postgres, server, runs[3], "hash", forged["hash"])
    code, out = _verify(root)
    assert code == 1
    assert f"run {runs[4]} (record 3): record 4 (promote by carol@" in out[-1]
    assert (
        f"names the record {sealed[2]['hash'][:12]} before it, which is not on the trail"
        in (out[-1])
    )
    _set_param(postgres, server, runs[3], "record", original)
    _set_param(postgres, server, runs[3], "hash", sealed[2]["hash"])
    assert _verify(root)[0] == 0

    # removed from the database: a middle record is named by the record after it; the newest
    # (no record names it) by this project's witness and by the writer's tag on the server
    _hard_delete(postgres, server, runs[5])
    code, out = _verify(root)
    assert code == 1
    assert f"run {runs[6]} (record 5): record 6 (promote by carol@" in out[-1]
    assert (
        f"names the record {sealed[4]['hash'][:12]} before it, which is not on the trail"
        in (out[-1])
    )
    _hard_delete(postgres, server, runs[6])
    code, out = _verify(root)
    assert code == 1
    assert out[-1].endswith(
        f"audit.shared.json (record 6): record 6 ({sealed[5]['hash'][:12]}), the last record "
        "this project appended, is not on the trail (removed; the newest record on it is record 4)"
    )
    also = [ln for ln in out if ln.startswith("nbops audit: also: tag nbops.audit.head.")]
    assert len(also) == 1 and "(record 6): record 6" in also[0]
    assert "the last record carol@" in also[0]


def test_a_server_that_is_down_loses_no_record_and_a_lost_answer_is_not_sent_twice(
    postgres: Postgres, server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "b", server, monkeypatch)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    first = audit.record("schedule.add", schedule="nightly")
    assert first["seq"] == 1 and first["who"] == audit.user()
    server.kill()
    try:
        queued = [audit.record("schedule.run", schedule="nightly", n=i) for i in (1, 2)]
        assert all("hash" not in r for r in queued)  # kept, not sealed yet
        assert [r["n"] for r in audit_shared.pending(root)] == [1, 2]
        down = nbops_cli("audit", cwd=root)
        assert down.returncode == 1 and "Traceback" not in down.stderr
        assert "2 record(s) still wait in .nbops/audit.pending.jsonl" in down.stderr
        assert server.url.split("//")[1] in down.stderr
    finally:
        server.start()
    synced = nbops_cli("sync", cwd=root)  # nbops sync sends what waits, as the README says
    assert synced.returncode == 0, synced.stderr
    assert "delivered 2 pending audit record(s)" in synced.stdout
    assert not audit_shared.pending_path(root).exists()
    up = nbops_cli("audit", "--action", "schedule", cwd=root)
    assert up.returncode == 0, up.stderr
    recs = audit.select()
    assert [(r["seq"], r["action"], r.get("n")) for r in recs] == [
        (1, "schedule.add", None),
        (2, "schedule.run", 1),
        (3, "schedule.run", 2),
    ]
    assert recs[1]["ts"] < recs[2]["ts"] and recs[1]["id"] == queued[0]["id"]  # as recorded

    # a delivery whose answer is lost (the run was made, the client saw an error): kept
    # pending, then found on the server by its id and not appended a second time
    from nbops.mlflow import audit_store

    real = audit_store.AuditStore.append

    def lost_answer(self: audit_store.AuditStore, *a: object, **kw: object) -> str:
        real(self, *a, **kw)  # type: ignore[arg-type]
        raise ConnectionError("read timed out")

    monkeypatch.setattr(audit_store.AuditStore, "append", lost_answer)
    lost = audit.record("promote", model="wine")
    assert "hash" not in lost and len(audit_shared.pending(root)) == 1
    monkeypatch.setattr(audit_store.AuditStore, "append", real)
    after = audit.record("rollback", model="wine")
    assert after["seq"] == 5 and not audit_shared.pending_path(root).exists()
    recs = audit.select()
    assert [r["action"] for r in recs] == [
        "schedule.add",
        "schedule.run",
        "schedule.run",
        "promote",
        "rollback",
    ]
    assert recs[3]["id"] == lost["id"]
    code, out = _verify(root)
    assert code == 0 and "5 records" in out[-1], out
