"""A direct bulk write of metrics, params and tags into the embedded store's SQLite schema.

MLflow's ``log_batch`` on SQLite builds an ORM object per value and takes at most 1,000 metrics
per request: ~10k values/s here. :class:`BulkWriter` writes the same rows with ``sqlite3`` in one
transaction per batch of any size (the writer sends tens of thousands at once), with MLflow
3.17's semantics (``SqlAlchemyStore.log_batch``) reproduced exactly:

* validation first, with MLflow's own validators (a metric key is checked once per process,
  values by type): the run id, every metric, then params and tags (a param value over 6,000
  characters or a tag value over 8,000 is truncated when MLflow truncates, refused otherwise),
  duplicate param keys in one batch refused;
* the run must exist (``RESOURCE_DOES_NOT_EXIST``) and be active, not deleted
  (``INVALID_PARAMETER_VALUE``); a finished run still takes values, as in MLflow;
* a param already logged with another value refuses the whole batch with MLflow's
  ``INVALID_PARAMETER_VALUE`` and message naming the key; the same value is a no-op;
* metrics: NaN is stored as value 0 with ``is_nan`` 1, +-inf as +-1.7976931348623157e308; a row
  equal to one stored (the table's primary key: key, timestamp, step, value, is_nan) is not
  stored twice; ``latest_metrics`` keeps, per key, the first row logged with the greatest
  (step, timestamp, value);
* tags: the last value of a key wins; ``mlflow.runName`` with a non-empty value also renames the
  run (``runs.name``), an empty one is ignored, as ``update_run_info`` does.

The schema guard: rows are written only when the database's ``alembic_version`` is in
:data:`nbops.mlflow.readers.sqlite.KNOWN_SCHEMA_REVISIONS`. Another revision, or an SQLite error
that is not a busy/locked database, makes :meth:`BulkWriter.log_batch` answer False (nothing
written: the transaction is rolled back) and the caller uses ``MlflowClient.log_batch``; the log
says so once per store. A busy database waits up to 30 s (the busy timeout, as nbops' other
SQLite connections) and then raises ``sqlite3.OperationalError`` ("database is locked"), which
is not a permanent error: the writer retries, the spool keeps the values.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nbops.tags import MLFLOW_RUN_NAME

log = logging.getLogger("nbops.mlflow")

MAX_FLOAT = 1.7976931348623157e308  # what MLflow stores for +inf (and its negative for -inf)
BUSY_TIMEOUT_S = 30.0
_KEY_CHUNK = 500  # keys per IN (...) query, as MLflow batches them

_INSERT_METRIC = (
    "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_LATEST = (
    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, run_uuid) DO UPDATE SET"
    " value = excluded.value, timestamp = excluded.timestamp, step = excluded.step,"
    " is_nan = excluded.is_nan"
)
_UPSERT_TAG = (
    "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)"
    " ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value"
)

MetricRow = tuple[str, float, int, int]  # key, value, step, timestamp (ms)


class _Unusable(Exception):
    """The store cannot take a direct write (its schema revision, an unexpected SQLite error)."""


def _mlflow_error(message: str, code: str) -> Exception:
    """MLflow's own error, with the code (``INVALID_PARAMETER_VALUE``, ...) MLflow uses."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException(message, error_code=databricks_pb2.ErrorCode.Value(code))


class BulkWriter:
    """Direct writes into one SQLite store, one connection per process (thread-safe)."""

    def __init__(self, db: Path, known_revisions: frozenset[str] | None = None) -> None:
        self.db = db
        self._known = known_revisions
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._pid = 0
        self.disabled: str | None = None  # why the direct path is off (said once in the log)
        self._good_keys: set[str] = set()

    # --- the one entry point ------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricRow] = (),
        params: Iterable[tuple[str, str]] = (),
        tags: Iterable[tuple[str, str]] = (),
    ) -> bool:
        """Write the batch in one transaction, as ``MlflowClient.log_batch`` would store it;
        True when written, False when this store must go through MLflow (nothing written).
        MLflow's errors (``MlflowException``) are raised as MLflow raises them."""
        params, tags = list(params), list(tags)
        if not metrics and not params and not tags:
            return True  # MlflowClient.log_batch returns at once: not even the run is read
        if self.disabled is not None:
            return False
        rows, params, tags = self._validated(run_id, metrics, params, tags)
        with self._lock:
            try:
                self._write(run_id, rows, params, tags)
            except _Unusable as exc:
                self._disable(str(exc))
                return False
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise  # not permanent: the writer retries, the spool keeps the values
                self._disable(f"SQLite error {exc}")
                return False
            except sqlite3.Error as exc:
                self._disable(f"SQLite error {exc}")
                return False
        return True

    def _disable(self, why: str) -> None:
        self.disabled = why
        self._close()
        log.warning(
            "nbops: tracking store %s: %s; writing metrics, params and tags through "
            "MlflowClient.log_batch (slower, same content)",
            self.db,
            why,
        )

    # --- validation: MLflow's validators, a metric key once --------------------------------------
    def _validated(
        self,
        run_id: str,
        metrics: Sequence[MetricRow],
        params: list[tuple[str, str]],
        tags: list[tuple[str, str]],
    ) -> tuple[list[tuple[str, float, int, int, int]], list[tuple[str, str]], list[Any]]:
        from mlflow.utils import validation as v

        v._validate_run_id(run_id)  # type: ignore[no-untyped-call]
        good = self._good_keys
        rows: list[tuple[str, float, int, int, int]] = []
        append = rows.append
        isnan, isinf = math.isnan, math.isinf
        for idx, (key, value, step, ts) in enumerate(metrics):
            if type(value) is not float:  # MlflowClient converts what it can to float
                value = _as_float(value)
            if (
                key not in good
                or type(value) is not float
                or type(ts) is not int
                or ts < 0
                or type(step) is not int
            ):
                v._validate_metric(key, value, ts, step, path=f"metrics[{idx}]")  # type: ignore[no-untyped-call]
                if len(good) < 100_000:
                    good.add(key)
            if isnan(value):
                append((key, 0.0, ts, step, 1))
            elif isinf(value):
                append((key, MAX_FLOAT if value > 0 else -MAX_FLOAT, ts, step, 0))
            else:
                append((key, value, ts, step, 0))
        checked_params = [
            (p.key, p.value)
            for p in (
                v._validate_param(k, str(val), path=f"params[{i}]")  # type: ignore[no-untyped-call]
                for i, (k, val) in enumerate(params)
            )
        ]
        checked_tags = [
            (t.key, t.value)
            for t in (
                v._validate_tag(k, val, path=f"tags[{i}]")  # type: ignore[no-untyped-call]
                for i, (k, val) in enumerate(tags)
            )
        ]
        seen: set[str] = set()
        dupes = []
        for k, _ in checked_params:
            if k in seen:
                dupes.append(k)
            seen.add(k)
        if dupes:
            raise _mlflow_error(
                f"Duplicate parameter keys have been submitted: {dupes}. Please ensure "
                "the request contains only one param value per param key.",
                "INVALID_PARAMETER_VALUE",
            )
        return rows, checked_params, checked_tags

    # --- the transaction ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():
            if not self.db.is_file():
                raise _Unusable("the database file does not exist yet")
            self._con = sqlite3.connect(
                str(self.db), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._pid = os.getpid()
        return self._con

    def _close(self) -> None:
        if self._con is not None and self._pid == os.getpid():
            try:
                self._con.close()
            except sqlite3.Error:
                pass
        self._con = None

    def _known_revisions(self) -> frozenset[str]:
        if self._known is None:
            from nbops.mlflow.readers.sqlite import KNOWN_SCHEMA_REVISIONS

            self._known = KNOWN_SCHEMA_REVISIONS
        return self._known

    def _write(
        self,
        run_id: str,
        rows: list[tuple[str, float, int, int, int]],
        params: list[tuple[str, str]],
        tags: list[tuple[str, str]],
    ) -> None:
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")  # the write lock first: no upgrade deadlock with others
        try:
            self._check_schema(con)
            self._check_run(con, run_id)
            if params:
                self._params(con, run_id, params)
            if rows:
                self._metrics(con, run_id, rows)
            if tags:
                self._tags(con, run_id, tags)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def _check_schema(self, con: sqlite3.Connection) -> None:
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise
            row = None
        revision = str(row[0]) if row else None
        known = self._known_revisions()
        if revision not in known:
            raise _Unusable(
                f"MLflow schema revision {revision}, which the direct bulk write was not "
                f"written for (it knows {', '.join(sorted(known))})"
            )

    def _check_run(self, con: sqlite3.Connection, run_id: str) -> None:
        found = con.execute(
            "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)
        ).fetchall()
        if not found:
            raise _mlflow_error(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        stage = found[0][0]
        if stage != "active":
            raise _mlflow_error(
                f"The run {run_id} must be in the 'active' state. Current state is {stage}.",
                "INVALID_PARAMETER_VALUE",
            )

    def _params(self, con: sqlite3.Connection, run_id: str, params: list[tuple[str, str]]) -> None:
        existing = dict(
            con.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall()
        )
        new, changed = [], []
        for key, value in params:
            if key in existing:
                if value != existing[key]:
                    changed.append({"key": key, "old_value": existing[key], "new_value": value})
                continue
            new.append((key, value, run_id))
        if changed:
            raise _mlflow_error(
                "Changing param values is not allowed. Params were already"
                f" logged='{changed}' for run ID='{run_id}'.",
                "INVALID_PARAMETER_VALUE",
            )
        if new:
            con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", new)

    def _metrics(
        self, con: sqlite3.Connection, run_id: str, rows: list[tuple[str, float, int, int, int]]
    ) -> None:
        con.executemany(
            _INSERT_METRIC,
            [(key, value, ts, run_id, step, nan) for key, value, ts, step, nan in rows],
        )
        # latest_metrics: per key, the first row with the greatest (step, timestamp, value)
        latest: dict[str, tuple[int, int, float, int]] = {}
        keys = sorted({r[0] for r in rows})
        for i in range(0, len(keys), _KEY_CHUNK):
            chunk = keys[i : i + _KEY_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for key, value, ts, step, nan in con.execute(
                "SELECT key, value, timestamp, step, is_nan FROM latest_metrics"
                f" WHERE run_uuid = ? AND key IN ({marks})",
                (run_id, *chunk),
            ):
                latest[key] = (step, ts, value, nan)
        changed: dict[str, tuple[int, int, float, int]] = {}
        for key, value, ts, step, nan in rows:
            cur = changed.get(key) or latest.get(key)
            if cur is None or (step, ts, value) > cur[:3]:
                changed[key] = (step, ts, value, nan)
        con.executemany(
            _UPSERT_LATEST,
            [
                (key, value, ts, step, nan, run_id)
                for key, (step, ts, value, nan) in changed.items()
            ],
        )

    def _tags(self, con: sqlite3.Connection, run_id: str, tags: list[tuple[str, str]]) -> None:
        final: dict[str, str] = {}
        name: str | None = None
        for key, value in tags:
            if key == MLFLOW_RUN_NAME:
                if not value:
                    continue  # update_run_info ignores an empty name: no tag either
                name = value
            final[key] = value
        if name is not None:
            con.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", (name, run_id))
        con.executemany(_UPSERT_TAG, [(k, val, run_id) for k, val in final.items()])


def _as_float(value: Any) -> float:
    """What MlflowClient.log_batch stores for a non-float value (an int: its float)."""
    from mlflow.tracking.metric_value_conversion_utils import (
        convert_metric_value_to_float_if_possible,
    )

    converted: float = convert_metric_value_to_float_if_possible(value)
    return converted


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


__all__ = ["BulkWriter", "MAX_FLOAT"]
