"""Orphaned spools: runs whose process (and writer) died before everything reached the store.

Found by anyone who can take a spool's lock: the next writer on the same store, and ``nbops sync``.
Their data is delivered and the run, if it never ended, is marked KILLED: never left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import envvars, tags
from nbops.tracking.spool import End, Spool, Tag, lock_wait, pid_alive, spool_root, try_lock

if TYPE_CHECKING:
    from nbops.mlflow.store import TrackingStore


@dataclass
class Outcome:
    spool: str
    run_id: str | None
    status: str  # "ended", "KILLED", "busy", "unreachable", "broken"
    records: int = 0
    message: str = ""


def spool_dirs(state: Path) -> list[Path]:
    root = spool_root(state)
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "log.jsonl").exists())


def sweep_done(state: Path, older_than: float = 60.0) -> int:
    """Remove spools that were fully delivered but never collected by their (gone) process."""
    root = spool_root(state)
    if not root.is_dir():
        return 0
    n = 0
    now = time.time()
    for d in root.iterdir():
        if d.is_dir() and not (d / "log.jsonl").exists():
            try:
                age = now - d.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > older_than:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
    return n


def owner_alive(d: Path) -> bool:
    """Whether the process that logs into this spool is still running (on this host)."""
    try:
        start = Spool(d).start_record()
    except (OSError, ValueError):
        return False
    if start.get("host") != socket.gethostname():
        return True  # another machine's process on a shared disk: not ours to judge
    return pid_alive(int(start.get("pid") or 0))


def claim(d: Path, wait: float) -> int | None:
    """Lock an orphan spool. A spool whose owner died but whose writer is still finishing is
    waited for (up to ``wait`` s); one whose owner is alive is left alone."""
    fd = try_lock(d)
    if fd is None and wait > 0 and not owner_alive(d):
        fd = lock_wait(d, wait)
    return fd


def recover(
    state: Path,
    uri: str | None = None,
    wait: float = 0.0,
    exclude: Path | None = None,
    stores: dict[str, TrackingStore] | None = None,
) -> list[Outcome]:
    """Deliver every orphaned spool under ``state`` (only those for ``uri`` when given)."""
    from nbops.errors import StoreUnavailable
    from nbops.mlflow.store import TrackingStore
    from nbops.tracking.delivery import Delivery

    opened: dict[str, TrackingStore] = stores if stores is not None else {}
    out: list[Outcome] = []
    for d in spool_dirs(state):
        if exclude is not None and d.resolve() == exclude.resolve():
            continue
        fd = claim(d, wait)
        if fd is None and not (d / "log.jsonl").exists():
            continue  # its writer finished it while we waited
        if fd is None:
            out.append(
                Outcome(d.name, _run_id(d), "busy", message="being logged by a live process")
            )
            continue
        try:
            sp = Spool(d, fd)
            try:
                start = sp.start_record()
            except (OSError, ValueError) as exc:
                out.append(Outcome(d.name, None, "broken", message=str(exc)))
                continue
            suri = start.get("uri") or ""
            if uri is not None and suri != uri:
                continue
            try:
                store = opened.get(suri)
                if store is None:
                    store = opened[suri] = TrackingStore(suri)
                delivery = Delivery(sp, store)
                status = delivery.finish_orphan()
                out.append(
                    Outcome(
                        d.name,
                        delivery.run_id,
                        status,
                        delivery.delivered,
                        "; ".join(delivery.dropped),
                    )
                )
            except StoreUnavailable as exc:
                out.append(Outcome(d.name, _run_id(d), "unreachable", message=exc.message))
            except Exception as exc:  # noqa: BLE001 - report and leave the spool for next time
                out.append(
                    Outcome(
                        d.name,
                        _run_id(d),
                        "unreachable",
                        message=str(exc).splitlines()[0][:300] if str(exc) else repr(exc),
                    )
                )
        finally:
            os.close(fd)
    return out


def _run_id(d: Path) -> str | None:
    info = Spool(d).run_info()
    return info["run_id"] if info else None


STALE_AFTER_S = envvars.seconds(envvars.STALE_AFTER, 600.0)


def reap_stale(
    state: Path, store: TrackingStore, stale_after: float = STALE_AFTER_S
) -> list[Outcome]:
    """Mark KILLED the nbops runs left RUNNING whose process is gone and whose spool is not here.

    A run is gone when it was logged from this host by a pid that no longer runs, or when its
    writer's heartbeat (``nbops.heartbeat``, every minute) is older than ``stale_after`` seconds.
    Runs with a spool on this machine are left to :func:`recover`, which delivers them first.
    """
    import time as _time

    here = socket.gethostname()
    local = {d.name for d in spool_dirs(state)}
    now_ms = _time.time_ns() // 1_000_000
    exp_ids = [str(e.experiment_id) for e in store.experiments()]
    if not exp_ids:
        return []
    running = store.search_runs(exp_ids, "attributes.status = 'RUNNING'", None, 10_000)
    out: list[Outcome] = []
    for r in running:
        run_tags = r.data.tags
        local_id = run_tags.get(tags.SPOOL)
        if not local_id or local_id in local:
            continue
        try:
            pid = int(run_tags.get(tags.PID, "0"))
            beat = int(run_tags.get(tags.HEARTBEAT, r.info.start_time or 0))
        except ValueError:
            continue
        same_host = run_tags.get(tags.HOST) == here
        if same_host and pid_alive(pid):
            continue
        if not same_host and now_ms - beat < stale_after * 1000:
            continue
        why = (
            f"process {pid} on {here} is gone"
            if same_host
            else f"no heartbeat from {run_tags.get(tags.HOST)} for {(now_ms - beat) // 1000} s"
        )
        end_ms = now_ms if same_host else beat  # the last sign of life we know of
        store.log_batch(r.info.run_id, tags=[(tags.END_REASON, why)])
        store.set_terminated(r.info.run_id, "KILLED", end_ms)
        out.append(Outcome(local_id, r.info.run_id, "KILLED", message=why))
    return out


# --- dead pipeline executions --------------------------------------------------------------------
# A live ``nbops run`` keeps a record of itself in ``.nbops/pipeline/executions/<pid>.json``: its
# pid and process start time, the stages it set out to run, those that reached an end, and the
# spools of the runs it made. Its runs' spools are locked by the runner process itself, so when
# it is killed they become orphans; the record tells which execution they belonged to, and which
# stages never finished, so that the next nbops command ends those runs KILLED (naming the dead
# runner), delivers what they logged and records the stages for ``nbops run --resume``.

EXECUTIONS = ("pipeline", "executions")


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), None if it is gone or
    unknown: with the pid it names one process, not whichever process reuses the pid later."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def _executions_dir(state: Path) -> Path:
    return state.joinpath(*EXECUTIONS)


class ExecutionRecord:
    """What a live ``nbops run`` writes about itself (see the comment above)."""

    def __init__(self, state: Path, stages: list[str]) -> None:
        self.path = _executions_dir(state) / f"{os.getpid()}.json"
        self.data: dict[str, object] = {
            "pid": os.getpid(),
            "start": process_start(os.getpid()),
            "host": socket.gethostname(),
            "time": time.time(),
            "stages": list(stages),
            "finished": [],
            "runs": [],  # [spool local id, parent's local id or None, label], parents first
        }
        self._finished: set[str] = set()
        self._runs: list[list[str | None]] = []

    def add_run(self, local_id: str, parent: str | None, label: str) -> None:
        self._runs.append([local_id, parent, label])

    def finished(self, stage: str) -> None:
        self._finished.add(stage)

    def save(self) -> None:
        import json

        self.data["finished"] = sorted(self._finished)
        self.data["runs"] = self._runs
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(self.data))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a full disk must not stop the pipeline; recovery then relies on nbops sync

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class DeadExecution:
    """A recovered ``nbops run``: who it was, what it did not finish, what became of its runs."""

    pid: int
    started: float
    unfinished: list[str]
    runs: list[Outcome]
    error: str | None = None  # the store could not be reached: the runs stay spooled

    @property
    def reason(self) -> str:
        return _reason(self.pid, self.started)

    @property
    def who(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"nbops run (pid {self.pid}, started {when})"


def _reason(pid: int, started: float, what: str = "the run ended") -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"nbops run (pid {pid}, started {when}) was killed before {what}"


def _is_record(p: Path) -> bool:
    try:
        st = p.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size < 4 << 20


def _dead_records(state: Path) -> list[tuple[Path, dict[str, Any]]]:
    import json

    d = _executions_dir(state)
    try:
        # regular files only, never through a link (a link to a FIFO would hang, to a huge
        # file would be read whole); a record is a few kB
        names = sorted(p for p in d.iterdir() if p.suffix == ".json" and _is_record(p))
    except OSError:
        return []
    here = socket.gethostname()
    out = []
    for p in names:
        try:
            data = json.loads(p.read_text())
            pid = int(data["pid"])
            if not isinstance(data.get("stages", []), list):
                raise ValueError("stages")
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            with contextlib.suppress(OSError):
                p.rename(p.with_name(f"{p.name}.unreadable"))  # looked at once, kept for a human
            continue
        if data.get("host") not in (None, here):
            continue  # another machine's runner on a shared disk: not ours to judge
        if data.get("start") is None or not os.path.isdir("/proc/self"):
            if pid_alive(pid):  # no start time to tell a reused pid by: alive is alive
                continue
        elif process_start(pid) == data.get("start"):
            continue  # alive
        out.append((p, data))
    return out


def recover_executions(
    state: Path,
    uri: str | None = None,
    *,
    record_unfinished: Callable[[Path, list[str], str], None],
) -> list[DeadExecution]:
    """Find ``nbops run`` executions whose runner died (its pid is gone, or is another process
    now) and recover each: its unfinished runs end KILLED with ``nbops.end_reason`` naming it,
    what they logged is delivered (or stays spooled if the store is unreachable), and the stages
    it did not finish are recorded in the pipeline state as failed, for ``--resume``.

    ``record_unfinished(state, stages, why)`` records those stages as failed (the pipeline passes
    its state's writer: tracking does not import the pipeline).

    Cheap when there is nothing to recover (one directory listing); MLflow is imported only for
    a dead execution's runs."""
    record = record_unfinished
    found = _dead_records(state)
    out = []
    for path, data in found:
        claimed = path.with_name(f"{path.stem}.recovering-{os.getpid()}")
        try:
            os.rename(path, claimed)  # one recoverer per dead execution
        except OSError:
            continue
        pid = int(data["pid"])
        started = float(data.get("time") or 0)
        reason = _reason(pid, started)
        stages = [str(s) for s in data.get("stages") or []]
        finished = {str(s) for s in data.get("finished") or []}
        unfinished = [s for s in stages if s not in finished]
        runs = [r for r in data.get("runs") or [] if isinstance(r, list) and len(r) == 3]
        outcomes, error = _end_runs(state, runs, reason, uri)
        if unfinished:
            record(state, unfinished, _reason(pid, started, "this stage finished"))
        # done with the record either way: runs the store could not take stay spooled, ended
        # KILLED, and nbops sync (or the next writer) delivers them
        with contextlib.suppress(OSError):
            claimed.unlink()
        out.append(DeadExecution(pid, started, unfinished, outcomes, error))
    return out


def _end_runs(
    state: Path, runs: list[list[str | None]], reason: str, uri: str | None
) -> tuple[list[Outcome], str | None]:
    """End KILLED (with ``reason``) every run of the dead execution that never ended, give a
    child whose run the store had not created yet its parent's id, and deliver them."""
    root = spool_root(state)
    opened: dict[str, TrackingStore] = {}
    run_ids: dict[str, str] = {}
    out: list[Outcome] = []
    error: str | None = None
    for local_id, parent, _label in runs:
        d = root / str(local_id)
        if not (d / "log.jsonl").exists():
            info = Spool(d).run_info() if d.is_dir() else None
            if info:
                run_ids[str(local_id)] = info["run_id"]
            continue  # delivered and finished by the runner before it died
        fd = lock_wait(d, 5.0)  # its kernel may still be going away
        if fd is None:
            if (d / "log.jsonl").exists():
                out.append(Outcome(d.name, _run_id(d), "busy", message="locked by a live process"))
            continue
        try:
            sp = Spool(d, fd)
            try:
                outcome = _end_one(
                    error is None,
                    sp,
                    reason,
                    run_ids.get(str(parent)) if parent else None,
                    uri,
                    opened,
                )
            except (OSError, ValueError) as exc:
                outcome = Outcome(d.name, None, "broken", message=str(exc))
            if outcome.run_id:
                run_ids[str(local_id)] = outcome.run_id
            if outcome.status == "unreachable" and error is None:
                error = outcome.message
            out.append(outcome)
        finally:
            os.close(fd)
    return out, error


def _end_one(
    deliver: bool,
    sp: Spool,
    reason: str,
    parent_id: str | None,
    uri: str | None,
    opened: dict[str, TrackingStore],
) -> Outcome:
    from nbops.errors import StoreUnavailable
    from nbops.tracking.delivery import Delivery

    start = sp.start_record()
    ended = sp.has_ended()
    if parent_id and sp.run_info() is None:
        sp.append(Tag(tags.MLFLOW_PARENT_RUN_ID, parent_id))
        sp.append(Tag(tags.PARENT_RUN, parent_id))
    if not ended:
        sp.append(Tag(tags.END_REASON, reason))
        end_ms = int(os.stat(sp.log_path).st_mtime * 1000)
        sp.append(End("KILLED", end_ms))
    if not deliver:  # the store already failed for an earlier run: one wait, not one per run
        return Outcome(sp.dir.name, _run_id(sp.dir), "unreachable", message="not tried")
    suri = str(start.get("uri") or uri or "")
    try:
        from nbops.mlflow.store import TrackingStore

        store = opened.get(suri)
        if store is None:
            store = opened[suri] = TrackingStore(suri)
        delivery = Delivery(sp, store)
        delivery.finish_orphan()
    except StoreUnavailable as exc:
        return Outcome(sp.dir.name, _run_id(sp.dir), "unreachable", message=exc.message)
    except Exception as exc:  # noqa: BLE001 - reported; the spool stays for nbops sync
        text = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
        return Outcome(sp.dir.name, _run_id(sp.dir), "unreachable", message=text)
    return Outcome(
        sp.dir.name,
        delivery.run_id,
        "ended" if ended else "KILLED",
        delivery.delivered,
        "; ".join(delivery.dropped) or ("" if ended else reason),
    )
