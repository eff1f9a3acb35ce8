"""The fast read path on a team's server store: read-only SQL on the MLflow server's PostgreSQL
(the queries are :mod:`~nbops.mlflow.readers.sql`'s, shared with the SQLite reader).

Used when the sidebar is given a database login (``NBOPS_READ_DATABASE_URI``, beside an
``http(s)://`` tracking URI) or the tracking URI is the database itself (``postgresql://``).
psycopg 3 is imported only here. Every connection is read-only (``default_transaction_read_only``)
with a short statement timeout, one per worker thread.

The same guards as on SQLite: a missing psycopg, a refused login, a database that is not
MLflow's, a schema revision not in :data:`KNOWN_SCHEMA_REVISIONS` or tables the login may not
read: the MlflowClient path answers everything, said once in the log. A database error later
(connection lost, statement timeout) answers that request through MlflowClient too: a request
never fails because of this path.

Permissions: with a tracking server, the direct path answers only for the experiments the
server lets this user read (MlflowClient's experiment list, refreshed every
:data:`ALLOWED_TTL` seconds); anything else (another experiment, a run in one) is asked of the
server, which answers or refuses as MLflow does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nbops.mlflow.readers.base import Reader
from nbops.mlflow.readers.sql import SqlReader, log
from nbops.mlflow.readers.sqlfilter import POSTGRES
from nbops.mlflow.readers.sqlite import KNOWN_SCHEMA_REVISIONS

STATEMENT_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5
ALLOWED_TTL = 30.0
"""Seconds the list of experiments the server lets this user read is reused."""
KEYS_TTL = 10.0
"""Seconds an experiment's param and metric key lists (the column chooser's) are reused: on
PostgreSQL listing them costs more than the page itself (no SQLite data_version to tell when
they change). Pages, counts and runs are always read afresh."""

TABLES = ("experiments", "experiment_tags", "runs", "params", "latest_metrics", "metrics", "tags")
_DRIVER = re.compile(r"^(postgres(?:ql)?)\+[a-z0-9_]+://", re.IGNORECASE)


def is_postgres_uri(uri: str) -> bool:
    return uri.lower().startswith(("postgresql://", "postgres://", "postgresql+", "postgres+"))


def dsn(uri: str) -> str:
    """A libpq URI from SQLAlchemy's (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return _DRIVER.sub(r"\1://", uri.strip())


def redact(uri: str) -> str:
    """``uri`` without its password (for the log)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<database uri>"
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class PostgresReader(SqlReader):
    source = "postgres"
    dialect = POSTGRES

    def __init__(
        self,
        uri: str,
        fallback: Callable[[], Reader],
        known_revisions: frozenset[str] = KNOWN_SCHEMA_REVISIONS,
        restrict: bool = True,
    ) -> None:
        """``restrict``: answer only for the experiments ``fallback`` lists (a tracking server
        with its own permissions); False when the tracking URI is this database itself."""
        super().__init__(fallback, known_revisions)
        self.uri = dsn(uri)
        self.restrict = restrict
        self._local = threading.local()
        self._lock = threading.Lock()
        self._allowed_ids: frozenset[str] = frozenset()
        self._allowed_at = -1e9
        self._connections: list[Any] = []
        self._key_memo: dict[tuple[str, tuple[Any, ...]], tuple[float, list[str]]] = {}
        try:
            import psycopg

            self.db_errors = (psycopg.Error,)
        except ImportError:
            pass

    def where(self) -> str:
        return redact(self.uri)

    # --- connections ----------------------------------------------------------------------------
    def con(self) -> Any:
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            import psycopg

            con = psycopg.connect(
                self.uri,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="nbops-sidebar",
            )
            con.execute("SET default_transaction_read_only = on")
            con.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._local.con = con
            with self._lock:
                self._connections.append(con)
        return con

    def _lost(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            self._local.con = None
            try:
                con.close()
            except Exception:  # noqa: BLE001  (closing a broken connection)
                pass

    def close(self) -> None:
        with self._lock:
            cons, self._connections = self._connections, []
        for con in cons:
            try:
                con.close()
            except Exception:  # noqa: BLE001
                pass

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # the SQL is written with ? placeholders and no literal % (values are always bound)
        text = sql.replace("%", "%%").replace("?", "%s")
        cur = self.con().execute(text, list(args))
        return list(cur.fetchall())

    def _keys(self, table: str, exp_args: list[Any]) -> list[str]:
        memo_key = (table, tuple(exp_args))
        now = time.monotonic()
        hit = self._key_memo.get(memo_key)
        if hit is not None and now - hit[0] < KEYS_TTL:
            return list(hit[1])
        keys = super()._keys(table, exp_args)
        if len(self._key_memo) > 256:
            self._key_memo = {}
        self._key_memo[memo_key] = (now, keys)
        return list(keys)

    # --- the guard ------------------------------------------------------------------------------
    def _decide(self) -> bool:
        why = self._refusal()
        if why is not None:
            log.warning(
                "nbops: the sidebar reads %s through MlflowClient, not directly: %s",
                redact(self.uri),
                why,
            )
            return False
        return True

    def _refusal(self) -> str | None:
        """Why this database is not read directly (None: it is)."""
        try:
            import psycopg
        except ImportError:
            return "psycopg is not installed (pip install 'psycopg[binary]')"
        try:
            self.con()
        except psycopg.Error as exc:
            return f"cannot log in ({_first_line(exc)})"
        try:
            rows = self._rows("SELECT version_num FROM alembic_version")
        except psycopg.Error as exc:
            self._lost()
            return f"it is not an MLflow tracking database (no alembic_version: {_first_line(exc)})"
        revision = str(rows[0][0]) if rows else None
        if revision not in self.known_revisions:
            return (
                f"its MLflow schema revision is {revision}, which the direct SQL reader was not "
                f"written for (it knows {', '.join(sorted(self.known_revisions))})"
            )
        for table in TABLES:
            try:
                self._rows(f"SELECT 1 FROM {table} LIMIT 0")
            except psycopg.Error as exc:
                self._lost()
                return f"the login may not read table {table} ({_first_line(exc)})"
        if self.restrict:
            # the tracking server's own database? every experiment it lists must be here
            served = self.fallback().experiment_names()
            try:
                rows = self._rows("SELECT experiment_id, name FROM experiments")
            except psycopg.Error as exc:
                self._lost()
                return f"cannot read its experiments ({_first_line(exc)})"
            here = {(str(i), n) for i, n in rows}
            other = [f"{i} {n!r}" for i, n in served if (i, n) not in here]
            if other:
                return (
                    "it is not the tracking server's database (the server's experiment "
                    f"{other[0]} is not in it): check NBOPS_READ_DATABASE_URI"
                )
            self._allowed_ids = frozenset(i for i, _ in served)
            self._allowed_at = time.monotonic()
        return None

    def _allowed(self, experiment_ids: Iterable[str]) -> bool:
        if not self.restrict:
            return True
        wanted = set(experiment_ids)
        if not wanted:
            return True
        now = time.monotonic()
        if now - self._allowed_at > ALLOWED_TTL or (
            not wanted <= self._allowed_ids and now - self._allowed_at > 1.0
        ):
            names = self.fallback().experiment_names()  # what the server lets this user read
            self._allowed_ids = frozenset(i for i, _ in names)
            self._allowed_at = now
        return wanted <= self._allowed_ids


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
