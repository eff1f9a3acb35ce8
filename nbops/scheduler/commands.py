"""The scheduler's CLI verbs: ``nbops schedule add|list|remove|run|history`` and
``nbops scheduler`` (the daemon). Parsing here, the work in api.py / daemon.py."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import project
from nbops.errors import Exit, NbopsError
from nbops.table import table

if TYPE_CHECKING:
    from nbops.scheduler.model import Schedule


def _root() -> Path:
    return project.find_root()


def _split(values: list[str] | None) -> list[str]:
    """--stages a b, --stages a,b and repeated --stages all work."""
    out: list[str] = []
    for v in values or []:
        out += [s for s in v.split(",") if s.strip()]
    return out


def schedule_of(args: argparse.Namespace) -> Schedule:
    """The schedule ``nbops schedule add`` describes (checked as it is built: a bad option is
    an NbopsError naming the schedule and the field, as ``POST /schedules`` says it)."""
    from nbops.scheduler.model import Schedule
    from nbops.scheduler.params import parse_cli

    try:
        params = parse_cli([str(p) for p in args.param or []])
    except NbopsError as exc:  # named like every other option's error
        exc.message = f"schedule {args.name!r}: {exc.message}"
        exc.args = (exc.message,)
        raise
    return Schedule(
        name=args.name,
        cron=args.cron,
        timezone=args.timezone,
        stages=_split(args.stages),
        params=params,
        catchup=args.catchup,
        retries=_whole(args.retries),
        timeout=None if args.timeout is None else _whole(args.timeout),
        on_failure=args.on_failure,
    )


def cmd_add(args: argparse.Namespace) -> int:
    from nbops.scheduler import api

    view = api.add_schedule(_root(), schedule_of(args))
    print(f"added schedule {view['name']}: next at {_when(view)}, time zone {view['timezone']}")
    status = api.daemon_status(_root())
    if not status["alive"]:
        print(f"note: {status['hint']}")
    return Exit.OK


def _cell(text: Any) -> str:
    """Text from the store as shown on a terminal: control characters as '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _whole(text: str) -> Any:
    """``--retries 3`` / ``--timeout 3600`` as an int; other text goes to the one validation as
    it is, which refuses it (``1.5``, ``true``, ``3x``) with the same message as the API."""
    t = text.strip()
    return int(t) if t.isascii() and t.lstrip("-").isdigit() and len(t) < 30 else text


def _when(view: dict[str, Any]) -> str:
    from nbops.scheduler import cron

    if view.get("invalid"):
        return "INVALID"
    zone = view["timezone"].removesuffix(" (local)")
    nxt = view["next_fire"] / 1000 if view["next_fire"] else None
    try:
        return cron.format_time(nxt, zone)
    except Exception:  # a zone that vanished since: the epoch is still right
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(nxt)) if nxt else "-"


def cmd_list(args: argparse.Namespace) -> int:
    from nbops.scheduler import api

    root = _root()
    views = api.list_schedules(root)
    status = api.daemon_status(root)
    if args.json:
        print(json.dumps({"schedules": views, "daemon": status}, indent=1))
        return Exit.OK
    if not views:
        print("no schedules: add one with `nbops schedule add NAME --cron '0 2 * * *'`")
    else:
        rows = [
            [
                _cell(v["name"]),
                _cell(v["cron"]),
                _cell(v["timezone"]),
                _when(v),
                ",".join(v["stages"]) or "(all)",
                v["catchup"],
                v["source"],
                v["last_status"] or "-",
            ]
            for v in views
        ]
        header = ["NAME", "CRON", "TIME ZONE", "NEXT", "STAGES", "CATCHUP", "SOURCE", "LAST"]
        print(table(rows, header))
        for v in views:
            if v.get("invalid"):
                print(f"\ninvalid: {_cell(v['name'])} does not run: {_cell(v['invalid'])}")
    if status["alive"]:
        print(f"\nscheduler: running (pid {status['pid']})")
    else:
        print(f"\nscheduler: not running; {api.START_HINT}")
    return Exit.OK


def cmd_remove(args: argparse.Namespace) -> int:
    from nbops.scheduler import api

    api.remove_schedule(_root(), args.name)
    print(f"removed schedule {args.name}")
    return Exit.OK


def cmd_run(args: argparse.Namespace) -> int:
    from nbops.scheduler import api

    root = _root()
    if not args.foreground and api.daemon_status(root)["alive"]:
        res = api.run_now(root, args.name)
        if res["queued"]:
            print(
                f"queued {args.name} for the running scheduler; "
                f"see `nbops schedule history {args.name}`"
            )
            return Exit.OK
    return _run_foreground(root, args.name)


def _run_foreground(root: Path, name: str) -> int:
    """Run one execution here and now (no daemon): one attempt, then the on_failure hook."""
    from nbops.scheduler import sources
    from nbops.scheduler.execution import Execution, run_hook
    from nbops.scheduler.jobs import perform
    from nbops.scheduler.store import ScheduleStore

    store = ScheduleStore(root)
    schedule = sources.find(root, name, store)
    now = time.time()
    hid = store.add_history(name, fire_time=now, reason="manual", status="running", started=now)
    current: list[Execution] = []

    def on_stop(signum: int, frame: Any) -> None:
        for ex in current:
            ex.ended_by = "stop"
            if ex.proc is not None and ex.proc.poll() is None:
                ex.proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"running schedule {name} (execution {hid}) ...", flush=True)
    try:
        res = perform(root, store, schedule, hid, on_process=current.append)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if res is None:
        print(f"schedule {name} is already running in another process: skipped", file=sys.stderr)
        return Exit.FAILED
    ids = res.pipeline_run_id or ", ".join(res.run_ids) or "-"
    print(f"schedule {name}: {res.status} (runs: {ids}; log: {res.log_path})")
    if not res.ok:
        if res.error:
            print(f"  error: {res.error}", file=sys.stderr)
        if res.status != "killed":
            run_hook(root, schedule, res, hid, res.log_path or store.dir / "hooks.log")
        return Exit.INTERRUPTED if res.status == "killed" else Exit.FAILED
    return Exit.OK


def cmd_history(args: argparse.Namespace) -> int:
    from nbops.scheduler import api

    rows = api.history(_root(), args.name, args.limit)
    if args.json:
        print(json.dumps(rows, indent=1))
        return Exit.OK
    if not rows:
        print(f"schedule {args.name} has not fired yet")
        return Exit.OK
    lines = []
    for r in rows:
        status = f"skipped: {r['error']}" if r["status"] == "skipped" else r["status"]
        lines.append(
            [
                str(r["id"]),
                _ts(r["fire_time"]),
                r["reason"] + (f" #{r['attempt']}" if r["attempt"] else ""),
                status,
                _ts(r["started"]),
                f"{r['duration']:.1f}s" if r["duration"] is not None else "-",
                r["pipeline_run_id"] or ",".join(r["run_ids"]) or "-",
                "" if r["status"] == "skipped" else (r["error"] or "")[:80],
            ]
        )
    header = ["ID", "FIRE TIME", "REASON", "STATUS", "STARTED", "TOOK", "RUNS", "ERROR"]
    print(table(lines, header))
    return Exit.OK


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_scheduler(args: argparse.Namespace) -> int:
    from nbops.scheduler import systemd

    root = _root()
    if args.print_systemd_unit:
        print(systemd.unit_text(root), end="")
        return Exit.OK
    if args.install_systemd:
        path = systemd.install(root)
        print(f"wrote {path}")
        print(
            "enable and start it with:\n"
            f"  systemctl --user daemon-reload && systemctl --user enable --now {path.name}\n"
            f"logs: journalctl --user -u {path.name} -f"
        )
        return Exit.OK
    from nbops.scheduler.daemon import Daemon

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    return Daemon(root).serve()


def add_parsers(sub: Any) -> None:
    sp = sub.add_parser(
        "schedule",
        help="add, list, remove, run schedules and see their history",
        description="Schedules run pipeline stages on a cron clock (see `nbops scheduler`).",
    )
    verbs = sp.add_subparsers(dest="verb", metavar="VERB", required=True)

    a = verbs.add_parser("add", help="add a schedule", description="Add a schedule.")
    a.add_argument("name", help="schedule name (letters, digits, _ . -)")
    a.add_argument(
        "--cron",
        required=True,
        help="5 fields 'min hour day month weekday' (e.g. '0 2 * * *'), or 6 with leading seconds",
    )
    a.add_argument("--stages", nargs="+", metavar="STAGE", help="stages to run (default: all)")
    a.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="[STAGE.]K=V",
        help="parameter override for every execution (repeatable)",
    )
    a.add_argument(
        "--catchup",
        choices=["none", "latest", "all"],
        default="latest",
        help="after downtime: skip missed times, run once (default), or run each in order",
    )
    a.add_argument("--retries", default="0", help="retries after a failure, 0..100 (back-off)")
    a.add_argument("--timeout", default=None, help="whole seconds before it is stopped")
    a.add_argument("--timezone", help="IANA time zone of the cron times (default: local)")
    a.add_argument("--on-failure", help="shell command run when an execution fails")
    a.set_defaults(func=cmd_add)

    ls = verbs.add_parser("list", help="schedules, next fire time, last status")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    rm = verbs.add_parser("remove", help="remove a schedule added with `schedule add`")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_remove)

    rn = verbs.add_parser(
        "run", help="run a schedule now (by the running scheduler, else in the foreground)"
    )
    rn.add_argument("name")
    rn.add_argument(
        "--foreground", action="store_true", help="run here even if a scheduler is running"
    )
    rn.set_defaults(func=cmd_run)

    hi = verbs.add_parser("history", help="a schedule's executions, newest first")
    hi.add_argument("name")
    hi.add_argument("--limit", type=int, default=20)
    hi.add_argument("--json", action="store_true")
    hi.set_defaults(func=cmd_history)

    d = sub.add_parser(
        "scheduler",
        help="the scheduler daemon, in the foreground (SIGTERM stops it)",
        description="Run this project's schedules until stopped (logs to stderr).",
    )
    d.add_argument(
        "--print-systemd-unit", action="store_true", help="print a systemd user unit and exit"
    )
    d.add_argument(
        "--install-systemd",
        action="store_true",
        help="write the unit to ~/.config/systemd/user/ and say how to enable it",
    )
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(func=cmd_scheduler)
