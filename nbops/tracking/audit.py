"""The audit log: ``.nbops/audit.jsonl``, one JSON record a line, numbered (``seq`` 1, 2, ...)
and each holding the SHA-256 of the record before it, so an edited, removed, duplicated or
reordered record breaks the chain.

``record(action, **fields)`` is what other modules call (run start/end, promote, rollback,
schedule changes, drift checks). It appends with a single ``os.write`` under an exclusive
``flock`` and reads only the tail of the file, so it is cheap and safe across processes.

The end of the log is kept in two more places, its *witnesses*, so that cutting records off the
end is found too:

- ``.nbops/audit.head``: the seq and hash of the last record, rewritten on every append;
- the tracking store: the experiment tag ``nbops.audit.head.<project key>`` (on MLflow's Default
  experiment), set by appends made in a process that has MLflow loaded and the project's SQLite
  store at hand (the tracking writer's run start/end, promote, rollback, drift, verify), or that
  pass ``store=``. It is a high-water mark: it may lag the log, never run ahead of it.

Appending checks the log's end against the witnesses first. When the log ends before what a
witness says was written (records cut off, the log deleted, ``audit.head`` deleted or rewound),
the append does not silently re-chain: it first writes an ``audit.gap`` record that continues
the numbering and the chain from the witness and says what was missing, then the record asked
for. Nothing asked to be recorded is refused, and :func:`verify` reports the gap for ever.

What this cannot detect (a local file has no secret): anyone who can write ``.nbops/`` can
append well-formed records, so the log proves order and completeness, not authorship. Someone
who rewrites the log *and* ``audit.head`` *and* the store's tag consistently (with the embedded
store, all three are files under ``.nbops/``) rewrites history undetected; records appended after
the store's tag was last set are guarded by ``audit.head`` alone; and with no store tag ever set,
deleting both local files leaves nothing to compare with.

With a server store (``MLFLOW_TRACKING_URI`` a tracking server or a database server), none of
this file is used: :func:`record`, :func:`select` and :func:`check` go to the team's shared trail
on the server (:mod:`nbops.tracking.audit_shared`, which says how it is kept and checked).

Standard library only at import; MLflow is touched only through an already opened store.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops import project, tags
from nbops.errors import InvalidInput

LOG_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
GAP = "audit.gap"
GENESIS = "0" * 64
STORE_TAG = tags.AUDIT_HEAD_PREFIX
STORE_EXPERIMENT = "0"  # MLflow's Default experiment: every SQL store has it
_TAIL = 65536
_RESERVED = ("seq", "ts", "who", "host", "action", "prev", "hash")


def log_path(root: Path | None = None) -> Path:
    return project.state_dir(root) / LOG_NAME


def user() -> str:
    """The OS user (a shared record names the basic-auth user instead: ``audit_shared.who``)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def digest(rec: dict[str, Any]) -> str:
    """The hash of a record: SHA-256 of its canonical JSON without its own ``hash``."""
    body = {k: v for k, v in rec.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Head:
    """Where the log ends (or a witness says it ends): the last record's seq and hash."""

    seq: int
    hash: str


def _as_head(obj: Any) -> Head | None:
    if not isinstance(obj, dict):
        return None
    seq, h = obj.get("seq"), obj.get("hash")
    if type(seq) is not int or seq < 0 or not isinstance(h, str):
        return None
    return Head(seq, h)


# --- the tail of the log ------------------------------------------------------------------------
@dataclass
class _Tail:
    head: Head | None  # the last readable record
    broken: bool  # the last line is not a record (truncated mid-line, edited)
    newline: bool  # the file ends with a newline (or is empty)


def _tail(fd: int) -> _Tail:
    size = os.fstat(fd).st_size
    if size == 0:
        return _Tail(None, False, True)
    newline = os.pread(fd, 1, size - 1) == b"\n"
    start = max(0, size - _TAIL)
    broken = False
    while True:
        chunk = os.pread(fd, size - start, start)
        lines = [ln for ln in chunk.split(b"\n") if ln.strip()]
        if start > 0:
            lines = lines[1:]  # the first may be cut by the window
        for i, ln in enumerate(reversed(lines)):
            try:
                head = _as_head(json.loads(ln))
            except (ValueError, RecursionError):
                head = None
            if head is not None:
                return _Tail(head, broken or i > 0, newline)
        broken = broken or bool(lines)
        if start == 0:
            return _Tail(None, broken, newline)
        start = max(0, start - _TAIL * 4)  # a very long record: read further back


# --- witnesses ----------------------------------------------------------------------------------
def _head_path(root: Path | None) -> Path:
    return project.state_dir(root, create=False) / HEAD_NAME


def read_head(root: Path | None = None) -> tuple[bool, Head | None]:
    """(whether ``audit.head`` exists, the head it holds or None if unreadable)."""
    path = _head_path(root)
    try:  # no symlinks, no FIFOs (a read would block), nothing big
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False, None
    except OSError:
        return True, None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True, None
        text = os.read(fd, 4096).decode("utf-8", errors="replace")
    except OSError:
        return True, None
    finally:
        os.close(fd)
    try:
        return True, _as_head(json.loads(text))
    except (ValueError, RecursionError):
        return True, None


def _write_head(path: Path, rec: dict[str, Any]) -> None:
    head = path.with_name(HEAD_NAME)
    tmp = head.with_name(f".{HEAD_NAME}.{os.getpid()}")
    tmp.unlink(missing_ok=True)  # never write through a link someone left in its place
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, json.dumps({"seq": rec["seq"], "hash": rec["hash"]}).encode())
    finally:
        os.close(fd)
    os.replace(tmp, head)


def store_key(root: Path | None = None) -> str:
    """The store tag naming this project's log: one per host and project directory, so
    projects sharing a tracking server do not overwrite each other's head."""
    where = f"{socket.gethostname()}:{os.path.realpath(project.state_dir(root, create=False))}"
    return STORE_TAG + hashlib.sha256(where.encode("utf-8")).hexdigest()[:16]


def local_store(root: Path | None = None) -> Any:
    """The project's store when it costs nothing to reach: nbops' store module (and so MLflow)
    already imported in this process and the tracking URI a SQLite file that exists. None
    otherwise (never creates a store, never waits on a server)."""
    from nbops.mlflow import store_loaded

    if not store_loaded():  # MLflow not (fully) imported here: not cheap
        return None
    uri = project.tracking_uri(root)
    db = project.sqlite_path(uri)
    if db is None or not db.is_file() or db.stat().st_size == 0:
        return None
    from nbops.mlflow.store import open_store

    return open_store(uri)


def store_head(store: Any, root: Path | None = None) -> Head | None:
    """The head the store holds for this project's log, or None if it holds none."""
    exp = store.get_experiment(STORE_EXPERIMENT)
    raw = (exp.tags or {}).get(store_key(root)) if exp is not None else None
    if not raw:
        return None
    try:
        return _as_head(json.loads(raw))
    except (ValueError, RecursionError):
        return None


def _set_store_head(store: Any, root: Path | None, rec: dict[str, Any]) -> None:
    value = {"seq": rec["seq"], "hash": rec["hash"], "ts": rec["ts"]}
    store.set_experiment_tag(STORE_EXPERIMENT, store_key(root), json.dumps(value))


# --- appending ----------------------------------------------------------------------------------
def stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _line(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()


def _gap(tail: _Tail, head_file: tuple[bool, Head | None], stored: Head | None) -> dict[str, Any]:
    """The ``audit.gap`` fields when the log's end does not match its witnesses, else {}."""
    end = tail.head or Head(0, GENESIS)
    exists, head = head_file
    witnesses = [(w, name) for w, name in ((head, HEAD_NAME), (stored, "the store")) if w]
    ahead = [
        (w, n) for w, n in witnesses if w.seq > end.seq or (w.seq == end.seq != 0 and w != end)
    ]
    if ahead:
        w, name = max(ahead, key=lambda x: x[0].seq)
        return {
            "log_end": end.seq,
            "witness": name,
            "witness_seq": w.seq,
            "continue": w,
            "reason": f"the log ended at record {end.seq} but {name} said record {w.seq} was "
            "written last (records cut off or rewritten)",
        }
    if tail.broken:
        return {
            "log_end": end.seq,
            "continue": end,
            "reason": f"the log's last line after record {end.seq} is not a record "
            "(truncated mid-line or edited)",
        }
    if end.seq > 0 and not exists:
        return {
            "log_end": end.seq,
            "continue": end,
            "reason": f"{HEAD_NAME} was missing (deleted): records after {end.seq} may have been "
            "cut off",
        }
    if end.seq > 0 and head is None:
        return {
            "log_end": end.seq,
            "continue": end,
            "reason": f"{HEAD_NAME} was unreadable (edited)",
        }
    return {}


def _sealed(base: Head, action: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The record after ``base``: who, when, ``action`` and ``fields``, chained and hashed."""
    rec: dict[str, Any] = {
        "seq": base.seq + 1,
        "ts": stamp(),
        "who": user(),
        "host": socket.gethostname(),
        "action": action,
        **fields,
        "prev": base.hash,
    }
    rec["hash"] = digest(rec)
    return rec


def record(
    action: str, *, root: Path | None = None, store: Any = None, **fields: Any
) -> dict[str, Any]:
    """Append one record (who, when, ``action`` and ``fields``) to the project's audit log and
    return it. ``fields`` are JSON values (ids, names, versions); reserved names are refused.
    ``store`` (an open nbops Store) also keeps the head in the tracking store; without it, the
    project's SQLite store is used when this process already has MLflow loaded."""
    if not isinstance(action, str) or not action:
        raise InvalidInput(f"audit action {action!r} is not a non-empty string", "e.g. 'promote'")
    clash = [k for k in fields if k in _RESERVED]
    if clash:
        raise InvalidInput(
            f"audit field {clash[0]!r} is reserved", f"rename it; reserved: {', '.join(_RESERVED)}"
        )
    from nbops.tracking import audit_shared

    uri = getattr(store, "uri", None) or project.tracking_uri(root)
    if audit_shared.is_shared(uri):
        return audit_shared.record(action, fields, root=root, uri=uri)
    path = log_path(root)
    if store is None:
        try:
            store = local_store(root)
        except Exception:  # noqa: BLE001 - the store is a second witness, never a requirement
            store = None
    stored: Head | None = None
    if store is not None:
        try:
            stored = store_head(store, root)  # read before the lock: it can only lag the log
        except Exception:  # noqa: BLE001
            store = None
    try:  # a symlink could point outside the project, a FIFO or device is not a log
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise InvalidInput(
            f"the audit log {path} cannot be opened for appending: {exc.strerror or exc}",
            "it must be a regular file (not a link or a directory); move it aside",
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(
                f"the audit log {path} is not a regular file", "move it aside and append again"
            )
        fcntl.flock(fd, fcntl.LOCK_EX)
        tail = _tail(fd)
        gap = _gap(tail, read_head(root), stored)
        base = tail.head or Head(0, GENESIS)
        out = b"" if tail.newline else b"\n"  # never glue a record onto a cut line
        if gap:
            base = gap.pop("continue")
            grec = _sealed(base, GAP, gap)
            out += _line(grec)
            base = Head(grec["seq"], grec["hash"])
        rec = _sealed(base, action, fields)
        os.write(fd, out + _line(rec))
        _write_head(path, rec)
    finally:
        os.close(fd)  # releases the lock
    if store is not None and (stored is None or rec["seq"] > stored.seq):
        try:
            _set_store_head(store, root, rec)
        except Exception:  # noqa: BLE001 - the local head still holds it
            pass
    return rec


def safe_record(action: str, *, root: Path | None = None, store: Any = None, **fields: Any) -> None:
    """``record`` for code paths that must never fail because of the audit log (run logging)."""
    try:
        record(action, root=root, store=store, **fields)
    except Exception:  # noqa: BLE001 - auditing never breaks logging
        pass


# --- reading ------------------------------------------------------------------------------------
def read(root: Path | None = None) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None if unreadable, raw line) for every line of the log."""
    path = project.state_dir(root, create=False) / LOG_NAME
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (ValueError, RecursionError):
                rec = None
            yield n, rec if isinstance(rec, dict) else None, raw.rstrip("\n")


_REL = re.compile(r"^(\d{1,12}(?:\.\d{1,6})?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_AGO = 200 * 366 * 86400  # two centuries: anything longer is a typo


def parse_since(text: str, now: float | None = None) -> str:
    """``2h``, ``3d``, ``30m``, ``1.5h`` or an ISO date/time → an ISO UTC timestamp to compare
    ``ts`` with. Anything else (negative, huge, garbage) is InvalidInput naming ``--since``."""
    from datetime import datetime, timezone

    shown = repr(text if len(text) <= 60 else text[:60] + "...")
    hint = "write 30m, 2h, 1.5d, 7d or a date like 2026-11-25 or 2026-11-25T09:00"
    t = text.strip()
    m = _REL.match(t)
    if m:
        ago = float(m.group(1)) * _UNIT[m.group(2)]
        if ago > _MAX_AGO:
            raise InvalidInput(f"--since {shown} is more than 200 years ago", hint)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now or time.time()) - ago))
    if t[:1] in ("-", "+") and _REL.match(t[1:]):
        raise InvalidInput(f"--since {shown} is not a duration into the past", hint)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    except (ValueError, OverflowError):
        raise InvalidInput(f"--since {shown} is neither a duration nor a date", hint) from None


def select(
    root: Path | None = None, action: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Records whose action is ``action`` (or starts with ``action.``) and newer than ``since``:
    of the shared trail with a server store, else of the local log."""
    from nbops.tracking import audit_shared

    after = parse_since(since) if since is not None else None
    uri = project.tracking_uri(root)
    if audit_shared.is_shared(uri):
        found = audit_shared.records(uri)
    else:
        found = [rec for _, rec, _ in read(root) if rec is not None]
    return [rec for rec in found if matches(rec, action, after)]


def matches(rec: dict[str, Any], action: str | None, after: str | None) -> bool:
    """Whether ``rec``'s action is ``action`` (or starts with ``action.``) and it is not older
    than ``after`` (an ISO UTC timestamp, :func:`parse_since`)."""
    act = str(rec.get("action", ""))
    if action and act != action and not act.startswith(action + "."):
        return False
    return not (after and str(rec.get("ts", "")) < after)


from nbops.tracking.audit_verify import Problem, Verdict, check, verify  # noqa: E402  (re-exported)

__all__ = [
    "GAP",
    "Head",
    "Problem",
    "Verdict",
    "check",
    "digest",
    "read",
    "read_head",
    "record",
    "safe_record",
    "select",
    "stamp",
    "store_head",
    "user",
    "verify",
]
