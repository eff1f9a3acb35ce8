"""The fast read path on the embedded store: read-only SQL on MLflow's SQLite schema (the
queries are :mod:`~nbops.mlflow.readers.sql`'s, shared with the PostgreSQL reader), one
connection per worker thread, opened ``mode=ro``.

Queries it cannot translate (see sqlfilter.py) go to the MlflowClient path it wraps, so the
answer is the same either way; only the time differs. So does everything when the store's schema
revision (``alembic_version``) is not one of :data:`KNOWN_SCHEMA_REVISIONS`, the revisions this
SQL was written and tested against: after an MLflow upgrade that changes its tables, the panel
is slower, never wrong. The log says so once per store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbops.mlflow.readers.base import Reader
from nbops.mlflow.readers.sql import SqlReader, log

KNOWN_SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
"""MLflow schema revisions (``alembic_version.version_num``) the SQL below reads directly.
``dc11669786a5`` is the head of MLflow 3.17. Add a revision only after the reader tests pass on
a store at that revision (tests/integration/test_readers_schema.py fails when the installed
MLflow's head is not listed here)."""

_NEWEST_MAX = 2000  # the newest-rows shortcut serves pages up to this far down
_SLACK = 64  # extra newest rows read, so a few runs started out of insertion order still fit


def readable(db: Path, known_revisions: frozenset[str] = KNOWN_SCHEMA_REVISIONS) -> bool:
    """Whether the SQLite store ``db`` is complete at a schema revision the SQL here reads (no
    half-made tables left by an interrupted upgrade); read-only, imports no MLflow."""
    from nbops.mlflow.schema import read_state

    state = read_state(db)
    return (
        state.exists
        and state.error is None
        and state.version in known_revisions
        and not state.leftovers
    )


class SqliteReader(SqlReader):
    source = "sqlite"
    missing_is_final = True

    def __init__(
        self,
        db: Path,
        fallback: Callable[[], Reader],
        known_revisions: frozenset[str] = KNOWN_SCHEMA_REVISIONS,
    ) -> None:
        super().__init__(fallback, known_revisions)
        self.db = db
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
                # at a time; SchemaRefused (a StoreUnavailable) is a 503 naming the file. A
                # store already at a revision this SQL reads is complete: no need to ask
                # MLflow for its head revision (that imports MLflow, a second)
                if not readable(self.db, self.known_revisions):
                    from nbops.mlflow.schema import ensure_schema

                    ensure_schema(f"sqlite:///{self.db}")
                self._schema_checked = True
            con = sqlite3.connect(
                f"file:{quote(str(self.db))}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
            # LIKE is case-sensitive in MLflow's SQLite sessions too (ILIKE is lower() LIKE lower())
            con.execute("PRAGMA case_sensitive_like = true")
            self._local.con = con
        return con

    def where(self) -> str:
        return str(self.db)

    def _decide(self) -> bool:
        # after the schema is made current (con() does)
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
        return known

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con().execute(sql, list(args)).fetchall()

    def _newest_first(
        self, where_sql: str, args: list[Any], offset: int, limit: int
    ) -> tuple[list[str], int] | None:
        """The default order (start_time DESC, run_uuid) of an early page without sorting the
        table: runs are stored roughly in start order, so read the newest rows by rowid, order
        them here, and prove with one counting scan that no older row starts at or after the
        page's last start time (else None: the caller sorts in SQL). Returns (ids, total)."""
        if offset + limit >= _NEWEST_MAX:
            return None
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
