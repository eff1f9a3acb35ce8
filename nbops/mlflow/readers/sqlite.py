"""The fast read path: read-only SQL on MLflow's SQLite schema (runs, params, latest_metrics,
metrics, tags, experiments), one connection per worker thread, opened ``mode=ro``.

Queries it cannot translate (see sqlfilter.py) go to the MlflowClient path it wraps, so the
answer is the same either way; only the time differs. So does everything when the store's schema
revision (``alembic_version``) is not one of :data:`KNOWN_SCHEMA_REVISIONS`, the revisions this
SQL was written and tested against: after an MLflow upgrade that changes its tables, the panel
is slower, never wrong. The log says so once per store.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbops.errors import NotFound
from nbops.mlflow.readers import bounds as limits
from nbops.mlflow.readers import models as m
from nbops.mlflow.readers.base import (
    SUMMARY_TAGS,
    Page,
    Reader,
    RunInfo,
    decode_token,
    encode_token,
    finite,
    query_digest,
    summarize,
)
from nbops.mlflow.readers.sqlfilter import Untranslatable, translate

KNOWN_SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
"""MLflow schema revisions (``alembic_version.version_num``) the SQL below reads directly.
``dc11669786a5`` is the head of MLflow 3.17. Add a revision only after the reader tests pass on
a store at that revision (tests/integration/test_readers_schema.py fails when the installed
MLflow's head is not listed here)."""

log = logging.getLogger("nbops.server")

_CHUNK = 500  # ids per IN (...) list: under SQLite's variable limit
_NEWEST_MAX = 2000  # the newest-rows shortcut serves pages up to this far down
_SLACK = 64  # extra newest rows read, so a few runs started out of insertion order still fit


class SqliteReader(Reader):
    source = "sqlite"

    def __init__(
        self,
        db: Path,
        fallback: Callable[[], Reader],
        known_revisions: frozenset[str] = KNOWN_SCHEMA_REVISIONS,
    ) -> None:
        self.db = db
        self.fallback = fallback
        self.known_revisions = known_revisions
        self._direct: bool | None = None  # None: the schema revision is not read yet
        self._local = threading.local()
        self._cache_lock = threading.Lock()
        self._watch: sqlite3.Connection | None = None
        self._version: int | None = None
        self._shared: dict[Any, Any] = {}
        self._schema_checked = False

    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            if not self.db.is_file():
                self.fallback()  # MLflow creates the schema of a store nobody has written to yet
            if not self._schema_checked:
                # never read a store mid-creation: wait for (or finish) its schema, one process
                # at a time; SchemaRefused (a StoreUnavailable) is a 503 naming the file
                from nbops.mlflow.schema import ensure_schema

                ensure_schema(f"sqlite:///{self.db}")
                self._schema_checked = True
            con = sqlite3.connect(
                f"file:{quote(str(self.db))}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
            self._local.con = con
        return con

    def direct(self) -> bool:
        """Whether this store's tables are read with SQL here (its schema revision is known);
        else every read goes to the MlflowClient path. Decided once per reader, after the
        schema is made current."""
        if self._direct is None:
            try:
                row = self.con().execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:  # no such table: not a schema MLflow stamped
                row = None
            revision = str(row[0]) if row else None
            known = revision in self.known_revisions
            if not known:
                log.warning(
                    "nbops: tracking store %s has MLflow schema revision %s, which the direct SQL "
                    "reader was not written for (it knows %s): reading it through MlflowClient",
                    self.db,
                    revision,
                    ", ".join(sorted(self.known_revisions)),
                )
            self._direct = known
        return self._direct

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con().execute(sql, list(args)).fetchall()

    def _chunked(
        self, sql: str, ids: list[str], extra: Sequence[Any] = ()
    ) -> Iterable[tuple[Any, ...]]:
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            yield from self._rows(sql.format(ids=marks), [*part, *extra])

    # --- experiments ---------------------------------------------------------------------------
    def experiments(self) -> list[m.Experiment]:
        if not self.direct():
            return self.fallback().experiments()
        cache = self._cache()
        if "experiments" not in cache:
            cache["experiments"] = self._experiments()
        return list(cache["experiments"])

    def _experiments(self) -> list[m.Experiment]:
        rows = self._rows(
            "SELECT e.experiment_id, e.name, COUNT(r.run_uuid), MAX(r.start_time)"
            " FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.experiment_id"
            " AND r.lifecycle_stage = 'active'"
            " WHERE e.lifecycle_stage = 'active' GROUP BY e.experiment_id, e.name"
            " ORDER BY e.experiment_id"
        )
        return [
            m.Experiment(experiment_id=str(i), name=n, run_count=c, last_run_time=t)
            for i, n, c, t in rows
        ]

    def experiment_names(self) -> list[tuple[str, str]]:
        if not self.direct():
            return self.fallback().experiment_names()
        rows = self._rows(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"
            " ORDER BY experiment_id"
        )
        return [(str(i), n) for i, n in rows]

    # --- runs ----------------------------------------------------------------------------------
    def search(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
    ) -> Page:
        limits.search(filter_string, order_by, max_results)
        if not self.direct():
            return self.fallback().search(
                experiment_ids, filter_string, order_by, max_results, page_token
            )
        try:
            q = translate(filter_string, order_by)
        except Untranslatable:
            return self.fallback().search(
                experiment_ids, filter_string, order_by, max_results, page_token
            )
        digest = query_digest(experiment_ids, filter_string, order_by)
        offset: int = decode_token(page_token, digest, "o").get("o", 0)
        if not experiment_ids:
            return Page([], None, 0, [], [], self.source)
        exp_marks = ",".join("?" * len(experiment_ids))
        where = [f"r.experiment_id IN ({exp_marks})", "r.lifecycle_stage = 'active'", *q.where]
        where_sql = " AND ".join(where)
        exp_args = [int(e) if e.isdigit() else e for e in experiment_ids]
        sql = (
            f"SELECT r.run_uuid FROM runs r {' '.join(q.joins)} WHERE {where_sql}"
            f" ORDER BY {', '.join(q.order)} LIMIT ? OFFSET ?"
        )
        args = [*q.join_args, *exp_args, *q.where_args, max_results + 1, offset]
        cache = self._cache()
        page_key = ("page", sql, tuple(map(repr, args)))
        count_key = ("count", where_sql, tuple(map(repr, [*exp_args, *q.where_args])))
        if page_key not in cache:
            newest = None
            if not order_by and offset + max_results < _NEWEST_MAX:
                newest = self._newest_first(
                    where_sql, [*exp_args, *q.where_args], offset, max_results
                )
            if newest is not None:
                cache[page_key], cache[count_key] = newest
            else:
                cache[page_key] = [r[0] for r in self._rows(sql, args)]
        ids = list(cache[page_key])
        nxt = None
        if len(ids) > max_results:
            ids = ids[:max_results]
            nxt = encode_token(digest, o=offset + max_results)
        if count_key not in cache:
            cache[count_key] = self._rows(
                f"SELECT COUNT(*) FROM runs r WHERE {where_sql}", [*exp_args, *q.where_args]
            )[0][0]
        total = cache[count_key]
        keys_key = ("keys", tuple(exp_args))
        if keys_key not in cache:
            cache[keys_key] = (
                self._keys("params", exp_args),
                self._keys("latest_metrics", exp_args),
            )
        pkeys, mkeys = cache[keys_key]
        return Page(self._summaries(ids), nxt, total, list(pkeys), list(mkeys), self.source)

    def _newest_first(
        self, where_sql: str, args: list[Any], offset: int, limit: int
    ) -> tuple[list[str], int] | None:
        """The default order (start_time DESC, run_uuid) of an early page without sorting the
        table: runs are stored roughly in start order, so read the newest rows by rowid, order
        them here, and prove with one counting scan that no older row starts at or after the
        page's last start time (else None: the caller sorts in SQL). Returns (ids, total)."""
        need = offset + limit + 1
        cand = self._rows(
            f"SELECT r.rowid, r.start_time, r.run_uuid FROM runs r WHERE {where_sql}"
            " ORDER BY r.rowid DESC LIMIT ?",
            [*args, need + _SLACK],
        )
        # SQLite puts NULL last in DESC order; ties broken by run_uuid ascending
        cand.sort(key=lambda r: (r[1] is None, -(r[1] or 0), r[2]))
        if len(cand) < need + _SLACK:  # every matching run is here
            return [r[2] for r in cand[offset:need]], len(cand)
        last = cand[need - 1][1]
        if last is None:
            return None
        oldest = min(r[0] for r in cand)
        total, later = self._rows(
            "SELECT COUNT(*), COALESCE(SUM(r.rowid < ? AND (r.start_time >= ?"
            f" OR r.start_time IS NULL)), 0) FROM runs r WHERE {where_sql}",
            [oldest, last, *args],
        )[0]
        if later:
            return None
        return [r[2] for r in cand[offset:need]], total

    def _cache(self) -> dict[Any, Any]:
        """Answers (page ids, run counts, key lists) shared by the worker threads and kept until
        another process commits to the store: ``PRAGMA data_version`` of one connection that
        only watches (these connections never write, so every change is someone else's)."""
        with self._cache_lock:
            if self._watch is None:
                self.con()  # a store nobody has written to yet gets its schema first
                self._watch = sqlite3.connect(
                    f"file:{quote(str(self.db))}?mode=ro", uri=True, check_same_thread=False
                )
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version or len(self._shared) > 256:
                self._version, self._shared = version, {}
            return self._shared

    def forget(self) -> None:
        """Drop the cached answers (the next query sorts and counts anew)."""
        with self._cache_lock:
            self._shared = {}

    def _keys(self, table: str, exp_args: list[Any]) -> list[str]:
        """Param or metric keys used in the experiments. The distinct keys (few) come from a
        skip-scan of the (key, run_uuid) primary key, one index seek per key; each is then probed
        for a run of these experiments. Nothing reads every row of the table."""
        marks = ",".join("?" * len(exp_args))
        rows = self._rows(
            f"WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM {table} UNION ALL"
            f" SELECT (SELECT MIN(key) FROM {table} WHERE key > k.key) FROM k"
            " WHERE k.key IS NOT NULL)"
            " SELECT k.key FROM k WHERE k.key IS NOT NULL AND EXISTS (SELECT 1"
            f" FROM {table} e JOIN runs r ON r.run_uuid = e.run_uuid WHERE e.key = k.key"
            f" AND r.experiment_id IN ({marks}) AND r.lifecycle_stage = 'active')",
            exp_args,
        )
        return sorted(r[0] for r in rows)

    def _summaries(self, ids: list[str]) -> list[m.RunSummary]:
        if not ids:
            return []
        base = {
            r[0]: r
            for r in self._chunked(
                "SELECT run_uuid, name, experiment_id, status, start_time, end_time"
                " FROM runs WHERE run_uuid IN ({ids})",
                ids,
            )
        }
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        for rid, k, v in self._chunked(
            "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({ids})", ids
        ):
            params[rid][k] = v
        metrics: dict[str, dict[str, float | None]] = {i: {} for i in ids}
        for rid, k, v, nan in self._chunked(
            "SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({ids})", ids
        ):
            metrics[rid][k] = None if nan else finite(v)
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        marks = ",".join("?" * len(SUMMARY_TAGS))
        for rid, k, v in self._chunked(
            "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({ids})"
            f" AND key IN ({marks})",
            ids,
            SUMMARY_TAGS,
        ):
            tags[rid][k] = v
        out = []
        for i in ids:
            if i not in base:
                continue
            _, name, exp, status, start, end = base[i]
            out.append(summarize(i, name, exp, status, start, end, params[i], metrics[i], tags[i]))
        return out

    def summaries(self, run_ids: list[str]) -> list[m.RunSummary]:
        if not self.direct():
            return self.fallback().summaries(run_ids)
        found = {s.run_id: s for s in self._summaries(list(dict.fromkeys(run_ids)))}
        for rid in run_ids:
            if rid not in found:
                raise NotFound(f"run {rid} does not exist", "list runs with GET /nbops/api/runs")
        return [found[rid] for rid in run_ids]

    def run_info(self, run_id: str) -> RunInfo:
        if not self.direct():
            return self.fallback().run_info(run_id)
        rows = self._rows(
            "SELECT artifact_uri FROM runs WHERE run_uuid = ? AND lifecycle_stage = 'active'",
            [run_id],
        )
        if not rows:
            raise NotFound(f"run {run_id} does not exist", "list runs with GET /nbops/api/runs")
        summary = self._summaries([run_id])[0]
        tags = dict(self._rows("SELECT key, value FROM tags WHERE run_uuid = ?", [run_id]))
        return RunInfo(summary, dict(sorted(tags.items())), rows[0][0])

    def metric_history(self, run_id: str, key: str) -> list[m.MetricPoint]:
        if not self.direct():
            return self.fallback().metric_history(run_id, key)
        if not self._rows("SELECT 1 FROM runs WHERE run_uuid = ?", [run_id]):
            raise NotFound(f"run {run_id} does not exist", "list runs with GET /nbops/api/runs")
        rows = self._rows(
            "SELECT step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ?"
            " ORDER BY step, timestamp, value",
            [run_id, key],
        )
        return [
            m.MetricPoint(step=s, timestamp=t, value=None if nan else finite(v))
            for s, t, v, nan in rows
        ]

    def histories(self, run_ids: list[str]) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
        if not self.direct():
            return self.fallback().histories(run_ids)
        out: dict[str, dict[str, list[tuple[int, float | None]]]] = {}
        rows = self._chunked(
            "SELECT key, run_uuid, step, value, is_nan FROM metrics WHERE run_uuid IN ({ids})"
            " ORDER BY key, run_uuid, step, timestamp, value",
            list(dict.fromkeys(run_ids)),
        )
        for k, rid, step, v, nan in rows:
            out.setdefault(k, {}).setdefault(rid, []).append((step, None if nan else finite(v)))
        return {k: out[k] for k in sorted(out)}
