"""The audit log: ``.nbops/audit.jsonl``, one JSON record a line, each holding the SHA-256 of the
record before it, so an edited, removed or reordered record breaks the chain.

``record(action, **fields)`` is what other modules call (run start/end, promote, rollback,
schedule changes, drift checks). It appends with a single ``os.write`` under an exclusive
``flock`` and reads only the tail of the file, so it is cheap and safe across processes. The
chain's head (last sequence number and hash) is kept beside it in ``audit.head``, so removing the
last records is detected too. Standard library only.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import InvalidInput

LOG_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
GENESIS = "0" * 64
_TAIL = 65536
_RESERVED = ("seq", "ts", "who", "host", "action", "prev", "hash")


def log_path(root: Path | None = None) -> Path:
    return project.state_dir(root) / LOG_NAME


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def digest(rec: dict[str, Any]) -> str:
    """The hash of a record: SHA-256 of its canonical JSON without its own ``hash``."""
    body = {k: v for k, v in rec.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - _TAIL)
    while True:
        chunk = os.pread(fd, size - start, start)
        lines = [ln for ln in chunk.split(b"\n") if ln.strip()]
        if lines and (start == 0 or len(lines) > 1):
            return lines[-1]
        if start == 0:
            return None
        start = max(0, start - _TAIL * 4)  # a very long record: read further back


def record(action: str, *, root: Path | None = None, **fields: Any) -> dict[str, Any]:
    """Append one record (who, when, ``action`` and ``fields``) to the project's audit log and
    return it. ``fields`` are JSON values (ids, names, versions); reserved names are refused."""
    if not isinstance(action, str) or not action:
        raise InvalidInput(f"audit action {action!r} is not a non-empty string", "e.g. 'promote'")
    clash = [k for k in fields if k in _RESERVED]
    if clash:
        raise InvalidInput(
            f"audit field {clash[0]!r} is reserved", f"rename it; reserved: {', '.join(_RESERVED)}"
        )
    path = log_path(root)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _last_line(fd)
        prev, seq = GENESIS, 0
        if last is not None:
            try:
                tail = json.loads(last)
                prev, seq = str(tail["hash"]), int(tail["seq"])
            except (ValueError, KeyError, TypeError):
                prev = hashlib.sha256(last).hexdigest()  # a broken tail: chain on its bytes
        rec: dict[str, Any] = {
            "seq": seq + 1,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            + f".{int(time.time() * 1000) % 1000:03d}Z",
            "who": _who(),
            "host": socket.gethostname(),
            "action": action,
            **fields,
            "prev": prev,
        }
        rec["hash"] = digest(rec)
        line = json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str) + "\n"
        os.write(fd, line.encode("utf-8"))
        _write_head(path, rec)
    finally:
        os.close(fd)  # releases the lock
    return rec


def _write_head(path: Path, rec: dict[str, Any]) -> None:
    head = path.with_name(HEAD_NAME)
    tmp = head.with_name(f".{HEAD_NAME}.{os.getpid()}")
    tmp.write_text(json.dumps({"seq": rec["seq"], "hash": rec["hash"]}))
    os.replace(tmp, head)


def safe_record(action: str, *, root: Path | None = None, **fields: Any) -> None:
    """``record`` for code paths that must never fail because of the audit log (run logging)."""
    try:
        record(action, root=root, **fields)
    except Exception:  # noqa: BLE001 - auditing never breaks logging
        pass


# --- reading and verifying ----------------------------------------------------------------------
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
            except ValueError:
                rec = None
            yield n, rec if isinstance(rec, dict) else None, raw.rstrip("\n")


@dataclass
class Problem:
    line: int
    seq: Any
    message: str

    def __str__(self) -> str:
        return f"line {self.line} (record {self.seq}): {self.message}"


def verify(root: Path | None = None) -> tuple[int, Problem | None]:
    """Walk the chain; return (records checked, the first problem or None)."""
    prev, expect_seq, n = GENESIS, 1, 0
    last_line = 0
    lines = list(read(root))
    seen = {r.get("seq") for _, r, _ in lines if r is not None}
    for line, rec, _raw in lines:
        last_line = line
        if rec is None:
            return n, Problem(line, "?", "is not a JSON record (edited or truncated)")
        seq = rec.get("seq")
        if rec.get("hash") != digest(rec):
            return n, Problem(line, seq, "its content does not match its hash (edited)")
        if seq != expect_seq:
            if isinstance(seq, int) and seq > expect_seq and expect_seq not in seen:
                msg = f"records {expect_seq}..{seq - 1} are missing before it (removed)"
            else:
                msg = f"is out of order (expected record {expect_seq}: reordered or duplicated)"
            return n, Problem(line, seq, msg)
        if rec.get("prev") != prev:
            return n, Problem(line, seq, "does not chain to the record before it (reordered)")
        prev, expect_seq, n = str(rec["hash"]), expect_seq + 1, n + 1
    head_path = project.state_dir(root, create=False) / HEAD_NAME
    if head_path.is_file():
        try:
            head = json.loads(head_path.read_text())
        except ValueError:
            head = {}
        last_seq = expect_seq - 1
        if head.get("seq") != last_seq or (last_seq and head.get("hash") != prev):
            return n, Problem(
                last_line + 1,
                head.get("seq"),
                f"the log ends at record {last_seq} but its head says record "
                f"{head.get('seq')} was written last (records removed from the end)",
            )
    return n, None


_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> str:
    """``2h``, ``3d``, ``30m`` or an ISO date/time → an ISO UTC timestamp to compare ``ts`` with."""
    t = text.strip()
    m = _REL.match(t)
    if m:
        ago = (now or time.time()) - float(m.group(1)) * _UNIT[m.group(2)]
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ago))
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is neither a duration nor a date",
            "write 30m, 2h, 7d or a date like 2026-11-25 or 2026-11-25T09:00",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def select(
    root: Path | None = None, action: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Records whose action is ``action`` (or starts with ``action.``) and newer than ``since``."""
    after = parse_since(since) if since else None
    out = []
    for _, rec, _ in read(root):
        if rec is None:
            continue
        act = str(rec.get("action", ""))
        if action and act != action and not act.startswith(action + "."):
            continue
        if after and str(rec.get("ts", "")) < after:
            continue
        out.append(rec)
    return out
