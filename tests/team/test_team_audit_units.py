"""The shared audit trail's pure parts, without a server: which stores are shared, the files it
keeps under .nbops/ (whatever they hold), how heads are found in a DAG, and what a record sent to
a server that is not there becomes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbops.errors import InvalidInput
from nbops.mlflow.audit_store import StoredRecord, chunks
from nbops.tracking import audit, audit_shared


@pytest.mark.parametrize(
    ("uri", "shared"),
    [
        ("http://127.0.0.1:5000", True),
        ("HTTPS://mlflow.example.com/", True),
        ("postgresql://u@db/mlflow", True),
        ("postgresql+psycopg://u@db/mlflow", True),
        ("mysql+pymysql://u@db/mlflow", True),
        ("sqlite:////work/proj/.nbops/mlflow.db", False),
        ("file:///tmp/mlruns", False),
        ("/tmp/mlruns", False),
        ("databricks", False),
        ("", False),
    ],
)
def test_only_a_server_or_database_server_store_is_shared(uri: str, shared: bool) -> None:
    assert audit_shared.is_shared(uri) is shared


def test_a_server_is_keyed_and_named_without_its_password() -> None:
    assert audit_shared.server_key("http://ana:s3cret@h:5000/x") == "http://h:5000/x"
    assert audit_shared.server_key("http://h:5000") == "http://h:5000"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_pending_and_witness_files_holding_anything_never_break_reading(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    root = tmp_path_factory.mktemp("p")
    (root / ".nbops").mkdir()
    (root / ".nbops" / audit_shared.PENDING_NAME).write_bytes(raw)
    (root / ".nbops" / audit_shared.WITNESS_NAME).write_bytes(raw)
    for rec in audit_shared.pending(root):
        assert isinstance(rec["id"], str) and rec["action"]
    got = audit_shared.local_witness("http://h:1", root)
    assert got is None or isinstance(got["hash"], str)


def _sealed(seq: int, prev: list[str], n: int) -> dict[str, object]:
    rec: dict[str, object] = {"seq": seq, "action": "a", "n": n, "prev": sorted(prev)}
    rec["hash"] = audit.digest(rec)
    return rec


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 30))
def test_the_heads_are_the_records_no_record_names(seed: int, size: int) -> None:
    rnd = random.Random(seed)
    recs: list[dict[str, object]] = []
    for n in range(size):  # each record names a random set of earlier ones (a DAG)
        parents = rnd.sample(recs, k=min(len(recs), rnd.randint(0, 3)))
        seq = 1 + max((int(str(p["seq"])) for p in parents), default=0)
        recs.append(_sealed(seq, [str(p["hash"]) for p in parents], n))
    stored = [
        StoredRecord(f"r{i}", False, audit_shared.canonical(r), str(r["hash"]), int(str(r["seq"])))
        for i, r in enumerate(recs)
    ]
    named = {p for r in recs for p in r["prev"]}  # type: ignore[attr-defined]
    expect = sorted(str(r["hash"]) for r in recs if r["hash"] not in named)
    prev, base = audit_shared.heads(stored)
    assert prev == expect
    assert base == max(int(str(r["seq"])) for r in recs if r["hash"] not in named)
    # an edited head is not named by the next record (verify reports the edit itself)
    edited = json.loads(stored[-1].text or "")
    edited["n"] = -1
    tampered = [*stored[:-1], StoredRecord("x", False, json.dumps(edited), stored[-1].hash, 1)]
    assert str(recs[-1]["hash"]) not in audit_shared.heads(tampered)[0]


def test_a_long_record_is_cut_into_params_and_joined_back() -> None:
    text = "x" * 6000 + "y" * 6000 + "z"
    parts = chunks(text)
    assert [len(p) for p in parts] == [6000, 6000, 1] and "".join(parts) == text


def test_records_for_a_server_that_is_not_there_wait_in_order_and_a_huge_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.team.servers import free_port

    (tmp_path / ".nbops").mkdir()
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dora")
    with pytest.raises(InvalidInput, match="audit record 'promote' is 500127 characters"):
        audit.record("promote", blob="b" * 500_000)
    got = [audit.record("promote", model="wine", n=i) for i in range(3)]
    assert all("hash" not in r and r["who"] == "dora" for r in got)
    assert [r["n"] for r in audit_shared.pending(tmp_path)] == [0, 1, 2]
    assert not (tmp_path / ".nbops" / "audit.jsonl").exists()  # never the local log
    done = audit_shared.flush(tmp_path)
    assert done.left == 3 and not done.sent and "127.0.0.1" in str(done.error)
    assert [r["id"] for r in audit_shared.pending(tmp_path)] == [r["id"] for r in got]
