"""The shared audit trail: with a server store (``MLFLOW_TRACKING_URI`` an ``http(s)://`` tracking
server, or a PostgreSQL/MySQL/MSSQL database), :func:`nbops.tracking.audit.record` appends here
instead of to ``.nbops/audit.jsonl``, so every teammate's ``nbops audit`` lists one trail and
``nbops audit --verify`` checks it with the credentials they log runs with.

**Where.** In MLflow itself, on the tracking server: the hidden experiment ``nbops-audit``
(tagged ``nbops.hidden=true``), one run per record, the content in the run's params
(:mod:`nbops.mlflow.audit_store`). MLflow refuses to change a logged param, so the server keeps
every record append-only; tags (which can be rewritten) hold only hints.

**A hash DAG, not a line.** Teammates append at the same moment without a lock. Each record
holds ``prev``: the hashes of the trail's heads when it was appended (the newest records no
other record names; ``[]`` for the first), ``seq``: one more than the highest ``seq`` it names,
and ``hash``: SHA-256 of its canonical JSON without ``hash``, like git's commits. Two appends at
the same moment both name the same head and share a ``seq`` (siblings); the next append names
both. No record is lost: each is its own run, created by the server. Records of one project
directory are appended one at a time (a lock file under ``.nbops/``), so they form a chain in
the order they were recorded.

**Who.** ``who`` is ``MLFLOW_TRACKING_USERNAME`` when set (basic-auth: the name the server
checked the password of), else the OS user; ``host`` the machine. MLflow does not stamp a run
with the authenticated user, so ``who`` is what the writer says it is; basic-auth decides who may
append at all (EDIT on the experiment).

**Server unreachable.** A record that cannot be delivered goes to ``.nbops/audit.pending.jsonl``
(unsealed: its ``prev`` and ``hash`` are fixed when it is delivered) and is sent, in the order
recorded, before the next record of the project, by ``nbops audit`` and by ``nbops sync``
(:func:`flush`). A record whose delivery timed out is looked up by its ``id`` before it is sent
again, so it is not appended twice.

**What ``--verify`` checks** (:func:`nbops.tracking.audit_verify.check_shared`): every record's
hash (an edited param: "edited"), that every ``prev`` is a record of the trail (a run deleted from
the database: "removed"), that a run of the trail is not marked deleted (MLflow's delete; it can
be restored), that ``seq`` follows its ``prev``, and that the last record each writer appended is
still there: each writer (host and project directory) keeps it in an experiment tag
``nbops.audit.head.<key>`` and in ``.nbops/audit.shared.json``. Reordering does not apply to a
DAG: a record's place is the records it names, which its hash covers, so moving it is editing it.

What this cannot detect: someone with write access to the server's database who rewrites a
record, every record after it and the writers' tags consistently is caught only by a teammate's
``.nbops/audit.shared.json`` naming a hash that is gone; removing the newest records and every
witness of them leaves nothing to compare with.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import InvalidInput
from nbops.mlflow import credentials
from nbops.mlflow.audit_store import EXPERIMENT  # importing it imports no MLflow
from nbops.tracking.audit import digest, stamp, store_key, user

PENDING_NAME = "audit.pending.jsonl"
LOCK_NAME = "audit.pending.lock"
WITNESS_NAME = "audit.shared.json"
HEAD_WINDOW = 64  # the newest records read to find the heads (forks are merged within it)
MAX_RECORD = 500_000  # characters of a record's JSON (MLflow's params hold ~540 000)
_SHARED_SCHEMES = frozenset({"http", "https", "postgresql", "postgres", "mysql", "mssql"})


def is_shared(uri: str) -> bool:
    """Whether ``uri`` is a store teammates share: a tracking server or a database server."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    return scheme.split("+", 1)[0] in _SHARED_SCHEMES


def who(uri: str | None = None) -> str:
    """The user a shared record names: the server login (``MLFLOW_TRACKING_USERNAME``, or the
    user written into the URI), else the OS user."""
    return credentials.login(uri) or user()


def server_key(uri: str) -> str:
    """``uri`` without credentials (the key of a server in ``audit.shared.json``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def canonical(rec: dict[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), default=str)


# --- pending records ----------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(root: Path | None) -> Iterator[None]:
    """The project's appends one at a time (held while delivering: that keeps their order)."""
    path = project.state_dir(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise InvalidInput(
            f"the audit lock {path} cannot be opened: {exc.strerror or exc}",
            "it must be a regular file (not a link or a directory); move it aside",
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"the audit lock {path} is not a regular file", "move it aside")
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pending_path(root: Path | None = None) -> Path:
    return project.state_dir(root, create=False) / PENDING_NAME


def pending(root: Path | None = None) -> list[dict[str, Any]]:
    """The records waiting to be delivered, in the order recorded (unreadable lines skipped)."""
    path = pending_path(root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read()
    finally:
        os.close(fd)
    out = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec.get("action"):
            out.append(rec)
    return out


def _write_pending(root: Path | None, recs: list[dict[str, Any]]) -> None:
    path = project.state_dir(root) / PENDING_NAME
    if not recs:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{PENDING_NAME}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, "".join(canonical(r) + "\n" for r in recs).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- witnesses ----------------------------------------------------------------------------------
def witness_path(root: Path | None = None) -> Path:
    return project.state_dir(root, create=False) / WITNESS_NAME


def local_witness(uri: str, root: Path | None = None) -> dict[str, Any] | None:
    """The last record this project appended to the server at ``uri`` ({seq, hash, ts})."""
    try:
        data = json.loads(witness_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    got = data.get(server_key(uri)) if isinstance(data, dict) else None
    if isinstance(got, dict) and isinstance(got.get("hash"), str):
        return got
    return None


def _set_local_witness(uri: str, root: Path | None, rec: dict[str, Any]) -> None:
    path = project.state_dir(root) / WITNESS_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[server_key(uri)] = {"seq": rec["seq"], "hash": rec["hash"], "ts": rec["ts"]}
    tmp = path.with_name(f".{WITNESS_NAME}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- records as the server holds them -----------------------------------------------------------
def parse(text: str | None) -> dict[str, Any] | None:
    """A stored record's JSON as a dict, None when it is not one."""
    if text is None:
        return None
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) else None


def intact(rec: dict[str, Any] | None, hash_param: str | None) -> bool:
    """Whether a record's content matches its hash (and the run's ``hash`` param)."""
    return rec is not None and rec.get("hash") == hash_param == digest(rec)


def heads(stored: list[Any]) -> tuple[list[str], int]:
    """(the hashes no record among ``stored`` names, the highest seq): what a new record names
    and follows. Records whose content does not match their hash are left out."""
    recs = [rec for s in stored if intact(rec := parse(s.text), s.hash) and rec is not None]
    named = {p for rec in recs if isinstance(rec.get("prev"), list) for p in rec["prev"]}
    top = [rec for rec in recs if rec["hash"] not in named and isinstance(rec.get("seq"), int)]
    base = max((int(rec["seq"]) for rec in top), default=0)
    return sorted(str(rec["hash"]) for rec in top), base


# --- appending ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """What one attempt to deliver the project's records did."""

    sent: list[dict[str, Any]]  # the records delivered (sealed; or as recorded, when found there)
    left: int  # records still pending
    error: str | None  # why the rest were not delivered


def _describe(exc: BaseException, uri: str) -> str:
    from nbops.errors import NbopsError
    from nbops.mlflow.failures import access_status

    if isinstance(exc, NbopsError):
        return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    status = access_status(exc)
    if status is not None:
        err = credentials.refused(uri, status, "create_run", f"experiment '{EXPERIMENT}'")
        return f"{err.message}; {err.hint}"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return f"the server {credentials.server(uri)} did not take it: {first}"


def _deliver(uri: str, root: Path | None, todo: list[dict[str, Any]], retried: int) -> Delivery:
    """Seal and append ``todo`` in order; the first ``retried`` may have arrived already."""
    from nbops.mlflow.audit_store import audit_store

    sent: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    error: str | None = None
    try:
        st = audit_store(uri)
        found = st.trail(create=True)
        if found is None or found.deleted:
            raise InvalidInput(
                f"the audit trail's experiment {EXPERIMENT} on {credentials.server(uri)} "
                "is deleted",
                "an admin restores it: mlflow experiments restore --experiment-id "
                + (found.experiment_id if found else "ID"),
            )
        trail = found
        for i, body in enumerate(todo):
            if i < retried and st.has(trail, str(body["id"])):
                sent.append(body)  # a delivery that timed out had arrived
                last = None
                continue
            if last is None:
                prev, base = heads(st.newest(trail, HEAD_WINDOW))
            else:
                prev, base = [str(last["hash"])], int(last["seq"])
            rec: dict[str, Any] = {"seq": base + 1, **body, "prev": prev}
            rec["hash"] = digest(rec)
            st.append(
                trail,
                seq=rec["seq"],
                digest=rec["hash"],
                record_id=str(body["id"]),
                text=canonical(rec),
                name=f"{rec['seq']} {body.get('action')}",
                who=str(body.get("who", "")),
            )
            sent.append(rec)
            last = rec
    except Exception as exc:  # noqa: BLE001 - the record stays pending, never lost
        error = _describe(exc, uri)
    if last is not None:
        try:
            _set_local_witness(uri, root, last)
        except OSError:
            pass
        value = {k: last[k] for k in ("seq", "hash", "ts", "who", "host")}
        try:
            st.set_writer_head(trail, store_key(root), json.dumps(value))
        except Exception:  # noqa: BLE001 - a hint; the local witness holds it too
            pass
    return Delivery(sent, len(todo) - len(sent), error)


def record(
    action: str, fields: dict[str, Any], *, root: Path | None = None, uri: str | None = None
) -> dict[str, Any]:
    """Append one record to the shared trail (after the project's pending ones) and return it
    sealed; when the server cannot take it, it is kept pending and returned unsealed (no
    ``hash``)."""
    body: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "ts": stamp(),
        "who": who(uri or project.tracking_uri(root)),
        "host": socket.gethostname(),
        "action": action,
        **fields,
    }
    text = canonical(body)
    if len(text) > MAX_RECORD:
        raise InvalidInput(
            f"audit record {action!r} is {len(text)} characters of JSON (at most {MAX_RECORD})",
            "record ids and names, not contents",
        )
    body = json.loads(text)  # JSON values only: the hash is of what is stored
    uri = uri or project.tracking_uri(root)
    with _locked(root):
        queued = pending(root)
        todo = [*queued, body]
        done = _deliver(uri, root, todo, retried=len(queued))
        if done.left or queued:
            _write_pending(root, todo[len(done.sent) :])
    for rec in done.sent:
        if rec.get("id") == body["id"] and "hash" in rec:
            return rec
    return body


def flush(root: Path | None = None, uri: str | None = None) -> Delivery:
    """Deliver the project's pending records (``nbops sync``, ``nbops audit``)."""
    if not pending(root):
        return Delivery([], 0, None)
    uri = uri or project.tracking_uri(root)
    with _locked(root):
        queued = pending(root)
        if not queued:
            return Delivery([], 0, None)
        done = _deliver(uri, root, queued, retried=len(queued))
        _write_pending(root, queued[len(done.sent) :])
    return done


# --- reading ------------------------------------------------------------------------------------
def order(rec: dict[str, Any]) -> tuple[int, str, str]:
    """The listing order: by seq (a record after every record it names), then time and hash."""
    seq = rec.get("seq")
    return (seq if isinstance(seq, int) else 0, str(rec.get("ts", "")), str(rec.get("hash", "")))


def records(uri: str) -> list[dict[str, Any]]:
    """Every readable record of the trail on ``uri`` (deleted runs left out), oldest first."""
    from nbops.mlflow.audit_store import audit_store

    st = audit_store(uri)
    trail = st.trail(create=False)
    if trail is None:
        return []
    out = [rec for s in st.records(trail) if not s.deleted and (rec := parse(s.text)) is not None]
    return sorted(out, key=order)


__all__ = [
    "Delivery",
    "flush",
    "heads",
    "intact",
    "is_shared",
    "local_witness",
    "parse",
    "pending",
    "record",
    "records",
    "server_key",
    "who",
]
