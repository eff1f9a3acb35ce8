"""The direct bulk write into the embedded store stores what MlflowClient.log_batch stores.

Every comparison writes the same batches into a run of a store written by nbops (the facade,
which takes the direct path on SQLite) and into a run of another fresh store written by
``MlflowClient.log_batch``, then reads both databases' rows back with SQL.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nbops.mlflow import bulk
from nbops.mlflow.failures import error_code, is_permanent
from nbops.mlflow.store import MAX_METRICS, TrackingStore

Metric = tuple[str, float, int, int]  # key, value, step, timestamp


@dataclass
class Pair:
    ours: TrackingStore
    ours_db: Path
    ref: Any  # MlflowClient on the reference store
    ref_db: Path

    def runs(self) -> tuple[str, str]:
        """A fresh run in each store, named alike."""
        eid_ours = self.ours.experiment_id("bulk")
        mine = self.ours.create_run(eid_ours, 1000, "r", {})
        exp = self.ref.get_experiment_by_name("bulk")
        eid_ref = exp.experiment_id if exp else self.ref.create_experiment("bulk")
        theirs = self.ref.create_run(eid_ref, start_time=1000, run_name="r").info.run_id
        return mine, str(theirs)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    ours_db = tmp_path_factory.mktemp("ours") / "mlflow.db"
    ref_db = tmp_path_factory.mktemp("ref") / "mlflow.db"
    return Pair(
        TrackingStore(f"sqlite:///{ours_db}"), ours_db, _client(f"sqlite:///{ref_db}"), ref_db
    )


def ref_log(ref: Any, run_id: str, metrics: list[Metric], params: Any, tags: Any) -> None:
    from mlflow.entities import Metric as M
    from mlflow.entities import Param, RunTag

    ref.log_batch(
        run_id,
        metrics=[M(k, v, ts, step) for k, v, step, ts in metrics],
        params=[Param(k, v) for k, v in params],
        tags=[RunTag(k, v) for k, v in tags],
        synchronous=True,
    )


def _exact(x: Any) -> Any:
    """A float as its bits (-0.0 is not 0.0 here), anything else as is."""
    return struct.pack(">d", x) if isinstance(x, float) else x


def content(db: Path, run_id: str) -> dict[str, Any]:
    con = sqlite3.connect(str(db))
    try:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(_exact(x) for x in r) for r in con.execute(sql, (run_id,))]

        return {
            "metrics": Counter(
                rows("SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ?")
            ),
            "latest": sorted(
                rows(
                    "SELECT key, value, timestamp, step, is_nan FROM latest_metrics"
                    " WHERE run_uuid = ?"
                )
            ),
            "params": sorted(rows("SELECT key, value FROM params WHERE run_uuid = ?")),
            "tags": sorted(rows("SELECT key, value FROM tags WHERE run_uuid = ?")),
            "run": rows("SELECT name, status, lifecycle_stage FROM runs WHERE run_uuid = ?"),
        }
    finally:
        con.close()


def outcome(fn: Any) -> tuple[str, str | None] | None:
    """None when ``fn`` succeeds; else the error's class and MLflow code."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return type(exc).__name__, error_code(exc)
    return None


def assert_equal_content(pair: Pair, mine: str, theirs: str) -> None:
    ours, ref = content(pair.ours_db, mine), content(pair.ref_db, theirs)
    assert ours == ref


# --- the property ---------------------------------------------------------------------------
KEYS = ["a", "b", "loss/train", "m 1:x"]
SPECIAL = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, bulk.MAX_FLOAT]
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**53), 2**53),
)
steps = st.one_of(st.integers(-2, 2), st.integers(-(2**63), 2**63 - 1))
stamps = st.one_of(st.integers(0, 2), st.integers(0, 2**62))
metric = st.tuples(st.sampled_from(KEYS), values, steps, stamps)
tag_keys = st.sampled_from(["t", "u/v", "mlflow.runName", "mlflow.note.content"])
batch = st.tuples(
    st.lists(metric, max_size=40),
    st.dictionaries(st.sampled_from(["p", "q", "r/s"]), st.sampled_from(["1", "2", "x" * 7000])),
    st.lists(st.tuples(tag_keys, st.sampled_from(["", "v", "w", "y" * 9000])), max_size=4),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(batch, min_size=1, max_size=4))
# ties of (step, timestamp, value) that differ in is_nan or sign: the first logged stays latest
@example(batches=[([("a", math.nan, 1, 2), ("a", 0.0, 1, 2), ("a", -0.0, 1, 2)], {}, [])])
@example(
    batches=[([("a", -0.0, 1, 2)], {}, []), ([("a", 0.0, 1, 2), ("a", math.nan, 1, 2)], {}, [])]
)
def test_bulk_writes_the_rows_log_batch_writes(pair: Pair, batches: list[Any]) -> None:
    """Same metrics (as a multiset), latest_metrics, params, tags and run name, and the same
    error (class and code) for a batch MLflow refuses (a param changed to another value)."""
    mine, theirs = pair.runs()
    for metrics, params, tags in batches:
        p, t = sorted(params.items()), list(tags)
        expected = outcome(lambda m=metrics, p=p, t=t: ref_log(pair.ref, theirs, m, p, t))
        got = outcome(lambda m=metrics, p=p, t=t: pair.ours.log_batch(mine, m, p, t))
        assert got == expected
    assert pair.ours.max_batch_metrics > MAX_METRICS  # the direct path took them all
    assert_equal_content(pair, mine, theirs)


def test_a_batch_larger_than_mlflows_request_limits_is_stored_alike(pair: Pair) -> None:
    mine, theirs = pair.runs()
    metrics = [(f"k{i % 7}", i * 0.25, i // 3, 1000 + i % 11) for i in range(5000)]
    params = [(f"p{i}", str(i)) for i in range(150)]
    tags = [(f"t{i}", "v" * i) for i in range(150)]
    pair.ours.log_batch(mine, metrics, params, tags)
    ref_log(pair.ref, theirs, metrics, params, tags)
    assert_equal_content(pair, mine, theirs)
    assert len(content(pair.ours_db, mine)["metrics"]) == 5000


# --- errors as MLflow's ---------------------------------------------------------------------
def test_a_changed_param_is_mlflows_invalid_parameter_value_naming_the_key(pair: Pair) -> None:
    mine, theirs = pair.runs()
    pair.ours.log_batch(mine, params=[("lr", "0.1")])
    ref_log(pair.ref, theirs, [], [("lr", "0.1")], [])
    with pytest.raises(Exception) as ours:
        pair.ours.log_batch(mine, [("m", 1.0, 0, 5)], [("lr", "0.2")], [("t", "v")])
    with pytest.raises(Exception) as ref:
        ref_log(pair.ref, theirs, [("m", 1.0, 0, 5)], [("lr", "0.2")], [("t", "v")])
    assert type(ours.value) is type(ref.value)
    assert error_code(ours.value) == error_code(ref.value) == "INVALID_PARAMETER_VALUE"
    assert "lr" in str(ours.value) and is_permanent(ours.value)
    assert_equal_content(pair, mine, theirs)  # nothing of the refused batch is stored


def test_a_deleted_run_is_refused_and_a_finished_one_takes_values_as_in_mlflow(
    pair: Pair,
) -> None:
    for change in ("delete_run", "set_terminated"):
        mine, theirs = pair.runs()
        getattr(_client(f"sqlite:///{pair.ours_db}"), change)(mine)
        getattr(pair.ref, change)(theirs)
        batch = ([("m", 2.0, 1, 7)], [("p", "1")], [("t", "v")])
        got = outcome(lambda r=mine, b=batch: pair.ours.log_batch(r, *b))
        expected = outcome(lambda r=theirs, b=batch: ref_log(pair.ref, r, *b))
        assert got == expected
        assert (got is None) == (change == "set_terminated")
        assert_equal_content(pair, mine, theirs)


def test_an_unknown_run_is_mlflows_does_not_exist(pair: Pair) -> None:
    missing = "0" * 32
    got = outcome(lambda: pair.ours.log_batch(missing, [("m", 1.0, 0, 1)]))
    expected = outcome(lambda: ref_log(pair.ref, missing, [("m", 1.0, 0, 1)], [], []))
    assert got == expected == ("MlflowException", "RESOURCE_DOES_NOT_EXIST")


# --- the guard, the fallback, a locked database ---------------------------------------------
def test_an_unknown_schema_revision_goes_through_mlflow_and_says_so_once(
    tmp_path: Path, pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from nbops.mlflow.readers import sqlite as readers_sqlite

    monkeypatch.setattr(readers_sqlite, "KNOWN_SCHEMA_REVISIONS", frozenset({"0123456789ab"}))
    db = tmp_path / "mlflow.db"
    store = TrackingStore(f"sqlite:///{db}")
    mine = store.create_run(store.experiment_id("bulk"), 1000, "r", {})
    _, theirs = pair.runs()
    batches = [
        ([("a", math.nan, 1, 2), ("a", 0.0, 1, 2), ("b", math.inf, -1, 0)], [("p", "1")], []),
        ([("a", 3.0, 0, 9), ("a", 0.0, 1, 2)], [], [("mlflow.runName", "renamed")]),
    ]
    with caplog.at_level(logging.WARNING, logger="nbops.mlflow"):
        for metrics, params, tags in batches:
            store.log_batch(mine, metrics, params, tags)
            ref_log(pair.ref, theirs, metrics, params, tags)
    said = [r for r in caplog.records if "schema revision" in r.getMessage()]
    assert len(said) == 1 and "0123456789ab" in said[0].getMessage()
    assert store.max_batch_metrics == MAX_METRICS
    ours = content(db, mine)
    assert ours == content(pair.ref_db, theirs)


def test_a_locked_database_waits_then_is_a_retryable_error(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BUSY_TIMEOUT_S", 0.2)
    writer = bulk.BulkWriter(pair.ours_db)
    mine, _ = pair.runs()
    other = sqlite3.connect(str(pair.ours_db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        t = time.monotonic()
        with pytest.raises(sqlite3.OperationalError) as locked:
            writer.log_batch(mine, [("m", 1.0, 0, 1)])
        assert time.monotonic() - t >= 0.15  # it waited for the lock first
        assert "locked" in str(locked.value) and not is_permanent(locked.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert writer.disabled is None
    assert writer.log_batch(mine, [("m", 1.0, 0, 1)]) is True


# --- delivery: item by item after a refusal; end to end ---------------------------------------
def test_delivery_notes_a_refused_param_and_delivers_everything_else(tmp_path: Path) -> None:
    from nbops.tracking import spool as records
    from nbops.tracking.delivery import Delivery

    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    sp = records.Spool.create(tmp_path / "s")
    sp.append(records.Start({"experiment": "e", "start_ms": 1000, "tags": {}, "params": {}}))
    sp.append(records.Param("lr", "0.1"))
    d = Delivery(records.Spool(sp.dir), store)
    d.pump()
    sp.append(records.Param("lr", "0.2"))
    for i in range(30_000):
        sp.append(records.Metric("loss", 1.0 / (i + 1), i, 2000 + i))
    sp.append(records.Tag("t", "v"))
    d.pump()
    assert len(d.dropped) == 1 and d.dropped[0].startswith("param lr")
    assert d.run_id is not None
    assert len(store.metric_history(d.run_id, "loss")) == 30_000
    run = store.get_run(d.run_id)
    assert run.data.params == {"lr": "0.1"} and run.data.tags["t"] == "v"


@pytest.fixture
def ended_run(project: Path) -> Iterator[tuple[str, str]]:
    import nbops

    run = nbops.start_run("bulk-e2e")
    for i in range(20_000):
        nbops.log_metric("v", i * 0.5, step=i)
    assert nbops.end_run()
    yield run.uri, run.id


def test_twenty_thousand_logged_values_all_reach_the_store(ended_run: tuple[str, str]) -> None:
    uri, run_id = ended_run
    client = _client(uri)
    history = client.get_metric_history(run_id, "v")
    assert sorted((m.step, m.value) for m in history) == [(i, i * 0.5) for i in range(20_000)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["v"] == 19_999 * 0.5
