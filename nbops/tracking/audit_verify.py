"""Checking the audit log (``nbops audit --verify``): walk the hash chain and the sequence numbers,
then compare where the log ends with its witnesses (``audit.head`` and the tracking store's tag,
see :mod:`nbops.tracking.audit` for what they are and what they cannot catch).

Every problem names the first record that is wrong or missing (its ``seq``) and the line of the
file where that shows.

With a server store, :func:`check` checks the team's shared trail instead (:func:`check_shared`;
what it checks and cannot catch is in :mod:`nbops.tracking.audit_shared`): a problem names the
record's run on the server instead of a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops import project
from nbops.errors import NbopsError
from nbops.tracking.audit import (
    GAP,
    GENESIS,
    HEAD_NAME,
    LOG_NAME,
    Head,
    digest,
    read,
    read_head,
    store_head,
    store_key,
)


@dataclass
class Problem:
    line: int
    seq: Any  # the first record that is wrong or missing
    message: str
    weak: bool = field(default=False, compare=False)  # a missing witness, not a seen loss
    where: str = ""  # on the shared trail: the run (or tag) that shows it, instead of a line

    def __str__(self) -> str:
        if self.where:
            return f"{self.where} (record {self.seq}): {self.message}"
        return f"line {self.line} (record {self.seq}): {self.message}"


@dataclass
class Verdict:
    records: int  # records of the intact chain before the first problem (shared: intact ones)
    problem: Problem | None
    checked: list[str] = field(default_factory=list)  # the witnesses compared
    notes: list[str] = field(default_factory=list)  # witnesses that could not be read
    shared: str = ""  # the shared trail checked (its experiment and server), "" for the local log
    writers: int = 0  # on the shared trail: the users and hosts whose records were checked
    problems: list[Problem] = field(default_factory=list)  # on the shared trail: all, first first


def _walk(
    lines: list[tuple[int, dict[str, Any] | None, str]],
) -> tuple[int, Head, dict[int, tuple[int, str]], int, Problem | None]:
    """(records intact, where they end, seq -> (line, hash) of them, last line, problem)."""
    prev, expect, n, last_line = GENESIS, 1, 0, 0
    chain: dict[int, tuple[int, str]] = {}
    seen: dict[Any, str] = {}
    for _, rec, _ in lines:
        if rec is not None and isinstance(rec.get("seq"), int):
            seen.setdefault(rec["seq"], str(rec.get("hash")))
    for line, rec, _raw in lines:
        last_line = line
        if rec is None:
            what = "is not a JSON record (truncated mid-line or edited)"
            return n, Head(expect - 1, prev), chain, line, Problem(line, expect, what)
        seq = rec.get("seq")
        if rec.get("hash") != digest(rec):
            p = Problem(line, seq, f"record {seq}'s content does not match its hash (edited)")
            return n, Head(expect - 1, prev), chain, line, p
        if seq != expect:
            if isinstance(seq, int) and seq > expect and expect not in seen:
                gone = (
                    f"record {expect} is"
                    if seq == expect + 1
                    else f"records {expect}..{seq - 1} are"
                )
                msg = f"{gone} missing before record {seq} (removed)"
                if rec.get("action") == GAP:
                    msg += f"; the append at {rec.get('ts')} found: {rec.get('reason')}"
                p = Problem(line, expect, msg)
            elif (
                isinstance(seq, int)
                and seq < expect
                and chain.get(seq, (0, ""))[1] == rec.get("hash")
            ):
                p = Problem(line, seq, f"record {seq} appears a second time (duplicated)")
            else:
                p = Problem(
                    line,
                    expect,
                    f"record {seq} is out of order: record {expect} belongs here "
                    "(reordered, duplicated or replaced)",
                )
            return n, Head(expect - 1, prev), chain, line, p
        if rec.get("prev") != prev:
            p = Problem(
                line,
                seq,
                f"record {seq} does not chain to record {expect - 1} before it (one of them "
                "was replaced, or records were reordered)",
            )
            return n, Head(expect - 1, prev), chain, line, p
        if rec.get("action") == GAP:
            p = Problem(
                line,
                seq,
                f"record {seq} marks a gap: the append at {rec.get('ts')} found: "
                f"{rec.get('reason')}",
            )
            return n, Head(expect - 1, prev), chain, line, p
        prev = str(rec["hash"])
        chain[seq] = (line, prev)
        expect, n = expect + 1, n + 1
    return n, Head(expect - 1, prev), chain, last_line, None


def _against(
    witness: Head, name: str, end: Head, chain: dict[int, tuple[int, str]], last_line: int
) -> Problem | None:
    if witness.seq > end.seq:
        lost = (
            f"record {end.seq + 1}"
            if witness.seq == end.seq + 1
            else f"records {end.seq + 1}..{witness.seq}"
        )
        return Problem(
            last_line + 1,
            end.seq + 1,
            f"the log ends at record {end.seq} but {name} says record {witness.seq} was "
            f"written last ({lost} removed from the end"
            + (", or the log deleted)" if end.seq == 0 else ")"),
        )
    line, h = chain.get(witness.seq, (last_line, ""))
    if witness.seq > 0 and h != witness.hash:
        return Problem(
            line,
            witness.seq,
            f"record {witness.seq} is not the one {name} says was written (the log was "
            f"rewritten from record {witness.seq} on, or deleted and started again)",
        )
    return None


def _project_store(root: Path | None) -> tuple[Any, str | None]:
    """(the project's store or None, why not) without creating a store that is not there."""
    uri = project.tracking_uri(root)
    db = project.sqlite_path(uri)
    if db is not None and (not db.is_file() or db.stat().st_size == 0):
        return None, f"no tracking store yet ({db}), so only {HEAD_NAME} was compared"
    from nbops.mlflow.store import open_store

    try:
        return open_store(uri), None
    except NbopsError as err:
        return None, f"the tracking store's head could not be read: {err.message}"


def check(root: Path | None = None, *, store: Any = None, use_store: bool = True) -> Verdict:
    """Walk the chain and compare its end with ``audit.head`` and the store's head (``store``,
    else the project's store if it exists; ``use_store=False`` compares the local head only).
    With a server store: :func:`check_shared`."""
    from nbops.tracking.audit_shared import is_shared

    uri = getattr(store, "uri", None) or project.tracking_uri(root)
    if is_shared(uri):
        return check_shared(root, uri=uri)
    lines = list(read(root))
    n, end, chain, last_line, problem = _walk(lines)
    found = [problem] if problem is not None else []
    verdict = Verdict(n, None)
    exists, head = read_head(root)
    verdict.checked.append(HEAD_NAME)
    if not exists:
        if end.seq > 0 or lines:
            found.append(
                Problem(
                    last_line + 1,
                    end.seq + 1,
                    f"{HEAD_NAME} is missing (deleted): nothing local says whether records after "
                    f"record {end.seq} were removed",
                    weak=True,
                )
            )
    elif head is None:
        found.append(
            Problem(last_line + 1, end.seq + 1, f"{HEAD_NAME} is unreadable (edited)", weak=True)
        )
    else:
        p = _against(head, HEAD_NAME, end, chain, last_line)
        if p is not None:
            found.append(p)
    if use_store:
        note = None
        if store is None:
            store, note = _project_store(root)
        if store is not None:
            try:
                stored = store_head(store, root)
            except Exception as exc:  # noqa: BLE001 - an unreadable witness is said, not fatal
                stored, note = None, f"the tracking store's head could not be read: {exc}"
                store = None
        if store is not None:
            name = f"the store's head (tag {store_key(root)} in {store.uri})"
            verdict.checked.append("the tracking store")
            if stored is not None:
                p = _against(stored, name, end, chain, last_line)
                if p is not None:
                    found.append(p)
            elif end.seq > 0:
                verdict.notes.append(
                    "the tracking store holds no head for this log yet (it is set by appends "
                    "made with the store open: runs, promote, rollback, drift, verify)"
                )
        if note:
            verdict.notes.append(note)
    if found:
        # the earliest bad record; a witness that shows a loss wins over a missing head
        verdict.problem = min(found, key=lambda p: (p.seq if isinstance(p.seq, int) else 0, p.weak))
    return verdict


def verify(
    root: Path | None = None, *, store: Any = None, use_store: bool = True
) -> tuple[int, Problem | None]:
    """Walk the chain; return (records checked, the first problem or None)."""
    v = check(root, store=store, use_store=use_store)
    return v.records, v.problem


# --- the shared trail ---------------------------------------------------------------------------
def _seq(value: Any, fallback: Any = None) -> Any:
    return value if type(value) is int else fallback


def _rank(p: Problem) -> tuple[int, bool]:
    return (p.seq if type(p.seq) is int else 0, p.weak)


def _what(rec: dict[str, Any]) -> str:
    return f"{rec.get('action')} by {rec.get('who')}@{rec.get('host')} at {rec.get('ts')}"


def check_shared(root: Path | None = None, *, uri: str | None = None) -> Verdict:
    """Check the team's shared trail on the server at ``uri`` (default: the project's): every
    record's hash, every ``prev`` link, no run of it marked deleted, ``seq`` after its ``prev``,
    and the writers' last appends (the experiment's tags and this project's
    ``audit.shared.json``) still there. Opening the store fails as every store does
    (StoreUnavailable, AccessDenied)."""
    from nbops.mlflow.audit_store import EXPERIMENT, audit_store
    from nbops.mlflow.credentials import server
    from nbops.tracking import audit_shared as sh

    uri = uri or project.tracking_uri(root)
    verdict = Verdict(0, None, shared=f"experiment {EXPERIMENT} on {server(uri)}")
    st = audit_store(uri)
    trail = st.trail(create=False)
    found: list[Problem] = []
    witnesses: list[tuple[str, str, dict[str, Any]]] = []  # (where, what it is, {seq, hash})
    mine = sh.local_witness(uri, root)
    if mine is not None:
        witnesses.append((sh.WITNESS_NAME, "the last record this project appended", mine))
    good: dict[str, dict[str, Any]] = {}  # hash -> intact record
    run_of: dict[str, str] = {}
    deleted: set[str] = set()
    claimed: set[str] = set()  # the hashes edited records claim (named by their problem)
    if trail is not None and trail.deleted:
        found.append(
            Problem(
                0,
                0,
                f"the trail's experiment {EXPERIMENT} is deleted: an admin restores it with "
                f"`mlflow experiments restore --experiment-id {trail.experiment_id}`",
                where=f"experiment {trail.experiment_id}",
            )
        )
    if trail is not None:
        for key, raw in sorted(st.writer_heads(trail).items()):
            try:
                w = json.loads(raw)
            except (ValueError, RecursionError):
                w = None
            if isinstance(w, dict) and isinstance(w.get("hash"), str):
                what = f"the last record {w.get('who')}@{w.get('host')} appended"
                witnesses.append((f"tag {key}", what, w))
        for s in st.records(trail):
            run = f"run {s.run_id}"
            rec = sh.parse(s.text)
            if s.text is None and s.hash is None:
                verdict.notes.append(f"{run} of the trail holds no record (an interrupted append)")
                continue
            if rec is None:
                what = "its record param is gone" if s.text is None else "its record is not JSON"
                found.append(Problem(0, _seq(s.seq, "?"), f"{what} (edited)", where=run))
                continue
            seq = _seq(rec.get("seq"), _seq(s.seq, "?"))
            if not sh.intact(rec, s.hash) or (s.seq is not None and s.seq != rec.get("seq")):
                claimed.update(str(x) for x in (rec.get("hash"), s.hash) if x)
                what = f"record {seq}'s content does not match its hash (edited)"
                found.append(Problem(0, seq, what, where=run))
                continue
            h = str(rec["hash"])
            if h in good:
                verdict.notes.append(
                    f"record {seq} is stored twice (runs {run_of[h]} and {s.run_id}): a retried "
                    "delivery; it counts once"
                )
                continue
            good[h], run_of[h] = rec, s.run_id
            if s.deleted:
                deleted.add(h)
                found.append(
                    Problem(
                        0,
                        seq,
                        f"record {seq} ({_what(rec)}) was deleted (its run is marked deleted): "
                        f"an admin restores it with `mlflow runs restore --run-id {s.run_id}`",
                        where=run,
                    )
                )
    for h, rec in good.items():
        seq, run = rec.get("seq"), f"run {run_of[h]}"
        prev = rec.get("prev")
        if type(seq) is not int or not isinstance(prev, list):
            found.append(
                Problem(0, _seq(seq, "?"), "it has no seq or prev list (forged)", where=run)
            )
            continue
        missing = [p for p in prev if p not in good]
        for p in missing:
            if p in claimed:
                continue  # the edited record it names is reported itself
            found.append(
                Problem(
                    0,
                    seq - 1,
                    f"record {seq} ({_what(rec)}) names the record {str(p)[:12]} before it, "
                    "which is not on the trail (removed from the server's database)",
                    where=run,
                )
            )
        parents = [int(good[p]["seq"]) for p in prev if p in good]
        if not missing and seq != 1 + max(parents, default=0):
            found.append(
                Problem(
                    0,
                    seq,
                    f"record {seq} does not follow the records it names (the highest is record "
                    f"{max(parents, default=0)}): forged",
                    where=run,
                )
            )
    top = max((int(rec["seq"]) for rec in good.values() if type(rec.get("seq")) is int), default=0)
    for where, what, w in witnesses:
        h = str(w["hash"])
        if h in good or h in claimed:
            continue
        seq = _seq(w.get("seq"), "?")
        found.append(
            Problem(
                0,
                seq,
                f"record {seq} ({h[:12]}), {what}, is not on the trail (removed; the newest "
                f"record on it is record {top})",
                where=where,
            )
        )
    live = [rec for h, rec in good.items() if h not in deleted]
    verdict.records = len(live)
    verdict.writers = len({(rec.get("who"), rec.get("host")) for rec in live})
    verdict.checked += [
        "every record's hash",
        "every link to the records before it",
        f"the last appends of {len(witnesses)} writer(s)",
    ]
    waiting = len(sh.pending(root))
    if waiting:
        verdict.notes.append(
            f"{waiting} record(s) of this project wait in .nbops/{sh.PENDING_NAME}, not on the "
            "trail yet: `nbops sync` or the next record delivers them"
        )
    if any(True for _ in read(root)):
        verdict.notes.append(
            f".nbops/{LOG_NAME} (the log of the embedded store) is not part of the shared trail: "
            "unset MLFLOW_TRACKING_URI to check it"
        )
    verdict.problems = sorted(found, key=_rank)
    verdict.problem = verdict.problems[0] if found else None
    return verdict


__all__ = ["LOG_NAME", "Problem", "Verdict", "check", "check_shared", "verify"]
