"""``%track`` / ``%%track``: tracking from a notebook, built on IPython's magic_arguments."""

from __future__ import annotations

import ast
import sys
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbops.errors import InvalidInput, NbopsError
from nbops.ipython.infer import as_metric, infer
from nbops.tracking import fluent, validate
from nbops.tracking.run import STATUSES, Run

USAGE = {
    "start": "%track start [-e EXPERIMENT] [-n NAME] [-t KEY=VALUE ...]",
    "stop": "%track stop [--status FINISHED|FAILED|KILLED]",
    "status": "%track status",
    "param": "%track param NAME [NAME ...]",
    "metric": "%track metric NAME [NAME ...] [--step N]",
    "artifact": "%track artifact PATH [--path DIR]",
    "data": "%track data PATH [--role input|output]",
    "cell": "%%track [-n STEP] [--params A,B] [--metrics X,Y] [--no-figures]",
}
ALL_USAGE = "".join(f"\n  {u}" for u in USAGE.values())


def _usage_error(message: str, command: str | None = None) -> UsageError:
    usage = USAGE.get(command or "", ALL_USAGE)
    return UsageError(f"{message}\nusage: {usage}")


@magics_class
class TrackMagics(Magics):
    """The extension's state lives here, not in module globals."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.warned: set[str] = set()
        self.step_counts: dict[tuple[str, str], int] = {}
        self.sources_logged: set[tuple[str, str, int]] = set()

    # --- helpers ------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(f"nbops: {message}", file=sys.stderr)

    def _start(
        self,
        experiment: str | None = None,
        name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Run:
        return fluent.start_run(experiment, name, tags, user_ns=self.shell.user_ns)

    def _run(self) -> Run:
        run = fluent.active_run()
        if run is None:
            run = self._start()
            print(
                f"nbops: started a run in experiment {run.experiment!r} "
                f"(store {run.uri}); `%track status` shows it"
            )
        return run

    def _value(self, name: str) -> Any:
        if name not in self.shell.user_ns:
            raise InvalidInput(
                f"variable {name!r} is not defined in the notebook",
                "run the cell that defines it first, or check the spelling",
            )
        return self.shell.user_ns[name]

    # --- the magic ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("words", nargs="*", help="subcommand and its names/paths (line form only)")
    @argument("-e", "--experiment", help="start: experiment name (default: the notebook's name)")
    @argument("-n", "--name", help="start: run name; %%%%track: step name (default: cellN)")
    @argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="start: a tag for the run (repeatable)",
    )
    @argument("--status", help="stop: FINISHED (default), FAILED or KILLED")
    @argument("--step", type=int, help="metric: the step of the logged values")
    @argument("--path", help="artifact: directory inside the run's artifacts")
    @argument("--role", help="data: input (default) or output")
    @argument("--params", help="%%%%track: log exactly these names as params (A,B)")
    @argument("--metrics", help="%%%%track: log exactly these names as metrics (X,Y)")
    @argument("--no-figures", action="store_true", help="%%%%track: do not log figures")
    @line_cell_magic
    def track(self, line: str, cell: str | None = None) -> Any:
        """Track this notebook as an MLflow run.

        Line forms::

            %track start [-e EXPERIMENT] [-n NAME] [-t KEY=VALUE ...]
            %track stop [--status FINISHED|FAILED|KILLED]
            %track status                         # active run, link, what was logged, queue
            %track param NAME [NAME ...]          # log current values of variables as params
            %track metric NAME [NAME ...] [--step N]
            %track artifact PATH [--path DIR]
            %track data PATH [--role input|output]

        Cell form::

            %%track [-n STEP] [--params A,B] [--metrics X,Y] [--no-figures]

        runs the cell, then logs names bound to literal constants as params, names bound to
        computed numbers as metrics, figures the cell shows as PNGs under cells/STEP/, the
        cell's source and its duration. The first %track or %%track starts a run if none is
        active. Logging never slows or breaks the cell: values are spooled to disk and written
        to MLflow in the background.
        """
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
        try:
            args = parse_argstring(self.track, line)
        except UsageError as exc:
            raise _usage_error(str(exc), "cell" if cell is not None else None) from None
        if cell is not None:
            if args.words:
                raise _usage_error(
                    f"%%track takes no positional words (got {args.words!r})", "cell"
                )
            return self._track_cell(args, cell)
        if not args.words:
            raise _usage_error("%track needs a subcommand")
        command, rest = args.words[0], args.words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None or command == "cell":
            raise _usage_error(f"unknown subcommand {command!r}")
        return handler(args, rest)

    # --- line subcommands ---------------------------------------------------------------------
    def _no_words(self, command: str, rest: list[str]) -> None:
        if rest:
            raise _usage_error(f"%track {command} takes no names (got {' '.join(rest)})", command)

    def _cmd_start(self, args: Any, rest: list[str]) -> None:
        self._no_words("start", rest)
        tags = dict(validate.parse_tag(t) for t in args.tag)
        previous = fluent.active_run()
        if previous is not None:
            fluent.end_run("FINISHED", timeout=0)
            print(f"nbops: ended the previous run ({previous.id_if_ready() or previous.local_id})")
        run = self._start(args.experiment, args.name, tags)
        print(
            f"nbops: run started in experiment {run.experiment!r} (store {run.uri}); "
            "its id appears with `%track status`"
        )

    def _cmd_stop(self, args: Any, rest: list[str]) -> None:
        self._no_words("stop", rest)
        status = (args.status or "FINISHED").upper()
        if status not in STATUSES:
            raise _usage_error(
                f"--status {args.status!r} is not one of {', '.join(STATUSES)}", "stop"
            )
        run = fluent.active_run()
        if run is None:
            raise _usage_error("no run is active", "stop")
        ok = fluent.end_run(status)
        rid = run.id_if_ready() or run.local_id
        if ok:
            print(f"nbops: run {rid} ended ({status}); everything logged is in the store")
        else:
            print(
                f"nbops: run {rid} ended ({status}); the store is unreachable, the data is "
                "spooled and `nbops sync` delivers it",
                file=sys.stderr,
            )

    def _cmd_status(self, args: Any, rest: list[str]) -> None:
        self._no_words("status", rest)
        run = fluent.active_run()
        if run is None:
            print("nbops: no active run (`%track start`, or any %track / %%track starts one)")
            return
        print(status_text(run))

    def _cmd_param(self, args: Any, rest: list[str]) -> None:
        if not rest:
            raise _usage_error("name at least one variable", "param")
        values = {name: self._value(name) for name in rest}
        self._run().log_params(values)

    def _cmd_metric(self, args: Any, rest: list[str]) -> None:
        if not rest:
            raise _usage_error("name at least one variable", "metric")
        values = {name: self._value(name) for name in rest}
        self._run().log_metrics(values, step=args.step)

    def _cmd_artifact(self, args: Any, rest: list[str]) -> None:
        if len(rest) != 1:
            raise _usage_error("name exactly one PATH", "artifact")
        self._run().log_artifact(rest[0], args.path)

    def _cmd_data(self, args: Any, rest: list[str]) -> dict[str, Any] | None:
        if len(rest) != 1:
            raise _usage_error("name exactly one PATH", "data")
        role = args.role or "input"
        if role not in ("input", "output"):
            raise _usage_error(f"--role {role!r} is neither input nor output", "data")
        fp = self._run().track_data(rest[0], role)
        shape = f", {fp['rows']} rows x {fp['cols']} cols" if fp.get("rows") is not None else ""
        print(f"nbops: {role} {fp['name']}: xxh3 {fp['xxh3'][:16]}…, {fp['size']} bytes{shape}")
        return None

    # --- %%track ------------------------------------------------------------------------------
    def _track_cell(self, args: Any, cell: str) -> Any:
        __tracebackhide__ = True  # noqa: F841
        shell = self.shell
        try:
            run: Run | None = self._run()
        except Exception as exc:  # noqa: BLE001 - the cell runs whatever happens to nbops
            reason = exc.message if isinstance(exc, NbopsError) else f"{type(exc).__name__}: {exc}"
            self._warn_once("start", f"tracking is off for this cell: {reason}")
            run = None
        step = args.name or f"cell{shell.execution_count}"
        catcher = None
        if run is not None and not args.no_figures:
            from nbops.ipython.figures import FigureCatcher

            catcher = FigureCatcher(shell)
            catcher.__enter__()
        error: BaseException | None = None
        result = tree = None
        t0 = time.perf_counter()
        try:
            tree, code, last = self._compile(cell)
            ns = shell.user_ns
            exec(code, ns)  # noqa: S102 - it is the user's cell
            if last is not None:
                result = eval(last, ns)  # noqa: S307
        except BaseException as exc:  # noqa: BLE001 - re-raised unchanged below
            error = exc
        duration = time.perf_counter() - t0
        if run is not None:
            try:
                if catcher is not None:
                    catcher.__exit__(None, None, None)
                self._log_cell(run, args, step, cell, tree, duration, catcher)
            except Exception as exc:  # noqa: BLE001 - nbops never breaks the user's cell
                self._warn_once(f"cell:{type(exc).__name__}", f"could not log cell {step}: {exc}")
        if error is not None:
            raise error
        return result

    def _compile(self, cell: str) -> tuple[ast.Module, Any, Any]:
        """(the cell's AST as written, its code, the code of a trailing expression or None),
        compiled the way IPython compiles cells (magics inside, AST transformers, tracebacks)."""
        shell = self.shell
        source = shell.transform_cell(cell)
        filename = shell.compile.cache(source, shell.execution_count)
        tree = shell.compile.ast_parse(source, filename=filename)
        written = ast.Module(body=list(tree.body), type_ignores=[])
        tree = shell.transform_ast(tree)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
        return written, shell.compile(tree, filename, "exec"), last

    def _log_cell(
        self,
        run: Run,
        args: Any,
        step: str,
        cell: str,
        tree: ast.Module | None,
        duration: float,
        catcher: Any,
    ) -> None:
        ns = self.shell.user_ns
        if args.params is not None or args.metrics is not None:
            params = [s for s in (args.params or "").split(",") if s.strip()]
            metrics = [s for s in (args.metrics or "").split(",") if s.strip()]
            params, metrics = [p.strip() for p in params], [m.strip() for m in metrics]
        else:
            inferred = infer(tree) if tree is not None else None
            params = inferred.params if inferred else []
            metrics = inferred.metrics if inferred else []
        values = {p: ns[p] for p in params if p in ns}
        for p, v in values.items():
            try:
                run.log_params({p: v})
            except InvalidInput as exc:
                self._warn_once(f"param:{p}", exc.message + " — start a new run with %track start")
        key = (run.local_id, step)
        n = self.step_counts.get(key, 0)
        self.step_counts[key] = n + 1
        numbers = {}
        for m in metrics:
            v = as_metric(ns.get(m)) if m in ns else None
            if v is not None:
                numbers[m] = v
        if numbers:
            run.log_metrics(numbers, step=n)
        run.log_metric(f"cells/{step}/duration_s", duration, step=n)
        source_key = (run.local_id, step, hash(cell))
        if source_key not in self.sources_logged:  # a re-run of the same source: already there
            run.log_text(cell, f"cells/{step}/source.py")
            self.sources_logged.add(source_key)
        if catcher is not None:
            for i, png in enumerate(catcher.pngs, 1):
                run.log_png(png, f"cells/{step}/figure-{i}.png")


def status_text(run: Run) -> str:
    rid = run.id_if_ready()
    st = run.store_state()
    state = st.get("state", "starting")
    lines = [
        f"run          {rid or 'pending (the store is opening)'}",
        f"experiment   {run.experiment}" + (f" (id {run.experiment_id})" if rid else ""),
        f"store        {run.uri}",
    ]
    if rid and run.experiment_id:
        lines.append(
            f"view         `nbops ui`, then http://127.0.0.1:5000/#/experiments/"
            f"{run.experiment_id}/runs/{rid}"
        )
    if run.notebook:
        lines.append(f"notebook     {run.notebook}")
    c = run.counts
    lines.append(
        f"logged       {c['params']} params, {c['metrics']} metric values, "
        f"{c['tags']} tags, {c['artifacts']} artifacts, {c['datasets']} datasets"
    )
    if run.last_metrics:
        shown = list(run.last_metrics.items())[-8:]
        lines.append("last metrics " + ", ".join(f"{k}={v:.6g}" for k, v in shown))
    pending = run.pending()
    queue = f"{state}; {pending} bytes waiting" if pending else f"{state}; all delivered"
    if st.get("error"):
        queue += f" ({st['error']})"
    lines.append(f"queue        {queue}")
    return "\n".join(lines)
