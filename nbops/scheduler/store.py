"""Persistence under ``.nbops/scheduler/``: one SQLite file (WAL) with the schedules added from
the CLI, every execution's history row, the daemon's slots (cursor, queue, running execution) and
run-now requests. Safe for the daemon, CLI calls and the Jupyter server at the same time.

What it does with a database that is not as it wrote it (decided; every case is a
``SchedulerDatabaseError``: one line naming the file and the fix, CLI exit 2, HTTP 503, like a
damaged tracking store: the server's state, not the request's):

- no file: created whole, atomically (built aside, then hard-linked into place), so no other
  process ever sees a half-made one and an empty file is never one of ours;
- a 0-byte file, a file that is not SQLite, a directory, a symlink, a FIFO or a device in its
  place, a database that lost one of its tables or columns, or one SQLite calls malformed: refused,
  never replaced (that would lose the schedules): the hint says how to move it aside (``mv``),
  after which nbops creates a new one. Only a valid SQLite file with no tables at all gets the
  schema;
- locked by another process: each statement waits up to ``BUSY_TIMEOUT`` seconds, then the
  error names the processes that have the file open;
- bad rows (NULLs, wrong types, JSON that does not parse): skipped and logged, the others load
  (a damaged schedule row is listed as invalid by ``sources``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from nbops import project
from nbops.errors import SchedulerDatabaseError
from nbops.scheduler.core import Slot
from nbops.scheduler.model import HistoryRow, Schedule

log = logging.getLogger("nbops.scheduler")

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, schedule TEXT NOT NULL, fire_time REAL, reason TEXT,
    attempt INTEGER DEFAULT 0, status TEXT NOT NULL, started REAL, ended REAL, duration REAL,
    pipeline_run_id TEXT, run_ids TEXT, error TEXT, exit_code INTEGER, pid INTEGER, log TEXT);
CREATE INDEX IF NOT EXISTS history_schedule ON history (schedule, id);
CREATE TABLE IF NOT EXISTS slots (name TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY AUTOINCREMENT, schedule TEXT NOT NULL,
    requested REAL NOT NULL);
"""
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT = 10.0
"""Seconds a statement waits for another process' lock before the error names the holder."""


def _text(raw: bytes) -> str | bytes:
    """TEXT as str; bytes that are not UTF-8 (a damaged row) stay bytes, which every reader
    treats as a damaged value instead of failing the whole query."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class StoredRow(NamedTuple):
    """A row of ``schedules`` as stored (any type: a hand edit may have put anything there)."""

    rowid: int
    name: Any
    spec: Any


@lru_cache(maxsize=1)
def _expected() -> dict[str, set[str]]:
    """Table -> columns of SCHEMA (read from an in-memory database made with it)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
            for t in tables
            if t != "sqlite_sequence"
        }
    finally:
        db.close()


def holders(path: Path) -> str:
    """The processes that have ``path`` (or its -wal/-shm) open, from /proc: 'pid 12 (cmd)'."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    found: list[str] = []
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return "unknown process: /proc cannot be read"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in names:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    cmd = "?"
                if int(pid) == os.getpid():
                    found.append(f"pid {pid} (this process): {cmd[:80]}")
                else:
                    found.insert(0, f"pid {pid}: {cmd[:80]}")
                break
    others = [f for f in found if "(this process)" not in f]
    found = others or found  # this process waiting on it is not news, unless it is alone
    if not found:
        return "no process has it open any more: try again"
    return "held by " + "; ".join(found[:3]) + ("; ..." if len(found) > 3 else "")


def scheduler_dir(root: Path) -> Path:
    d = root / project.STATE_DIR / "scheduler"
    try:
        project.state_dir(root)
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SchedulerDatabaseError(
            f"cannot make the scheduler's folder {d}: {exc.strerror or exc}",
            f"nbops keeps schedules in {d}/: move whatever is in its place aside "
            f"(mv {d} {d}.old) or make .nbops/ writable",
        ) from None
    if not d.is_dir():
        raise SchedulerDatabaseError(
            f"{d} is not a folder", f"move it aside: mv {d} {d}.old; nbops makes the folder anew"
        )
    return d


KEEP_HISTORY = 1000
"""History rows kept per schedule (the daemon prunes older ones)."""
_HISTORY_COLS = [f for f in HistoryRow.model_fields if f != "id"]


class ScheduleStore:
    """The scheduler's SQLite database of one project."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = scheduler_dir(root)
        self.path = self.dir / "scheduler.db"
        self._saved: str | None = None
        self._reported: set[str] = set()
        self._open()

    # --- opening: never replace what is there ----------------------------------------------
    def _aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moves = [
            f"mv {p} {p}.damaged-{stamp}"
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if os.path.lexists(p)
        ]
        return (
            "move it aside: "
            + " && ".join(moves or [f"mv {self.path} {self.path}.damaged-{stamp}"])
            + "; nbops then creates a new one (add the `nbops schedule add` schedules again; "
            "the old file keeps them)"
        )

    def _refuse(self, why: str) -> SchedulerDatabaseError:
        return SchedulerDatabaseError(
            f"the scheduler database {self.path} {why}: nbops does not replace it", self._aside()
        )

    def _open(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            self._create()
            st = os.lstat(self.path)
        except OSError as exc:
            raise SchedulerDatabaseError(
                f"cannot read the scheduler database {self.path}: {exc.strerror or exc}",
                f"check the permissions of {self.dir}",
            ) from None
        if stat.S_ISLNK(st.st_mode):
            raise self._refuse("is a symbolic link (nbops keeps it as a plain file)")
        if stat.S_ISDIR(st.st_mode):
            raise self._refuse("is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise self._refuse("is not a regular file (a FIFO, socket or device)")
        if st.st_size == 0:
            raise self._refuse("is empty (0 bytes): it was truncated and its schedules are lost")
        try:
            with open(self.path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise SchedulerDatabaseError(
                f"cannot read the scheduler database {self.path}: {exc.strerror or exc}",
                f"check the permissions of {self.path}",
            ) from None
        if header != SQLITE_HEADER:
            raise self._refuse("is not an SQLite database")
        self._check_schema()

    def _create(self) -> None:
        """A new database with the whole schema, hard-linked into place (no other process sees
        it half made; if one made it first, that one is used)."""
        for extra in (f"{self.path}-wal", f"{self.path}-shm"):
            if os.path.lexists(extra) and os.path.getsize(extra) > 0:
                raise SchedulerDatabaseError(
                    f"{extra} is left from a scheduler database that is gone",
                    f"move it aside (mv {extra} {extra}.old); nbops then creates a new database",
                )
        tmp = self.dir / f".scheduler.db.{os.getpid()}.{secrets.token_hex(4)}.new"
        try:
            db = sqlite3.connect(tmp)
            try:
                db.executescript(SCHEMA)
                db.execute("PRAGMA journal_mode=WAL")
            finally:
                db.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use that one
            except OSError:  # a file system without hard links
                if not os.path.lexists(self.path):
                    os.replace(tmp, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise SchedulerDatabaseError(
                f"cannot create the scheduler database {self.path}: {exc}",
                f"check that {self.dir} is writable",
            ) from None
        finally:
            for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
                leftover.unlink(missing_ok=True)

    def _check_schema(self) -> None:
        expected = _expected()
        with self._db(wal=False) as db:  # nothing written before the file is known to be ours
            tables = {
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            ours = tables & set(expected)
            if not ours:
                others = sorted(tables - {"sqlite_sequence"})
                if others:
                    raise self._refuse(f"holds other tables ({', '.join(others[:5])})")
                db.executescript(SCHEMA)  # a valid, empty SQLite file: give it the schema
                db.execute("PRAGMA journal_mode=WAL")
                return
            missing = sorted(set(expected) - tables)
            if missing:
                raise self._refuse(
                    f"has lost its table{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
                )
            for table, cols in expected.items():
                have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if not cols <= have:
                    raise self._refuse(
                        f"has lost column(s) {', '.join(sorted(cols - have))} of table {table}"
                    )

    def _problem(self, exc: Exception) -> SchedulerDatabaseError:
        text = str(exc) if not isinstance(exc, UnicodeDecodeError) else "text that is not UTF-8"
        if "locked" in text or "busy" in text:
            return SchedulerDatabaseError(
                f"the scheduler database {self.path} stayed locked by another process for "
                f"{BUSY_TIMEOUT:g} s ({holders(self.path)})",
                "wait for that process to finish and try again, or stop it",
            )
        if "readonly" in text or "unable to open" in text or "disk I/O" in text:
            return SchedulerDatabaseError(
                f"cannot use the scheduler database {self.path}: {text}",
                f"check that {self.dir} and the file are writable and the disk is not full",
            )
        if "full" in text:
            return SchedulerDatabaseError(
                f"cannot write the scheduler database {self.path}: {text}", "free disk space"
            )
        return self._refuse(f"is damaged ({text})")

    @contextmanager
    def _db(self, wal: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection (autocommit; WAL) whose every SQLite error becomes one
        SchedulerDatabaseError naming the file and the fix."""
        uri = f"file:{quote(str(self.path))}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._problem(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            if wal:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.row_factory = sqlite3.Row
            conn.text_factory = _text
            yield conn
        except (sqlite3.Error, UnicodeDecodeError) as exc:  # the latter: a damaged schema's text
            raise self._problem(exc) from None
        finally:
            conn.close()

    def _report(self, key: str, message: str) -> None:
        """Log a damaged row once per ScheduleStore."""
        if key not in self._reported:
            self._reported.add(key)
            log.warning("%s", message)

    # --- schedules added from the CLI / API -----------------------------------------------
    def schedule_rows(self) -> list[StoredRow]:
        """Every row of ``schedules`` as stored (``sources`` checks them)."""
        with self._db() as db:
            rows = db.execute("SELECT rowid, name, spec FROM schedules ORDER BY name").fetchall()
        return [StoredRow(int(r[0]), r[1], r[2]) for r in rows]

    def add_schedule(self, schedule: Schedule) -> bool:
        """Insert; False if the name is taken."""
        with self._db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO schedules (name, spec, created) VALUES (?, ?, ?)",
                (schedule.name, schedule.model_dump_json(), time.time()),
            )
            return cur.rowcount == 1

    def remove_schedule(self, name: str) -> bool:
        """Delete by name (a damaged row without one is named '<row N>' by ``sources``)."""
        with self._db() as db:
            if name.startswith("<row ") and name.endswith(">") and name[5:-1].isdigit():
                cur = db.execute("DELETE FROM schedules WHERE rowid = ?", (int(name[5:-1]),))
                return cur.rowcount == 1
            cur = db.execute("DELETE FROM schedules WHERE name = ?", (name,))
            db.execute("DELETE FROM requests WHERE schedule = ?", (name,))
            return cur.rowcount == 1

    # --- history --------------------------------------------------------------------------
    def add_history(self, schedule: str, **fields: Any) -> int:
        fields = {k: v for k, v in fields.items() if k in _HISTORY_COLS}
        if "run_ids" in fields:
            fields["run_ids"] = json.dumps(fields["run_ids"] or [])
        cols = ["schedule", *fields]
        with self._db() as db:
            cur = db.execute(
                f"INSERT INTO history ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [schedule, *fields.values()],
            )
            return int(cur.lastrowid or 0)

    def update_history(self, hid: int, **fields: Any) -> None:
        fields = {k: v for k, v in fields.items() if k in _HISTORY_COLS}
        if "run_ids" in fields:
            fields["run_ids"] = json.dumps(fields["run_ids"] or [])
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE history SET {sets} WHERE id = ?", [*fields.values(), hid])

    def prune(self, keep: int = KEEP_HISTORY) -> int:
        """Keep the newest ``keep`` history rows of each schedule; how many were deleted."""
        with self._db() as db:
            cur = db.execute(
                "DELETE FROM history WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
                "(PARTITION BY schedule ORDER BY id DESC) AS n FROM history) WHERE n > ?)",
                (int(keep),),
            )
            return cur.rowcount

    def history(
        self, schedule: str | None = None, limit: int = 50, status: str | None = None
    ) -> list[HistoryRow]:
        """Newest first."""
        where, args = [], []
        if schedule is not None:
            where.append("schedule = ?")
            args.append(schedule)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._db() as db:
            rows = db.execute(sql, [*args, int(limit)]).fetchall()
        return [h for h in (self._row(r) for r in rows) if h is not None]

    def last(self, schedule: str, executed: bool = False) -> HistoryRow | None:
        """The newest history row of ``schedule`` (that is not damaged)."""
        sql = "SELECT * FROM history WHERE schedule = ?"
        if executed:
            sql += " AND status != 'skipped'"
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY id DESC LIMIT 20", (schedule,)).fetchall()
        for r in rows:
            row = self._row(r)
            if row is not None:
                return row
        return None

    def _row(self, r: sqlite3.Row) -> HistoryRow | None:
        try:
            data = {k: v for k, v in dict(r).items() if v is not None}
            ids = json.loads(data.get("run_ids") or "[]")
            data["run_ids"] = ids
            return HistoryRow.model_validate(data)
        except (ValueError, TypeError, RecursionError) as exc:
            errors = getattr(exc, "errors", None)
            if callable(errors):  # pydantic: name the field
                e = errors()[0]
                first = f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            else:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._report(
                f"history {dict(r).get('id')}",
                f"{self.path}: history row {dict(r).get('id')} is damaged ({first}): skipped",
            )
            return None

    # --- the daemon's state ---------------------------------------------------------------
    def slots(self) -> dict[str, Slot]:
        """The daemon's saved slots; a damaged one is logged and left out (that schedule starts
        counting from now, as a new one does)."""
        with self._db() as db:
            rows = db.execute("SELECT name, state FROM slots").fetchall()
        out: dict[str, Slot] = {}
        for r in rows:
            try:
                if not isinstance(r["name"], str):
                    raise ValueError(f"name {r['name']!r}")
                out[r["name"]] = Slot.from_json(json.loads(r["state"]))
            except (ValueError, TypeError, RecursionError) as exc:
                self._report(
                    f"slot {r['name']!r}",
                    f"{self.path}: the saved state of schedule {r['name']!r} is damaged "
                    f"({exc}): it starts counting from now",
                )
        return out

    def save_slots(self, slots: dict[str, Slot]) -> None:
        """Replace the saved slots (a no-op when nothing changed since the last save)."""
        state = json.dumps({n: s.to_json() for n, s in slots.items()}, sort_keys=True)
        if state == self._saved:
            return
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM slots")
            db.executemany(
                "INSERT INTO slots (name, state) VALUES (?, ?)",
                [(n, json.dumps(s.to_json())) for n, s in slots.items()],
            )
            db.execute("COMMIT")
        self._saved = state

    def request_run(self, schedule: str) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO requests (schedule, requested) VALUES (?, ?)", (schedule, time.time())
            )

    def take_requests(self) -> list[str]:
        with self._db() as db:
            if db.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is None:
                return []  # the common case, every poll: no write transaction
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT id, schedule FROM requests ORDER BY id").fetchall()
            db.execute("DELETE FROM requests")
            db.execute("COMMIT")
        out = []
        for r in rows:
            if isinstance(r["schedule"], str):
                out.append(r["schedule"])
            else:
                self._report(
                    f"request {r['id']}",
                    f"{self.path}: run-now request {r['id']} is damaged: ignored",
                )
        return out
