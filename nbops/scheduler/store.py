"""Persistence under ``.nbops/scheduler/``: one SQLite file (WAL) with the schedules added from
the CLI, every execution's history row, the daemon's slots (cursor, queue, running execution) and
run-now requests. Safe for the daemon, CLI calls and the Jupyter server at the same time."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import NbopsError
from nbops.scheduler.core import Slot
from nbops.scheduler.model import HistoryRow, ScheduleSpec

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

KEEP_HISTORY = 1000
"""History rows kept per schedule (the daemon prunes older ones)."""
_HISTORY_COLS = [f for f in HistoryRow.model_fields if f != "id"]


def scheduler_dir(root: Path) -> Path:
    d = project.state_dir(root) / "scheduler"
    d.mkdir(parents=True, exist_ok=True)
    return d


class Store:
    """The scheduler's SQLite database of one project."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = scheduler_dir(root)
        self.path = self.dir / "scheduler.db"
        self._saved: str | None = None
        try:
            with self._db() as db:
                db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise NbopsError(
                f"cannot open the scheduler database {self.path}: {exc}",
                "check that .nbops/ is writable; delete the file to start over (history is lost)",
            ) from None

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            yield conn
        finally:
            conn.close()

    # --- schedules added from the CLI / API -----------------------------------------------
    def schedules(self) -> list[ScheduleSpec]:
        with self._db() as db:
            rows = db.execute("SELECT spec FROM schedules ORDER BY name").fetchall()
        return [ScheduleSpec.model_validate_json(r["spec"]) for r in rows]

    def add_schedule(self, spec: ScheduleSpec) -> bool:
        """Insert; False if the name is taken."""
        with self._db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO schedules (name, spec, created) VALUES (?, ?, ?)",
                (spec.name, spec.model_dump_json(), time.time()),
            )
            return cur.rowcount == 1

    def remove_schedule(self, name: str) -> bool:
        with self._db() as db:
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
        return [_row(r) for r in rows]

    def last(self, schedule: str, executed: bool = False) -> HistoryRow | None:
        sql = "SELECT * FROM history WHERE schedule = ?"
        if executed:
            sql += " AND status != 'skipped'"
        with self._db() as db:
            r = db.execute(sql + " ORDER BY id DESC LIMIT 1", (schedule,)).fetchone()
        return _row(r) if r else None

    # --- the daemon's state ---------------------------------------------------------------
    def slots(self) -> dict[str, Slot]:
        with self._db() as db:
            rows = db.execute("SELECT name, state FROM slots").fetchall()
        return {r["name"]: Slot.from_json(json.loads(r["state"])) for r in rows}

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
        return [r["schedule"] for r in rows]


def _row(r: sqlite3.Row) -> HistoryRow:
    data = {k: v for k, v in dict(r).items() if v is not None}
    data["run_ids"] = json.loads(data.get("run_ids") or "[]")
    return HistoryRow.model_validate(data)
