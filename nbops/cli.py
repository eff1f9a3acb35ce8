"""The ``nbops`` command: parse, call the core, map errors to exit codes (docs/architecture.md,
"Surfaces"; README, "Exit codes").

Exit codes are :class:`nbops.errors.Exit`: 0 ok, 1 a run/check failed, 2 bad usage or config,
3 drift found, 130 interrupted, 141 the reader closed the pipe. An error's code is its
``exit_code`` (``nbops.errors.exit_code_of``). Imports stay lazy: ``nbops --help`` does not import
mlflow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nbops import envvars, project, tags
from nbops.errors import Exit, NbopsError, exit_code_of
from nbops.table import table


def _fmt_time(ms: Any) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ms) / 1000))


# --- commands ---------------------------------------------------------------------------------
def _check_search(filter_string: str | None, order_by: list[str] | None) -> None:
    """The bounds every reader puts on a run search (nbops/mlflow/readers/bounds.py), for
    ``nbops runs``: SQLite crashes the process on 31+ order keys, and every filter term is one
    more join."""
    from nbops.errors import InvalidInput
    from nbops.mlflow import search
    from nbops.mlflow.readers import bounds

    order = order_by or []
    if len(order) > bounds.MAX_ORDER_KEYS:
        raise InvalidInput(
            f"--order-by is given {len(order)} times (at most {bounds.MAX_ORDER_KEYS})",
            "order by fewer keys",
        )
    keys = [" ".join(o.split()[:1]).lower() for o in order]
    dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup is not None:
        raise InvalidInput(f"--order-by names {dup!r} twice", "name each key once")
    for what, value, most in [("--filter", filter_string or "", bounds.MAX_FILTER_CHARS)] + [
        ("--order-by", o, bounds.MAX_ORDER_CHARS) for o in order
    ]:
        if "\x00" in value or len(value) > most:
            raise InvalidInput(
                f"{what} {value[:60]!r}{'...' if len(value) > 60 else ''} has a NUL byte or more "
                f"than {most} characters",
                "shorten it",
            )
    if filter_string:
        try:
            parsed = search.parse_filter(filter_string)
        except search.SearchSyntaxError:  # run_rows names a syntax error with MLflow's reason
            return
        try:
            bounds.terms(parsed)
        except InvalidInput as err:
            raise InvalidInput(f"--{err.message}", err.hint) from None


def cmd_runs(args: argparse.Namespace) -> int:
    from nbops.tracking.query import run_rows

    _check_search(args.filter, args.order_by)
    rows = run_rows(args.experiment, args.filter, args.order_by, args.max)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return Exit.OK
    if not rows:
        print(
            "no runs yet: run `nbops demo`, or `%load_ext nbops` and `%track start` in a notebook"
        )
        return Exit.OK
    metric_keys: list[str] = []
    for r in rows:
        for k in r:
            if k.startswith("metrics.") and "/" not in k and k not in metric_keys:
                metric_keys.append(k)
    metric_keys = metric_keys[:4]
    cells = []
    for r in rows:
        dur = f"{r['duration_s']:.1f}s" if r.get("duration_s") is not None else "-"
        cells.append(
            [
                r["run_id"],
                r["experiment"],
                r["name"] or "",
                r["status"],
                _fmt_time(r["start_time"]),
                dur,
            ]
            + [f"{r[k]:.4g}" if k in r else "" for k in metric_keys]
        )
    header = ["RUN", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION"]
    print(table(cells, header + [k[len("metrics.") :] for k in metric_keys]))
    return Exit.OK


def cmd_show(args: argparse.Namespace) -> int:
    from nbops.mlflow.readers.facade import open_read_store
    from nbops.ops.names import run_id

    store = open_read_store()  # the embedded store's SQL when it can: no MLflow imported
    run = store.get_run(run_id(args.run))
    info, data = run.info, run.data
    if args.json:
        print(
            json.dumps(
                {
                    "info": dict(info),
                    "params": data.params,
                    "metrics": data.metrics,
                    "tags": data.tags,
                },
                indent=1,
                default=str,
            )
        )
        return Exit.OK
    exp = store.get_experiment(info.experiment_id)
    lines = [
        f"run         {info.run_id}  ({info.run_name})",
        f"experiment  {exp.name} (id {info.experiment_id})",
        f"status      {info.status}",
        f"started     {_fmt_time(info.start_time)}",
        f"ended       {_fmt_time(info.end_time)}",
        f"artifacts   {info.artifact_uri}",
    ]
    print("\n".join(lines))
    if data.params:
        print("\nparams")
        for k, v in sorted(data.params.items()):
            print(f"  {k} = {v}")
    if data.metrics:
        print("\nmetrics (latest)")
        for k, v in sorted(data.metrics.items()):
            print(f"  {k} = {v:.6g}")
    shown = {
        k: v
        for k, v in data.tags.items()
        if not k.startswith("mlflow.")
        or k in (tags.MLFLOW_SOURCE_NAME, tags.MLFLOW_GIT_COMMIT, tags.MLFLOW_USER)
    }
    if shown:
        print("\ntags")
        for k, v in sorted(shown.items()):
            print(f"  {k} = {v}")
    return Exit.OK


def _sync_audit(state: Path) -> int | None:
    """Send the shared audit trail's pending records (team mode): None when there were none,
    else how many still wait (said on stderr with why)."""
    from nbops.tracking import audit_shared

    if not state.is_dir() or not audit_shared.is_shared(project.tracking_uri()):
        return None
    if not audit_shared.pending():
        return None
    sent = audit_shared.flush()
    if sent.sent:
        print(f"delivered {len(sent.sent)} pending audit record(s)")
    if sent.left:
        print(
            f"{sent.left} audit record(s) still wait in .nbops/{audit_shared.PENDING_NAME}: "
            f"{sent.error}",
            file=sys.stderr,
        )
    return sent.left


def cmd_sync(args: argparse.Namespace) -> int:
    from nbops.mlflow.store import open_store
    from nbops.tracking.recovery import reap_stale, recover, recover_executions, sweep_done

    state = project.state_dir(create=False)
    from nbops.pipeline.state import record_failed

    dead = (
        recover_executions(state, project.tracking_uri(), record_unfinished=record_failed)
        if state.is_dir()
        else []
    )
    for execution in dead:
        todo = ", ".join(execution.unfinished) or "none"
        killed = sum(1 for o in execution.runs if o.status in ("KILLED", "unreachable"))
        print(
            f"{execution.who} was killed: {killed} of its runs ended KILLED; stages it did not "
            f"finish: {todo} (`nbops run --resume` redoes them)"
        )
    outcomes = recover(state, wait=args.wait) if state.is_dir() else []
    sweep_done(state)
    audit_left = _sync_audit(state)
    reap_error = None
    try:
        outcomes += reap_stale(state, open_store())
    except NbopsError as err:
        reap_error = err.message
    if not outcomes and reap_error is None:
        if not dead and audit_left is None:
            print("nbops sync: nothing to deliver")
        return Exit.FAILED if audit_left else Exit.OK
    failed = 1 if audit_left else 0
    if reap_error is not None:
        failed += 1
        print(f"could not check for abandoned runs: {reap_error}", file=sys.stderr)
    for o in outcomes:
        rid = o.run_id or "(run not created yet)"
        if o.status == "KILLED" and not o.records and o.message:
            print(f"marked run {rid} KILLED: {o.message}")
            continue
        if o.status in ("ended", "KILLED"):
            extra = " and marked KILLED (its process died)" if o.status == "KILLED" else ""
            print(f"delivered {o.records} records of run {rid}{extra}")
        elif o.status == "busy":
            print(f"skipped run {rid}: {o.message}")
        else:
            failed += 1
            print(f"could not deliver run {rid} ({o.spool}): {o.message}", file=sys.stderr)
        if o.message and o.status in ("ended", "KILLED"):
            print(f"  refused by the store: {o.message}", file=sys.stderr)
    return Exit.FAILED if failed else Exit.OK


# lines of MLflow's server that say nothing an nbops user asked about: the security notice for a
# loopback host (nbops' own line says where the UI is)
_UI_NOTICES = ("[MLflow] Security middleware enabled with default settings (localhost-only)",)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_ui(args: argparse.Namespace) -> int:
    """``mlflow ui`` on the project's store, one worker. Quiet unless ``--verbose``: MLflow's INFO
    lines, uvicorn's startup and access log, its libraries' warnings (Starlette's deprecations)
    and the localhost security notice are not shown; warnings and errors are."""
    from nbops.mlflow import verbose

    uri = project.tracking_uri()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",  # else MLflow says "Registry store URI not provided"
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    art = project.artifact_root_for(uri)
    if art is not None:
        cmd += ["--default-artifact-root", art.as_uri()]
    from nbops.mlflow.schema import ensure_schema

    # mlflow ui would create or upgrade the schema itself, without nbops' lock, racing any
    # kernel that starts now; a store nbops refuses is a StoreUnavailable error like any other
    ensure_schema(uri)
    _check_port_free(args.host, args.port)
    print(
        f"nbops ui: MLflow UI on http://{args.host}:{args.port} for {uri} (Ctrl-C stops it)",
        flush=True,
    )
    if verbose():
        os.execv(sys.executable, cmd)
    cmd += ["--uvicorn-opts", "--log-level warning --no-access-log"]
    env = dict(os.environ)
    env.setdefault(envvars.MLFLOW_LOGGING_LEVEL, "WARNING")
    env.setdefault(envvars.PYTHONWARNINGS, "ignore")
    drop = _UI_NOTICES if args.host in _LOOPBACK else ()
    code = _serve_filtered(cmd, env, drop)
    if code is not None:  # it ended by itself: it is not serving (MLflow exits 0 even so)
        _say(f"nbops ui: MLflow's server stopped with code {code} (its messages are above)")
        return Exit.FAILED
    return Exit.OK


def _check_port_free(host: str, port: int) -> None:
    """A port another program listens on is named before MLflow starts (MLflow then logs an
    error and exits 0)."""
    import socket

    from nbops.errors import InvalidInput

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(
            f"--host {host[:100]!r} cannot be resolved ({exc.strerror or exc})",
            "give an address of this machine, e.g. --host 127.0.0.1",
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise InvalidInput(
                f"--port {port}: {host}:{port} cannot be listened on "
                f"({exc.strerror or exc}; another program may be using it)",
                "pick another port with --port, or stop the program that uses it",
            ) from None


def _serve_filtered(cmd: list[str], env: dict[str, str], drop: tuple[str, ...]) -> int | None:
    """Run a server in the foreground, its output to stderr except the lines starting with one
    of ``drop``. It runs in its own process group, so Ctrl-C and SIGTERM reach it and every
    process it started (MLflow's job runners too), and none outlives it. None when it stopped
    because it was told to (SIGTERM, Ctrl-C), else the exit code it ended with by itself."""
    import signal
    import subprocess
    import threading

    child = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )

    def forward() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if not (drop and line.startswith(drop)):
                _say(line.rstrip("\n"))

    def group(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)

    stopped = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopped
        stopped = True
        group(signum)

    reader = threading.Thread(target=forward, name="nbops-ui-output", daemon=True)
    reader.start()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        try:
            code = child.wait()
        except KeyboardInterrupt:
            stopped = True
            group(signal.SIGINT)  # its own group: the terminal's Ctrl-C reached only nbops
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                group(signal.SIGKILL)
                child.wait()
            raise
        finally:
            _end_group(child.pid)  # what it left running (MLflow's job runners) ends with it
            reader.join(timeout=5)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return None if stopped else code


def _end_group(pgid: int, grace: float = 10.0) -> None:
    """SIGTERM to every process left in group ``pgid``, SIGKILL to those still there after
    ``grace`` seconds; returns when the group is empty (or 2 s later: a zombie nobody reaps
    still counts as a member)."""
    import signal

    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while time.monotonic() < deadline + 2:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.05)


def cmd_demo(args: argparse.Namespace) -> int:
    from nbops.demo import run_demo

    return run_demo(args)


# --- parser -----------------------------------------------------------------------------------
class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (the lookup costs ~15 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from nbops import __version__

        print(f"nbops {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nbops",
        description="Jupyter-native MLOps on MLflow. Store: MLFLOW_TRACKING_URI, or the project's "
        ".nbops/mlflow.db.",
    )
    p.add_argument("--version", action=_Version, help="print nbops' version and exit")
    p.add_argument("-v", "--verbose", dest="nbops_verbose", action="store_true", help=_VERBOSE)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    from nbops.ops.arguments import count, number
    from nbops.ops.commands import add_parsers as add_ops_parsers
    from nbops.ops.migrate import add_parsers as add_migrate_parsers
    from nbops.pipeline.commands import add_parsers
    from nbops.pipeline.sharing import add_parsers as add_sharing_parsers
    from nbops.scheduler.commands import add_parsers as add_scheduler_parsers

    add_parsers(sub)
    add_sharing_parsers(sub)
    add_scheduler_parsers(sub)
    add_ops_parsers(sub)
    add_migrate_parsers(sub)

    sp = add("runs", cmd_runs, "list runs (newest first)")
    sp.add_argument(
        "-e", "--experiment", action="append", help="experiment name or id (repeatable)"
    )
    sp.add_argument("--filter", help='MLflow search syntax, e.g. "metrics.accuracy > 0.9"')
    sp.add_argument("--order-by", action="append", help='e.g. "metrics.accuracy DESC"')
    sp.add_argument(
        "--max", type=count(1, 50000), default=50, help="at most this many runs (default 50)"
    )
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = add("show", cmd_show, "show one run: params, metrics, tags")
    sp.add_argument("run", help="run id")
    sp.add_argument("--json", action="store_true")

    sp = add(
        "sync",
        cmd_sync,
        "deliver spooled data of runs whose store was unreachable or "
        "whose process died; mark dead runs KILLED",
    )
    sp.add_argument(
        "--wait",
        type=number(0, 86400),
        default=60.0,
        help="seconds to wait for a dead run's writer to finish (default 60)",
    )

    sp = add("ui", cmd_ui, "start the MLflow UI on this project's store")
    sp.add_argument("--port", type=count(1, 65535), default=5000)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument(
        "--workers",
        type=count(1, 64),
        default=1,
        help="server processes (default 1: one person's UI; MLflow's own default is 4)",
    )

    sp = add("demo", cmd_demo, "run the example on the embedded store and say where to look")
    sp.add_argument(
        "--dir",
        help="where to put the example project (default: ./example_notebooks "
        "in a source checkout, else ./nbops-demo)",
    )
    for command in sub.choices.values():  # `nbops run -v` as well as `nbops -v run`
        with contextlib.suppress(argparse.ArgumentError):  # the command has its own -v
            command.add_argument(
                "-v",
                "--verbose",
                dest="nbops_verbose",
                action="store_true",
                default=argparse.SUPPRESS,
                help=_VERBOSE,
            )
    return p


_VERBOSE = (
    "also show what MLflow and the servers nbops starts print (INFO lines, progress bars, "
    "warnings); sets NBOPS_VERBOSE=1 for every process the command starts"
)


def _set_verbose(args: argparse.Namespace) -> None:
    """``--verbose`` anywhere (before the command, after it, or a command's own ``-v``) reaches
    the adapters and every child process through ``NBOPS_VERBOSE``."""
    if getattr(args, "nbops_verbose", False) or getattr(args, "verbose", False) is True:
        os.environ[envvars.VERBOSE] = "1"
        if hasattr(args, "verbose"):
            args.verbose = True


def _say(text: str) -> None:
    """One line to stderr; a closed stderr is not worth a traceback."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError, ValueError):
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again (the
    Python docs' recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The one place errors become exit codes for every command, by lookup
    (``nbops.errors.exit_code_of``): NbopsError -> its message and hint on stderr, its
    ``exit_code``; Ctrl-C -> ``Exit.INTERRUPTED``; a reader that closed the pipe ->
    ``Exit.BROKEN_PIPE``, silently; anything unexpected -> one line naming it and
    ``Exit.FAILED`` (``NBOPS_DEBUG=1`` shows the traceback). ``--verbose`` sets
    ``NBOPS_VERBOSE`` for the command only: a caller in the same process gets it back as it was."""
    command = "?"
    verbose_before = os.environ.get(envvars.VERBOSE)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = str(getattr(args, "command", None) or "?")
        _set_verbose(args)
        if not getattr(args, "func", None):
            parser.print_help()
            return Exit.USAGE
        code = int(args.func(args) or Exit.OK)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except SystemExit:
        raise  # argparse's usage errors (2) and --help/--version (0)
    except NbopsError as err:
        _say(f"nbops {command}: {err.message}")
        if err.hint:
            _say(f"  hint: {err.hint}")
        return exit_code_of(err)
    except KeyboardInterrupt as err:
        _say(f"nbops {command}: interrupted")
        return exit_code_of(err)
    except BrokenPipeError as err:
        _quiet_stdout()  # said by no message: the reader stopped reading
        return exit_code_of(err)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get(envvars.DEBUG):
            raise
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        text = (str(exc).splitlines() or [""])[0][:300]
        _say(f"nbops {command}: internal error: {type(exc).__name__}: {text}{where}")
        _say(f"  hint: this is a bug in nbops; rerun with {envvars.DEBUG}=1 for the traceback")
        return exit_code_of(exc)
    finally:
        if verbose_before is None:
            os.environ.pop(envvars.VERBOSE, None)
        else:
            os.environ[envvars.VERBOSE] = verbose_before


__all__ = ["main"]
