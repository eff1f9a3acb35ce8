"""``%track`` / ``%%track``: tracking from a notebook, built on IPython's magic_arguments."""

from __future__ import annotations

import ast
import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbops.errors import InvalidInput, NbopsError
from nbops.ipython import infer_record
from nbops.ipython.infer import Plan, as_param, plan
from nbops.ipython.infer_report import explain_text, names_of, summary_line
from nbops.mlflow import credentials
from nbops.tracking import context, fluent, validate
from nbops.tracking.run import STATUSES, Run

USAGE = {
    "start": "%track start [-e EXPERIMENT] [-n NAME] [-t KEY=VALUE ...]",
    "stop": "%track stop [--status FINISHED|FAILED|KILLED]",
    "status": "%track status",
    "param": "%track param NAME [NAME ...]",
    "metric": "%track metric NAME [NAME ...] [--step N]",
    "artifact": "%track artifact PATH [--path DIR]",
    "data": "%track data PATH [--role input|output]",
    "cell": "%%track [-n STEP] [--params A,B] [--metrics X,Y] [--skip N,M] [--no-figures] "
    "[--explain] [-q]",
}
ALL_USAGE = "".join(f"\n  {u}" for u in USAGE.values())


def _not_delivered(run: Run, rid: str, status: str) -> str:
    """``%track stop``'s one line when the run is not all in the store: why (the server refused
    the login or a permission, or cannot be reached), what to do, and that nothing is lost."""
    state = run.store_state()
    error = str(state.get("error") or "").strip()
    kept = f"the data stays spooled in {run.spool.dir} and `nbops sync` delivers it"
    if not credentials.is_refusal(error):
        why = f" ({error})" if error else ""
        return f"nbops: run {rid} ended ({status}); the store is unreachable{why}, {kept}"
    hint = str(state.get("hint") or "").strip()
    return f"nbops: run {rid} ended ({status}) but is not in the store: {error}" + (
        f"; {hint}" if hint else f"; {kept}"
    )


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
        self.metric_steps: dict[tuple[str, str], int] = {}  # (run, metric) -> next step
        self.sources_logged: set[tuple[str, str, int]] = set()
        self.recorder = infer_record.Recorder()
        self.failed_start: str | None = None  # why the last %track start failed
        self.deferred: Callable[[], None] | None = None  # a cell's logging after post_execute
        self.arg_cache: dict[str, Any] = {}  # magic line -> its parsed arguments

    # --- helpers ------------------------------------------------------------------------------
    @property
    def ns(self) -> dict[str, Any]:
        """The user's namespace (the shell is set once the extension is loaded)."""
        shell: Any = self.shell
        return shell.user_ns  # type: ignore[no-any-return]

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(f"nbops: {message}", file=sys.stderr)

    def _start(
        self,
        experiment: str | None = None,
        name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[Run, str]:
        """Start a run; (the run, what its experiment and name came from, for the user)."""
        ns = self.ns
        found = context.origin(ns)
        if name is None:
            name = default_run_name(found.notebook)
        run = fluent.start_run(experiment, name, tags, user_ns=ns)
        if experiment is not None:
            why = "as asked"
        elif found.notebook is not None:
            why = f"the notebook's name, from {found.how}"
        else:
            why = f"{found.how}; name one with %track start -e NAME"
        return run, "; ".join([why, *context.notes(ns)])

    def _run(self) -> Run:
        run = fluent.active_run()
        if run is None:
            run, why = self._start()
            after = (
                f" (the last %track start failed: {self.failed_start})" if self.failed_start else ""
            )
            print(
                f"nbops: no run was active{after}: started run {run.name!r} in experiment "
                f"{run.experiment!r} ({why}); `%track status` shows it"
            )
            self.failed_start = None
        return run

    def _value(self, name: str) -> Any:
        if name not in self.ns:
            raise InvalidInput(
                f"variable {name!r} is not defined in the notebook",
                "run the cell that defines it first, or check the spelling",
            )
        return self.ns[name]

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
    @argument("--skip", help="%%%%track: do not log these names (N,M)")
    @argument("--no-figures", action="store_true", help="%%%%track: do not log figures")
    @argument(
        "--explain",
        action="store_true",
        help="%%%%track: show what the cell would log and why; the cell does not run",
    )
    @argument("-q", "--quiet", action="store_true", help="%%%%track: no summary line")
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

            %%track [-n STEP] [--params A,B] [--metrics X,Y] [--skip N,M] [--no-figures]
                    [--explain] [-q]

        runs the cell and logs what a person would log by hand: as params, the literal
        settings that feed a fit, a model, a search or a score (and literals the cell sets
        without using); as metrics, the results of scoring calls (*_score, *_error, *_loss,
        .score(), .best_score_, classification_report...), as they are computed (in a loop:
        a history); figures the cell shows as PNGs under cells/STEP/, the cell's source and
        its duration. One line after the cell says what was logged. --explain shows each
        name, the rule that chose or left it out, and runs nothing. --params / --metrics
        replace the inferred params / metrics by exactly these names; --skip leaves names
        out. The first %track or %%track starts a run if none is active. Logging never slows
        or breaks the cell: values are spooled to disk and written to MLflow in the background.
        """
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
        try:
            return self._track(line, cell)
        except (UsageError, NbopsError) as exc:
            if cell is None and line.split()[:1] == ["start"]:
                self.failed_start = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise

    def _args(self, line: str) -> Any:
        """``parse_argstring`` of the magic's line, remembered per line: a notebook repeats the
        same ``%%track -q`` on many cells, and argparse costs ~0.1 ms a call. Each call gets its
        own namespace (the lists in it copied), so nothing a cell changes leaks to the next."""
        cache = self.arg_cache
        got = cache.get(line)
        if got is None:
            got = parse_argstring(self.track, line)
            if len(cache) < 256:
                cache[line] = got
        return type(got)(**{k: list(v) if isinstance(v, list) else v for k, v in vars(got).items()})

    def _track(self, line: str, cell: str | None) -> Any:
        __tracebackhide__ = True  # noqa: F841
        self.flush_deferred()
        try:
            args = self._args(line)
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
        cell_only = [o for o, v in _cell_options(args).items() if v]
        if cell_only:
            raise _usage_error(f"{', '.join(cell_only)} is for %%track cells only", command)
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
        run, why = self._start(args.experiment, args.name, tags)
        self.failed_start = None
        print(
            f"nbops: run {run.name!r} started in experiment {run.experiment!r} ({why}; store "
            f"{credentials.server(run.uri)}); its id appears with `%track status`"
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
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            ok = fluent.end_run(status)
        rid = run.id_if_ready() or run.local_id
        if ok:
            print(f"nbops: run {rid} ended ({status}); everything logged is in the store")
        else:
            print(_not_delivered(run, rid, status), file=sys.stderr)
        for w in said:  # end_run's own "nbops: ..." warning is said above, in one line
            if not str(w.message).startswith("nbops:"):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def _cmd_status(self, args: Any, rest: list[str]) -> None:
        self._no_words("status", rest)
        run = fluent.active_run()
        if run is None:
            print("nbops: no active run (`%track start`, or any %track / %%track starts one)")
            return
        why = None if run.notebook else context.origin(self.ns).how
        print(status_text(run, why))

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
        shell: Any = self.shell
        step = args.name or f"cell{shell.execution_count}"
        if args.explain:
            return self._explain(args, step, cell)
        try:
            run: Run | None = self._run()
        except Exception as exc:  # noqa: BLE001 - the cell runs whatever happens to nbops
            reason = exc.message if isinstance(exc, NbopsError) else f"{type(exc).__name__}: {exc}"
            self._warn_once("start", f"tracking is off for this cell: {reason}")
            run = None
        catcher: Any = None
        if run is not None and not args.no_figures:
            from nbops.ipython.figures import FigureCatcher

            catcher = FigureCatcher(shell)
            catcher.__enter__()
        error: BaseException | None = None
        result = cell_plan = None
        ns = shell.user_ns
        ns[infer_record.NAME] = self.recorder
        shell.user_ns_hidden[infer_record.NAME] = self.recorder
        t0 = time.perf_counter()
        try:
            cell_plan, code, last = self._compile(cell, record=run is not None)
            self.recorder.start()
            exec(code, ns)  # noqa: S102 - it is the user's cell
            if last is not None:
                result = eval(last, ns)  # noqa: S307
        except BaseException as exc:  # noqa: BLE001 - re-raised unchanged below
            error = exc
        finally:
            self.recorder.stop()
        duration = time.perf_counter() - t0
        if run is not None:

            def log() -> None:
                try:
                    if catcher is not None:
                        catcher.finish()
                    self._log_cell(run, args, step, cell, cell_plan, duration, catcher)
                except Exception as exc:  # noqa: BLE001 - nbops never breaks the user's cell
                    self._warn_once(
                        f"cell:{type(exc).__name__}", f"could not log cell {step}: {exc}"
                    )

            try:
                deferred = catcher is not None and catcher.stop(defer=True)
            except Exception as exc:  # noqa: BLE001
                self._warn_once(f"cell:{type(exc).__name__}", f"could not log cell {step}: {exc}")
                deferred = False
            if deferred:
                self._defer(log)
            else:
                log()
        if error is not None:
            raise error
        return result

    def _defer(self, log: Callable[[], None]) -> None:
        """Log the cell once IPython's ``post_execute`` has run the inline backend's
        ``flush_figures`` (registered before this, so it runs first): the figures the cell left
        open are logged as the PNGs it renders for the notebook, not rendered a second time."""
        shell: Any = self.shell

        def once() -> None:
            if self.deferred is once:
                self.deferred = None
            with contextlib.suppress(ValueError):
                shell.events.unregister("post_execute", once)
            log()

        self.deferred = once
        shell.events.register("post_execute", once)

    def flush_deferred(self) -> None:
        """Log a cell whose logging still waits for ``post_execute`` (a %%track cell run
        through ``run_cell_magic`` outside a cell, then another %%track or %track)."""
        pending = self.deferred
        if pending is not None:
            pending()

    def _parse(self, cell: str) -> tuple[ast.Module, str]:
        shell: Any = self.shell
        source = shell.transform_cell(cell)
        filename = shell.compile.cache(source, shell.execution_count)
        return shell.compile.ast_parse(source, filename=filename), filename

    def _compile(self, cell: str, record: bool = True) -> tuple[Plan | None, Any, Any]:
        """(what the cell logs, its code, the code of a trailing expression or None), compiled
        the way IPython compiles cells (magics inside, AST transformers, tracebacks); the
        expressions the plan records pass through the recorder."""
        shell: Any = self.shell
        tree, filename = self._parse(cell)
        cell_plan = None
        if record:
            try:
                cell_plan = plan(tree)
                tree = infer_record.instrument(tree, cell_plan)
            except Exception as exc:  # noqa: BLE001 - inference never stops the cell
                self._warn_once("infer", f"could not read what the cell logs: {exc}")
                tree, filename = self._parse(cell)
                cell_plan = None
        tree = shell.transform_ast(tree)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
        return cell_plan, shell.compile(tree, filename, "exec"), last

    def _explain(self, args: Any, step: str, cell: str) -> None:
        try:
            tree, _ = self._parse(cell)
            cell_plan = plan(tree)
        except SyntaxError as exc:
            raise _usage_error(f"the cell does not parse: {exc}", "cell") from None
        except (RecursionError, MemoryError, ValueError) as exc:
            raise _usage_error(
                f"the cell is too deeply nested to explain ({type(exc).__name__})", "cell"
            ) from None
        print(explain_text(cell_plan, args, step))

    def _log_cell(
        self,
        run: Run,
        args: Any,
        step: str,
        cell: str,
        cell_plan: Plan | None,
        duration: float,
        catcher: Any,
    ) -> None:
        ns = self.ns
        rec = self.recorder
        notes: list[str] = []
        skip = names_of(args.skip)
        inferred = cell_plan or Plan()
        # params: inferred (literal values at the end of the cell) or exactly --params
        params: dict[str, Any] = {}
        if args.params is not None:
            for p in names_of(args.params):
                if p in ns:
                    params[p] = ns[p]
                else:
                    notes.append(f"--params {p}: no variable {p!r} after the cell, not logged")
        else:
            for p in inferred.params:
                text = as_param(ns.get(p)) if p in ns else None
                if text is not None:
                    params[p] = text
            params.update(rec.params)
        # metrics: recorded as computed (histories) or exactly --metrics
        metrics: dict[str, list[float]] = {}
        if args.metrics is not None:
            for m in names_of(args.metrics):
                got = {k: v for k, v in rec.metrics.items() if k == m or k.startswith(m + ".")}
                if not got and m in ns:
                    got = {k: [v] for k, v in infer_record.metric_values(m, ns[m])}
                if got:
                    metrics.update(got)
                elif m in ns:
                    notes.append(
                        f"--metrics {m}: {type(ns[m]).__name__} is not a number, not logged"
                    )
                else:
                    notes.append(f"--metrics {m}: no variable {m!r} after the cell, not logged")
        else:
            metrics = dict(rec.metrics)
        for name in skip:
            hit = [k for k in (*params, *metrics) if k == name or k.startswith(name + ".")]
            if not hit:
                notes.append(f"--skip {name}: the cell logs no {name!r}")
            for k in hit:
                params.pop(k, None)
                metrics.pop(k, None)
        for p, v in params.items():
            try:
                run.log_params({p: v})
            except InvalidInput as exc:
                self._warn_once(f"param:{p}", exc.message + " — start a new run with %track start")
                notes.append(f"param {p} not logged")
        for m, values in metrics.items():
            at = self.metric_steps.get((run.local_id, m), 0)
            self.metric_steps[(run.local_id, m)] = at + len(values)
            try:
                for i, v in enumerate(values):
                    run.log_metric(m, v, step=at + i)
            except InvalidInput as exc:
                notes.append(f"metric {m} not logged: {exc.message}")
        key = (run.local_id, step)
        n = self.step_counts.get(key, 0)
        self.step_counts[key] = n + 1
        run.log_metric(f"cells/{step}/duration_s", duration, step=n)
        source_key = (run.local_id, step, hash(cell))
        if source_key not in self.sources_logged:  # a re-run of the same source: already there
            run.log_text(cell, f"cells/{step}/source.py")
            self.sources_logged.add(source_key)
        figures = 0
        if catcher is not None:
            for i, png in enumerate(catcher.pngs, 1):
                run.log_png(png, f"cells/{step}/figure-{i}.png")
            figures = len(catcher.pngs)
        for note in notes:
            print(f"nbops: {note}", file=sys.stderr)
        if not args.quiet:
            print(summary_line(step, params, metrics, figures))


def _cell_options(args: Any) -> dict[str, bool]:
    return {
        "--params": args.params is not None,
        "--metrics": args.metrics is not None,
        "--skip": args.skip is not None,
        "--no-figures": bool(args.no_figures),
        "--explain": bool(args.explain),
        "--quiet": bool(args.quiet),
    }


def default_run_name(notebook: Any) -> str:
    """A run's name when none is given: the notebook's name (or ``ipython``) and the time."""
    stem = getattr(notebook, "stem", None) or "ipython"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def status_text(run: Run, no_notebook: str | None = None) -> str:
    """``%track status``; ``no_notebook``: why the run has no notebook (shown instead)."""
    rid = run.id_if_ready()
    st = run.store_state()
    state = st.get("state", "starting")
    lines = [
        f"run          {rid or 'pending (the store is opening)'}",
        f"experiment   {run.experiment}" + (f" (id {run.experiment_id})" if rid else ""),
        f"store        {credentials.server(run.uri)}",
    ]
    if rid and run.experiment_id:
        lines.append(
            f"view         `nbops ui`, then http://127.0.0.1:5000/#/experiments/"
            f"{run.experiment_id}/runs/{rid}"
        )
    if run.notebook:
        lines.append(f"notebook     {run.notebook}")
    elif no_notebook:
        lines.append(f"notebook     none ({no_notebook}): no snapshot at the end")
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
