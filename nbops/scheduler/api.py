"""The scheduler's Python API: what the CLI and the Jupyter server call. Every function takes the
project root; errors are NbopsError subclasses, each with its HTTP status (nbops.errors).
A schedule is added whole (a ``model.Schedule``); the others return plain dicts
(``model_dump()`` of the models in model.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nbops import envvars
from nbops.errors import ConfigError, InvalidInput, NotFound
from nbops.scheduler import cron, sources, validation
from nbops.scheduler.daemon import HEARTBEAT, read_status
from nbops.scheduler.lock import is_held
from nbops.scheduler.model import DaemonStatus, HistoryRow, Schedule, ScheduleView
from nbops.scheduler.store import ScheduleStore

START_HINT = (
    "start it in the project folder: `nbops scheduler` (foreground), or as a service: "
    "`nbops scheduler --install-systemd`"
)


def _root(root: str | os.PathLike[str]) -> Path:
    return Path(root).resolve()


def _view(
    entry: sources.Entry, store: ScheduleStore, slots: dict[str, Any], now: float
) -> ScheduleView:
    """How a schedule is listed: the schedule plus its status. An invalid one (or one whose next
    time cannot be computed) is listed with ``invalid`` saying why and no next fire time, never
    an error; its fields are shown as far as they can be read."""
    schedule, problem = entry.schedule, entry.problem
    nxt: float | None = None
    if schedule is not None:
        slot = slots.get(schedule.name)
        after = max(now, slot.cursor) if slot is not None and slot.cursor else now
        try:
            nxt = cron.next_fire(schedule.cron, schedule.timezone, after)
        except Exception as exc:  # validated on load: belt and braces for the listing
            problem = f"its next fire time cannot be computed ({type(exc).__name__}: {exc})"
    last = store.last(entry.name)
    last_exec = store.last(entry.name, executed=True)
    run_id = None
    if last_exec is not None:
        run_id = last_exec.pipeline_run_id or (last_exec.run_ids[0] if last_exec.run_ids else None)
    status = None
    if last is not None:
        status = f"skipped: {last.error}" if last.status == "skipped" else last.status
    fields = schedule.model_dump() if schedule is not None else _shown(entry.fields)
    return ScheduleView(
        **{
            **fields,
            "name": entry.name,
            "timezone": _zone_label(fields.get("timezone")),
            "source": "nbops.yaml" if entry.source == "nbops.yaml" else "cli",
        },
        next_fire=None if nxt is None or problem else int(nxt * 1000),
        last_status=status,
        last_run_id=run_id,
        invalid=problem,
    )


def _shown(f: dict[str, Any]) -> dict[str, Any]:
    """The fields of an invalid schedule as they can be shown (anything else: a default)."""
    timeout = _kind(f.get("timeout"), float, None)
    return {
        "cron": _kind(f.get("cron"), str, "?"),
        "timezone": f.get("timezone"),
        "stages": [str(x) for x in f["stages"]] if isinstance(f.get("stages"), list) else [],
        "params": f["params"] if isinstance(f.get("params"), dict) else {},
        "catchup": f["catchup"] if f.get("catchup") in ("none", "latest", "all") else "latest",
        "retries": _kind(f.get("retries"), int, 0),
        "timeout": None if timeout is None else float(timeout),
        "on_failure": _kind(f.get("on_failure"), str, None),
    }


def _kind(v: Any, kind: type, default: Any) -> Any:
    if kind is float:
        return v if isinstance(v, int | float) and not isinstance(v, bool) and v == v else default
    if kind is int:
        return v if isinstance(v, int) and not isinstance(v, bool) else default
    return v if isinstance(v, kind) else default


def _zone_label(name: Any) -> str:
    if not isinstance(name, str) or not name:
        return cron.zone_label(None)
    return name[:100]


def list_schedules(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every schedule (nbops.yaml and CLI), with next fire time (epoch ms) and last status;
    invalid ones are listed with ``invalid`` saying why (they do not stop the others)."""
    r = _root(root)
    store = ScheduleStore(r)
    slots = store.slots()
    now = time.time()
    return [_view(e, store, slots, now).model_dump() for e in sources.entries(r, store)]


def add_schedule(root: str | os.PathLike[str], schedule: Schedule) -> dict[str, Any]:
    """Add ``schedule`` (built by the CLI or the server, so checked on its own; here checked
    against nbops.yaml too), persisted: a running daemon picks it up within a second."""
    r = _root(root)
    store = ScheduleStore(r)
    name = schedule.name
    spec = validation.validate(
        schedule.model_dump(exclude={"source"}), sources.load_pipeline(r), source="cli"
    )
    existing = {e.name: e for e in sources.entries(r, store)}
    if name in existing:
        where = "in nbops.yaml" if existing[name].source == "nbops.yaml" else "by the CLI"
        raise InvalidInput(
            f"name: a schedule named {name!r} already exists ({where})",
            f"pick another name, or `nbops schedule remove {name}` first",
        )
    if not store.add_schedule(spec):
        raise InvalidInput(f"name: a schedule named {name!r} already exists", "pick another name")
    _audit(r, "schedule.add", schedule=name, spec=spec.model_dump(exclude={"name"}))
    entry = sources.Entry(name, "cli", spec, None)
    return _view(entry, store, store.slots(), time.time()).model_dump()


def remove_schedule(root: str | os.PathLike[str], name: str) -> None:
    """Remove a CLI schedule; one from nbops.yaml is refused (edit the file)."""
    r = _root(root)
    store = ScheduleStore(r)
    found = [e for e in sources.entries(r, store) if e.name == name]
    if not found:
        raise NotFound(f"no schedule named {name!r}", "see `nbops schedule list`")
    # the CLI's (valid or not: a damaged row, or one whose name nbops.yaml took) goes first
    entry = min(found, key=lambda e: e.source != "cli")
    if entry.source == "nbops.yaml":
        pipeline = sources.load_pipeline(r)
        line = (pipeline.where("schedules", name) or (None, None))[0]
        raise ConfigError(
            f"schedule {name!r} is defined in nbops.yaml and cannot be removed here",
            "delete it from the `schedules:` section of nbops.yaml",
            file=str(pipeline.path),
            line=line,
        )
    if not store.remove_schedule(name):
        raise NotFound(f"no schedule named {name!r}", "see `nbops schedule list`")
    spec = entry.schedule.model_dump(exclude={"name"}) if entry.schedule else entry.fields
    extra = {"invalid": entry.problem} if entry.problem else {}
    _audit(r, "schedule.remove", schedule=name, spec=spec, **extra)


def run_now(root: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Run a schedule now. With a daemon alive, it is queued for the daemon (which keeps the
    no-overlap rule); else a detached `nbops schedule run NAME` process runs it.
    Returns {"schedule", "queued": bool, "pid": int | None}."""
    r = _root(root)
    store = ScheduleStore(r)
    sources.find(r, name, store)
    _audit(r, "schedule.run", schedule=name)
    if daemon_status(r)["alive"]:
        store.request_run(name)
        return {"schedule": name, "queued": True, "pid": None}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbops", "schedule", "run", name, "--foreground"],
        cwd=r,
        env={**os.environ, envvars.PROJECT_ROOT: str(r)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return {"schedule": name, "queued": False, "pid": proc.pid}


def history(root: str | os.PathLike[str], name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The schedule's executions (and skipped fire times), newest first."""
    r = _root(root)
    store = ScheduleStore(r)
    rows = store.history(name, limit=max(1, min(int(limit), 10_000)))
    if not rows:
        sources.find_entry(r, name, store)  # NotFound for an unknown name; else no history yet
    return [row.model_dump() for row in rows]


def history_rows(root: str | os.PathLike[str], name: str, limit: int = 50) -> list[HistoryRow]:
    return [HistoryRow.model_validate(d) for d in history(root, name, limit)]


def daemon_status(root: str | os.PathLike[str]) -> dict[str, Any]:
    """{alive, pid, since, last_beat, hint}: alive means a daemon holds the project's lock."""
    r = _root(root)
    d = r / ".nbops" / "scheduler"
    info = read_status(d)
    up = is_held(d / "daemon.lock")
    hint = None
    if not up:
        hint = "the scheduler is not running: " + START_HINT
    elif info.get("last_beat") and time.time() - float(info["last_beat"]) > 6 * HEARTBEAT:
        hint = f"the scheduler (pid {info.get('pid')}) holds its lock but has not beaten lately"
    return DaemonStatus(
        alive=up,
        pid=info.get("pid") if up else None,
        since=info.get("since") if up else None,
        last_beat=info.get("last_beat"),
        hint=hint,
    ).model_dump()


def _audit(root: Path, action: str, **fields: Any) -> None:
    """Schedule changes go to the project's hash-chained audit log (never failing the change)."""
    from nbops.tracking import audit

    audit.safe_record(action, root=root, **fields)
