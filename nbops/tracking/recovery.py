"""Orphaned spools: runs whose process (and writer) died before everything reached the store.

Found by anyone who can take a spool's lock: the next writer on the same store, and ``nbops sync``.
Their data is delivered and the run, if it never ended, is marked KILLED: never left RUNNING.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from nbops.tracking.spool import Spool, lock_wait, pid_alive, spool_root, try_lock


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
    stores: dict[str, object] | None = None,
) -> list[Outcome]:
    """Deliver every orphaned spool under ``state`` (only those for ``uri`` when given)."""
    from nbops.errors import StoreUnavailable
    from nbops.tracking.delivery import Delivery
    from nbops.tracking.store import Store

    opened: dict[str, object] = stores if stores is not None else {}
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
                    store = opened[suri] = Store(suri)
                delivery = Delivery(sp, store)  # type: ignore[arg-type]
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


STALE_AFTER_S = float(os.environ.get("NBOPS_STALE_AFTER", "600"))


def reap_stale(state: Path, store: object, stale_after: float = STALE_AFTER_S) -> list[Outcome]:
    """Mark KILLED the nbops runs left RUNNING whose process is gone and whose spool is not here.

    A run is gone when it was logged from this host by a pid that no longer runs, or when its
    writer's heartbeat (``nbops.heartbeat``, every minute) is older than ``stale_after`` seconds.
    Runs with a spool on this machine are left to :func:`recover`, which delivers them first.
    """
    import time as _time

    here = socket.gethostname()
    local = {d.name for d in spool_dirs(state)}
    now_ms = _time.time_ns() // 1_000_000
    exp_ids = [str(e.experiment_id) for e in store.experiments()]  # type: ignore[attr-defined]
    if not exp_ids:
        return []
    running = store.search_runs(  # type: ignore[attr-defined]
        exp_ids, "attributes.status = 'RUNNING'", None, 10_000
    )
    out: list[Outcome] = []
    for r in running:
        tags = r.data.tags
        local_id = tags.get("nbops.spool")
        if not local_id or local_id in local:
            continue
        try:
            pid = int(tags.get("nbops.pid", "0"))
            beat = int(tags.get("nbops.heartbeat", r.info.start_time or 0))
        except ValueError:
            continue
        same_host = tags.get("nbops.host") == here
        if same_host and pid_alive(pid):
            continue
        if not same_host and now_ms - beat < stale_after * 1000:
            continue
        why = (
            f"process {pid} on {here} is gone"
            if same_host
            else f"no heartbeat from {tags.get('nbops.host')} for {(now_ms - beat) // 1000} s"
        )
        end_ms = now_ms if same_host else beat  # the last sign of life we know of
        store.log_batch(r.info.run_id, tags=[("nbops.end_reason", why)])  # type: ignore[attr-defined]
        store.set_terminated(r.info.run_id, "KILLED", end_ms)  # type: ignore[attr-defined]
        out.append(Outcome(local_id, r.info.run_id, "KILLED", message=why))
    return out
