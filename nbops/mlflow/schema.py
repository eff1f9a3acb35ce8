"""The schema of an SQLite tracking store: created, upgraded and repaired by one process at a time.

MLflow creates its SQLite schema with a chain of alembic migrations, many of which rebuild a
table through a ``_alembic_tmp_<table>`` copy. Two processes doing that at once on a new store
(kernels' writers, ``nbops run``, the server, all starting together) interleave and leave the
copies behind; the store then cannot be opened again (``table _alembic_tmp_params already
exists``). :func:`ensure_schema` is the one door every nbops path goes through before MLflow
touches an SQLite store:

* the common case costs one read-only query: the ``alembic_version`` row equals MLflow's head
  revision and no ``_alembic_tmp_*`` table is left, so nothing is locked;
* otherwise it takes an exclusive ``flock`` on ``<db>.lock`` (``.nbops/mlflow.db.lock`` for the
  embedded store), looks again (another process may have finished meanwhile) and only then lets
  MLflow create or upgrade the schema;
* a half-migrated store is repaired when that loses nothing: a store that holds no run, model or
  experiment of anyone is rebuilt from scratch; one that holds data gets a backup copy, loses its
  leftover ``_alembic_tmp_*`` copies (only those whose original table is still there) and is
  upgraded by MLflow. Anything else is refused with :class:`SchemaRefused`, naming the file and
  the fix: retrying cannot help, so the writer stops at once and the data stays in the spool.

MLflow's INFO lines about creating and upgrading tables are not shown (``nbops.mlflow.quiet``;
``NBOPS_VERBOSE=1`` shows them). Standard library at import; MLflow and alembic are imported only
when a store is opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from nbops import envvars, project
from nbops.errors import SchemaRefused, StoreUnavailable
from nbops.mlflow import quiet

TMP_PREFIX = "_alembic_tmp_"
LOCK_TIMEOUT = float(os.environ.get(envvars.SCHEMA_LOCK_TIMEOUT, "300"))
# rows MLflow itself puts in a new store; any other row is somebody's data
_SEEDED = {"alembic_version", "experiments", "workspaces"}

_head: str | None = None
_head_lock = threading.Lock()
_current: set[tuple[Path, int]] = set()  # stores seen current here (they never go back)


@dataclass
class SchemaState:
    exists: bool
    version: str | None = None
    tables: set[str] = field(default_factory=set)
    error: str | None = None

    @property
    def leftovers(self) -> list[str]:
        return sorted(t for t in self.tables if t.startswith(TMP_PREFIX))


def lock_path(db: Path) -> Path:
    """``<db>.lock`` beside the database (inside ``.nbops/`` for the embedded store)."""
    return db.with_name(db.name + ".lock")


def read_state(db: Path) -> SchemaState:
    """What the store looks like now, read with a read-only connection (never creates it)."""
    if not db.is_file() or db.stat().st_size == 0:
        return SchemaState(exists=False)
    try:
        con = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return SchemaState(exists=True, error=str(exc))
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            version = str(row[0]) if row else None
        return SchemaState(exists=True, version=version, tables=tables)
    except sqlite3.Error as exc:
        return SchemaState(exists=True, error=str(exc))
    finally:
        con.close()


def head_revision() -> str:
    """The schema revision this MLflow writes (the head of its migration chain)."""
    global _head
    with _head_lock:  # one importing thread: MLflow's circular imports break under two
        if _head is None:
            from mlflow.store.db.utils import _get_latest_schema_revision

            _head = str(_get_latest_schema_revision())  # type: ignore[no-untyped-call]
        return _head


def is_current(state: SchemaState) -> bool:
    return (
        state.exists
        and state.error is None
        and state.version is not None
        and state.version == head_revision()
        and not state.leftovers
    )


def ensure_schema(uri: str, artifact_root: Path | None = None) -> None:
    """Make the SQLite store at ``uri`` current (create, upgrade or repair it), one process at
    a time; a no-op for other stores. Raises :class:`SchemaRefused` for a store it will not
    touch, :class:`StoreUnavailable` when another process holds the lock for too long."""
    db = project.sqlite_path(uri)
    if db is None or _identity(db) in _current:
        return
    if is_current(read_state(db)):
        _current.add(_identity(db))
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with _locked(db), quiet():  # MLflow's "Creating initial MLflow database tables..." lines
        state = read_state(db)  # someone else may have made it current while we waited
        if not is_current(state):
            _make_current(uri, db, state, artifact_root or project.artifact_root_for(uri))
    _current.add(_identity(db))


def _identity(db: Path) -> tuple[Path, int]:
    """The file, not the name: a store moved aside and made anew is looked at again."""
    try:
        return db, db.stat().st_ino
    except OSError:
        return db, -1


@contextlib.contextmanager
def _locked(db: Path) -> Iterator[None]:
    fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"another process has been creating or upgrading the schema of {db} "
                        f"for over {LOCK_TIMEOUT:.0f} s (it holds {lock_path(db)})",
                        "wait for it, or stop it if it hangs; the logged data stays spooled",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def _make_current(uri: str, db: Path, state: SchemaState, artifact_root: Path | None) -> None:
    """Under the lock: create, upgrade or repair the store, or refuse it."""
    if os.path.lexists(db) and not db.is_file():
        raise SchemaRefused(
            f"tracking store {db} is not a regular file",
            f"remove it or move it aside (mv {db} to another directory); a new store is "
            "created on the next run and `nbops sync` delivers the spooled data",
        )
    if state.error is not None:
        raise SchemaRefused(
            f"tracking store {db} is not a readable SQLite database ({state.error})",
            f"move it aside with its -wal and -shm files (mv {db}* to another directory); a new "
            "store is created on the next run and `nbops sync` delivers the spooled data",
        )
    head = head_revision()
    if state.version is not None and not _known(state.version):
        raise SchemaRefused(
            f"tracking store {db} has schema revision {state.version}, which this MLflow "
            f"(head {head}) does not know: a newer MLflow made it",
            "upgrade mlflow in this environment, or set MLFLOW_TRACKING_URI to another store; "
            "the logged data stays spooled and `nbops sync` delivers it",
        )
    if state.exists and (state.leftovers or state.version not in (None, head)):
        if not _holds_data(db, state.tables):
            # a store whose creation was interrupted and that holds nothing yet: start over
            _drop_all(db)
        else:
            _refuse_orphan_copies(db, state)  # before anything is changed or copied
            backup = _backup(db, state.version)
            if state.leftovers:
                _drop_leftovers(db, state)
            _upgrade(uri, db, state.version, head, backup)
    elif state.exists and state.version is None and state.tables - _SEEDED:
        _upgrade(uri, db, None, head, None)  # tables made, never stamped: what MLflow does too
    # creates a missing schema and the Default experiment (its artifacts beside the db)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    location = artifact_root.as_uri() if artifact_root is not None else "./mlruns"
    try:
        SqlAlchemyStore(uri, location)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise _refuse_upgrade(db, read_state(db).version, head, exc, None) from exc
    if db.parent.name == project.STATE_DIR:
        enable_wal(db)


def _upgrade(uri: str, db: Path, version: str | None, head: str, backup: Path | None) -> None:
    from mlflow.store.db import utils as db_utils

    engine = db_utils.create_sqlalchemy_engine_with_retry(uri)  # type: ignore[no-untyped-call]
    try:
        db_utils._upgrade_db(engine)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise _refuse_upgrade(db, version, head, exc, backup) from exc
    finally:
        engine.dispose()


def _known(version: str) -> bool:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))  # type: ignore[no-untyped-call]
    try:
        return script.get_revision(version) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        return False


def _holds_data(db: Path, tables: set[str]) -> bool:
    """Whether the store holds anything a person made (a run, a model, an experiment...)."""
    con = sqlite3.connect(str(db), timeout=30)
    try:
        for t in tables:
            if t in _SEEDED or t.startswith(TMP_PREFIX) or t.startswith("sqlite_"):
                continue
            if con.execute(f"SELECT 1 FROM {_quote(t)} LIMIT 1").fetchone() is not None:
                return True
        if "experiments" in tables:
            extra = con.execute(
                "SELECT 1 FROM experiments WHERE experiment_id != 0 LIMIT 1"
            ).fetchone()
            return extra is not None
        return False
    finally:
        con.close()


def _drop_all(db: Path) -> None:
    con = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    try:
        con.execute("PRAGMA foreign_keys=OFF")
        con.execute("BEGIN IMMEDIATE")
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for name in names:
            con.execute(f"DROP TABLE IF EXISTS {_quote(name)}")
        con.execute("COMMIT")
    finally:
        con.close()


def _refuse_orphan_copies(db: Path, state: SchemaState) -> None:
    """A ``_alembic_tmp_<t>`` copy whose table ``<t>`` is gone holds the rows: never drop it."""
    orphans = [t for t in state.leftovers if t[len(TMP_PREFIX) :] not in state.tables]
    if orphans:
        t = orphans[0]
        raise SchemaRefused(
            f"tracking store {db} is half-migrated: table {t[len(TMP_PREFIX) :]!r} is missing "
            f"and its rows are in {t!r}",
            f"restore {db} from a backup, or move it aside with its -wal and -shm files "
            f"(mv {db}* to another directory); the logged data stays spooled and "
            "`nbops sync` delivers it to the new store",
        )


def _drop_leftovers(db: Path, state: SchemaState) -> None:
    """Drop the ``_alembic_tmp_<t>`` copies whose table ``<t>`` is still there: the migration
    stopped before it replaced ``<t>``, which holds every row."""
    con = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        for t in state.leftovers:
            con.execute(f"DROP TABLE IF EXISTS {_quote(t)}")
        con.execute("COMMIT")
    finally:
        con.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _backup(db: Path, version: str | None) -> Path:
    """A copy of the store before nbops changes a schema that holds data."""
    dst = db.with_name(
        f"{db.name}.before-{version or 'unversioned'}-{time.strftime('%Y%m%d%H%M%S')}"
    )
    src = sqlite3.connect(str(db), timeout=30)
    try:
        out = sqlite3.connect(str(dst))
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    return dst


def _refuse_upgrade(
    db: Path, version: str | None, head: str, exc: BaseException, backup: Path | None
) -> SchemaRefused:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return SchemaRefused(
        f"tracking store {db} could not be brought from schema revision {version} to {head}: "
        f"{first}",
        (f"a copy from before the attempt is {backup}; " if backup else "")
        + f"restore {db} from a backup, or move it aside with its -wal and -shm files "
        f"(mv {db}* to another directory); the logged data stays spooled and `nbops sync` "
        "delivers it to the new store",
    )


def enable_wal(db: Path) -> None:
    """The store runs in WAL mode: readers never block writers of other processes."""
    try:
        con = sqlite3.connect(str(db), timeout=30)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error:
        pass  # another process is switching it; WAL is an optimisation
