"""The direct read path, written once for both databases MLflow's SQL store runs on: read-only
SQL over MLflow's tables (runs, params, latest_metrics, metrics, tags, experiments).
:class:`~nbops.mlflow.readers.sqlite.SqliteReader` and
:class:`~nbops.mlflow.readers.postgres.PostgresReader` add the connection, the schema revision and
what is faster on their database; the queries (``?`` placeholders) are here.

Every public method answers through the MlflowClient path it wraps (``fallback``) when

- the store's schema revision is not one of the known ones (decided once, said once in the log);
- the filter or order is outside the translated subset (:class:`Untranslatable`);
- a run or experiment asked for is not one this reader may answer for (deleted, missing, or
  outside the experiments the MLflow server lets this user read: :class:`Outside`), so the
  client's own answer (its NotFound, its permission error) is the answer;
- the database fails (``db_errors``: a lost connection, a statement timeout), said once.

So the answer is the same either way; only the time differs.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nbops import tags as tag_names
from nbops.errors import NotFound
from nbops.mlflow.readers import bounds as limits
from nbops.mlflow.readers.base import (
    SUMMARY_TAGS,
    ExperimentRecord,
    Page,
    Reader,
    RecordData,
    RecordInfo,
    RunInfo,
    RunRecord,
    decode_token,
    encode_token,
    finite,
    query_digest,
    summarize,
)
from nbops.mlflow.readers.sqlfilter import SQLITE, Dialect, Untranslatable, translate

if TYPE_CHECKING:  # the pydantic models cost 0.1-0.2 s to import: on first use
    from nbops.mlflow.readers import models as m

log = logging.getLogger("nbops.server")

CHUNK = 500  # ids per IN (...) list: under SQLite's variable limit
SHOWN = (
    "NOT EXISTS (SELECT 1 FROM experiment_tags x WHERE x.experiment_id = e.experiment_id"
    " AND x.key = ? AND lower(trim(x.value)) = 'true')"
)
"""Experiments listed: not nbops' own (tagged ``nbops.hidden``), as the client path skips them."""
T = TypeVar("T")
History = dict[str, dict[str, list[tuple[int, float | None]]]]


class Outside(Exception):
    """A run or experiment this reader does not answer for: the client path answers instead."""


class SqlReader(Reader):
    dialect: Dialect = SQLITE
    db_errors: tuple[type[BaseException], ...] = ()
    """Database errors answered by the client path instead of failing the request."""

    missing_is_final = False
    """Whether a run id this database does not hold is NotFound here (the embedded store: it
    holds every run), rather than a question for the client path (a server's permissions)."""
    shown = ""
    """The store as NotFound names it (``TrackingStore.shown``), set by whoever opens it."""

    def __init__(self, fallback: Callable[[], Reader], known_revisions: frozenset[str]) -> None:
        self.fallback = fallback
        self.known_revisions = known_revisions
        self._direct: bool | None = None  # None: not decided yet
        self._failed: set[str] = set()  # kinds of database failure already logged

    # --- what each database provides ------------------------------------------------------------
    @abstractmethod
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (``?`` placeholders)."""

    @abstractmethod
    def _decide(self) -> bool:
        """Whether this store's tables are read here (logs why not, once)."""

    def _cache(self) -> dict[Any, Any]:
        """Answers shared between requests while the store is unchanged (default: none)."""
        return {}

    def _newest_first(
        self, where_sql: str, args: list[Any], offset: int, limit: int
    ) -> tuple[list[str], int] | None:
        """A faster way to the default order's early pages (ids, total), or None."""
        return None

    def _allowed(self, experiment_ids: Iterable[str]) -> bool:
        """Whether every one of these experiments may be read here (default: yes)."""
        return True

    # --- the guard ------------------------------------------------------------------------------
    def direct(self) -> bool:
        """Whether this store's tables are read with SQL here (its schema revision is known);
        else every read goes to the MlflowClient path. Decided once per reader."""
        if self._direct is None:
            self._direct = self._decide()
        return self._direct

    def _either(self, direct: Callable[[], T], client: Callable[[Reader], T]) -> T:
        if not self.direct():
            return client(self.fallback())
        try:
            return direct()
        except (Outside, Untranslatable):
            return client(self.fallback())
        except self.db_errors as exc:
            kind = type(exc).__name__
            if kind not in self._failed:
                self._failed.add(kind)
                first = (str(exc).strip().splitlines() or [kind])[0][:300]
                log.warning(
                    "nbops: reading %s directly failed (%s: %s): this request and later ones "
                    "that fail alike are answered through MlflowClient",
                    self.where(),
                    kind,
                    first,
                )
            self._lost()
            return client(self.fallback())

    def where(self) -> str:
        """The store, as the log names it (no password)."""
        return self.__class__.__name__

    def _lost(self) -> None:
        """Called after a database error (drop a broken connection)."""

    def _chunked(
        self, sql: str, ids: list[str], extra: Sequence[Any] = ()
    ) -> Iterable[tuple[Any, ...]]:
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            yield from self._rows(sql.format(ids=marks), [*part, *extra])

    # --- experiments ----------------------------------------------------------------------------
    def experiments(self) -> list[m.Experiment]:
        return self._either(self._experiments_cached, lambda c: c.experiments())

    def _experiments_cached(self) -> list[m.Experiment]:
        cache = self._cache()
        if "experiments" not in cache:
            cache["experiments"] = self._experiments()
        exps: list[m.Experiment] = cache["experiments"]
        return [e for e in exps if self._allowed([e.experiment_id])]

    def _experiments(self) -> list[m.Experiment]:
        from nbops.mlflow.readers import models as m

        rows = self._rows(
            "SELECT e.experiment_id, e.name, COUNT(r.run_uuid), MAX(r.start_time)"
            " FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.experiment_id"
            " AND r.lifecycle_stage = 'active'"
            f" WHERE e.lifecycle_stage = 'active' AND {SHOWN} GROUP BY e.experiment_id, e.name"
            " ORDER BY e.experiment_id",
            [tag_names.HIDDEN],
        )
        return [
            m.Experiment(experiment_id=str(i), name=n, run_count=c, last_run_time=t)
            for i, n, c, t in rows
        ]

    def experiment_names(self) -> list[tuple[str, str]]:
        return self._either(self._experiment_names, lambda c: c.experiment_names())

    def _experiment_names(self) -> list[tuple[str, str]]:
        rows = self._rows(
            "SELECT e.experiment_id, e.name FROM experiments e WHERE e.lifecycle_stage = 'active'"
            f" AND {SHOWN} ORDER BY e.experiment_id",
            [tag_names.HIDDEN],
        )
        return [(str(i), n) for i, n in rows if self._allowed([str(i)])]

    # --- runs -----------------------------------------------------------------------------------
    def search(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
    ) -> Page:
        limits.search(filter_string, order_by, max_results)
        return self._either(
            lambda: self._search(experiment_ids, filter_string, order_by, max_results, page_token),
            lambda c: c.search(experiment_ids, filter_string, order_by, max_results, page_token),
        )

    def _search(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
    ) -> Page:
        q = translate(filter_string, order_by, self.dialect)
        digest = query_digest(experiment_ids, filter_string, order_by)
        offset: int = decode_token(page_token, digest, "o").get("o", 0)
        if not experiment_ids:
            return Page([], None, 0, [], [], self.source)
        if not self._allowed(experiment_ids):
            raise Outside("experiments")
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
            if not order_by:
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
        runs = self._summaries(ids)
        return Page(runs, nxt, int(total), list(pkeys), list(mkeys), self.source)

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

    def _summaries(self, ids: list[str], strict: bool = False) -> list[m.RunSummary]:
        """Summaries of the active runs among ``ids`` (in that order); ``strict``: every id must
        be an active run this reader may answer for (else :class:`Outside`)."""
        if not ids:
            return []
        base = {
            r[0]: r
            for r in self._chunked(
                "SELECT run_uuid, name, experiment_id, status, start_time, end_time"
                " FROM runs WHERE run_uuid IN ({ids}) AND lifecycle_stage = 'active'",
                ids,
            )
        }
        if strict and (
            len(base) < len(set(ids)) or not self._allowed({str(r[2]) for r in base.values()})
        ):
            raise Outside("runs")
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
        def direct() -> list[m.RunSummary]:
            found = {s.run_id: s for s in self._summaries(list(dict.fromkeys(run_ids)), True)}
            return [found[rid] for rid in run_ids]

        return self._either(direct, lambda c: c.summaries(run_ids))

    def _check_runs(self, run_ids: list[str]) -> None:
        """Outside unless every id is an active run this reader may answer for."""
        found = {
            (r[0], str(r[1]))
            for r in self._chunked(
                "SELECT run_uuid, experiment_id FROM runs WHERE run_uuid IN ({ids})"
                " AND lifecycle_stage = 'active'",
                run_ids,
            )
        }
        if len(found) < len(run_ids) or not self._allowed({e for _, e in found}):
            raise Outside("runs")

    def run_info(self, run_id: str) -> RunInfo:
        def direct() -> RunInfo:
            rows = self._rows(
                "SELECT artifact_uri FROM runs WHERE run_uuid = ? AND lifecycle_stage = 'active'",
                [run_id],
            )
            if not rows:
                raise Outside(run_id)
            summary = self._summaries([run_id], True)[0]
            tags = dict(self._rows("SELECT key, value FROM tags WHERE run_uuid = ?", [run_id]))
            return RunInfo(summary, dict(sorted(tags.items())), rows[0][0])

        return self._either(direct, lambda c: c.run_info(run_id))

    def metric_history(self, run_id: str, key: str) -> list[m.MetricPoint]:
        from nbops.mlflow.readers import models as m

        def direct() -> list[m.MetricPoint]:
            self._check_runs([run_id])
            rows = self._rows(
                "SELECT step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ?"
                " ORDER BY step, timestamp, value",
                [run_id, key],
            )
            return [
                m.MetricPoint(step=s, timestamp=t, value=None if nan else finite(v))
                for s, t, v, nan in rows
            ]

        return self._either(direct, lambda c: c.metric_history(run_id, key))

    def histories(self, run_ids: list[str]) -> History:
        ids = list(dict.fromkeys(run_ids))

        def direct() -> History:
            self._check_runs(ids)
            out: History = {}
            rows = self._chunked(
                "SELECT key, run_uuid, step, value, is_nan FROM metrics WHERE run_uuid IN ({ids})"
                " ORDER BY key, run_uuid, step, timestamp, value",
                ids,
            )
            for k, rid, step, v, nan in rows:
                out.setdefault(k, {}).setdefault(rid, []).append((step, None if nan else finite(v)))
            return {k: out[k] for k in sorted(out)}

        return self._either(direct, lambda c: c.histories(run_ids))

    # --- whole runs (the read commands) ---------------------------------------------------------
    def _records(self, ids: list[str], active_only: bool = True) -> list[RunRecord]:
        """The runs among ``ids`` (in that order), as MLflow's get_run / search_runs answer
        them: every param, latest metric (NaN as nan) and tag."""
        if not ids:
            return []
        alive = " AND lifecycle_stage = 'active'" if active_only else ""
        base = {
            r[0]: r
            for r in self._chunked(
                "SELECT run_uuid, artifact_uri, end_time, experiment_id, lifecycle_stage, name,"
                " start_time, status, user_id FROM runs WHERE run_uuid IN ({ids})" + alive,
                ids,
            )
        }
        if not self._allowed({str(r[3]) for r in base.values()}):
            raise Outside("runs")
        found = [i for i in dict.fromkeys(ids) if i in base]
        params: dict[str, dict[str, str]] = {i: {} for i in found}
        for rid, k, v in self._chunked(
            "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({ids})", found
        ):
            params[rid][k] = v
        metrics: dict[str, dict[str, float]] = {i: {} for i in found}
        for rid, k, v, nan in self._chunked(
            "SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({ids})",
            found,
        ):
            metrics[rid][k] = float("nan") if nan else float(v)
        run_tags: dict[str, dict[str, str]] = {i: {} for i in found}
        for rid, k, v in self._chunked(
            "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({ids})", found
        ):
            run_tags[rid][k] = v
        out = []
        for i in ids:
            if i not in base:
                continue
            _, art, end, exp, stage, name, start, status, user = base[i]
            info = RecordInfo(art, end, str(exp), stage, i, name, start, status, user)
            out.append(RunRecord(info, RecordData(params[i], metrics[i], run_tags[i])))
        return out

    def run(self, run_id: str) -> RunRecord:
        def direct() -> RunRecord:
            found = self._records([run_id], active_only=False)
            if found:
                return found[0]
            if self.missing_is_final:
                raise NotFound(
                    f"run {run_id!r} does not exist in {self.shown or self.where()}",
                    "list runs with `nbops runs` (ids are MLflow run ids)",
                )
            raise Outside(run_id)

        return self._either(direct, lambda c: c.run(run_id))

    def find_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
    ) -> list[RunRecord]:
        def direct() -> list[RunRecord]:
            if not experiment_ids:
                return []
            if not self._allowed(experiment_ids):
                raise Outside("experiments")
            q = translate(filter_string, order_by, self.dialect)
            marks = ",".join("?" * len(experiment_ids))
            where = [f"r.experiment_id IN ({marks})", "r.lifecycle_stage = 'active'", *q.where]
            exp_args = [int(e) if e.isdigit() else e for e in experiment_ids]
            ids = [
                r[0]
                for r in self._rows(
                    f"SELECT r.run_uuid FROM runs r {' '.join(q.joins)}"
                    f" WHERE {' AND '.join(where)} ORDER BY {', '.join(q.order)} LIMIT ?",
                    [*q.join_args, *exp_args, *q.where_args, max_results],
                )
            ]
            return self._records(ids)

        return self._either(
            direct, lambda c: c.find_runs(experiment_ids, filter_string, order_by, max_results)
        )

    def all_experiments(self) -> list[ExperimentRecord]:
        def direct() -> list[ExperimentRecord]:
            rows = self._rows(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments"
                " WHERE lifecycle_stage = 'active' ORDER BY experiment_id"
            )
            exp_tags: dict[str, dict[str, str]] = {str(r[0]): {} for r in rows}
            for i, k, v in self._rows("SELECT experiment_id, key, value FROM experiment_tags"):
                if str(i) in exp_tags:
                    exp_tags[str(i)][k] = v
            out = [ExperimentRecord(str(i), n, a, st, exp_tags[str(i)]) for i, n, a, st in rows]
            if not self._allowed(e.experiment_id for e in out):
                raise Outside("experiments")
            return out

        return self._either(direct, lambda c: c.all_experiments())
