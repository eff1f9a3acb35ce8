"""The pipeline's CLI verbs: ``nbops run``, ``status``, ``checkout``, ``diff`` (parsing lives in
cli.py; this module turns arguments into calls on the runner and prints results)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from nbops import project
from nbops import tags as tag_names
from nbops.errors import ConfigError, NotFound


def _root() -> Any:
    root = project.find_root()
    if not (root / project.CONFIG_FILE).is_file():
        raise ConfigError(
            f"no {project.CONFIG_FILE} in {root} or above",
            "create one (see README: Pipelines), or cd into your project",
            file=str(root / project.CONFIG_FILE),
        )
    return root


def cmd_run(args: argparse.Namespace) -> int:
    from nbops.errors import NbopsError
    from nbops.pipeline.outcome import PipelineOutcome, failed_before_start

    if args.summary is not None:
        _check_summary(args.summary)  # before anything runs: a summary nobody can write is lost
    try:
        code, outcome = _run(args)
    except NbopsError as err:
        if args.summary:
            with contextlib.suppress(NbopsError):  # the error that stopped the run comes first
                failed_before_start(str(err), err.exit_code).write(args.summary)
        raise
    if args.summary:
        (outcome or PipelineOutcome(None, code, "ok" if code == 0 else "failed")).write(
            args.summary
        )
    return code


def _check_summary(path: str) -> None:
    """``--summary FILE`` must be writable before the pipeline starts."""
    import os
    from pathlib import Path

    from nbops.errors import InvalidInput

    if not path.strip() or "\x00" in path:
        raise InvalidInput(
            f"--summary {path!r} is not a file name", "e.g. --summary .nbops/last-run.json"
        )
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        raise InvalidInput(
            f"--summary {path}: is a directory",
            f"name a file in it: --summary {target / 'run.json'}",
        )
    if not parent.is_dir():
        raise InvalidInput(
            f"--summary {path}: the directory {parent} does not exist",
            f"create it first (mkdir -p {parent}), or write the summary elsewhere",
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise InvalidInput(
            f"--summary {path}: cannot write there (permission denied)",
            "write the summary into a directory you can write to",
        )


def _run(args: argparse.Namespace) -> tuple[int, Any]:
    from nbops.pipeline.runner import Runner

    runner = Runner(
        _root(),
        params=args.param,
        sweep=args.sweep,
        force=args.force,
        jobs=args.jobs,
        tags=args.tag,
        timeout=args.timeout,
    )
    names = list(args.stages)
    if args.resume:
        names = _resume_targets(runner) or names
        if not names:
            print("nbops run --resume: nothing failed or was skipped last time")
            return 0, None
    code = runner.run(names or None, dry_run=args.dry_run)
    return code, runner.outcome


def _resume_targets(runner: Any) -> list[str]:
    failed = {label.split("[", 1)[0] for label in runner.state.failed}
    todo = set(failed)
    for f in failed:
        todo |= runner.graph.downstream(f)
    return [s for s in runner.graph.order if s in todo]


def cmd_status(args: argparse.Namespace) -> int:
    from nbops.pipeline.runner import Runner

    runner = Runner(_root())
    rows = runner.status(list(args.stages) or None)
    stale = 0
    for label, why in rows:
        if label.split("[", 1)[0] in runner.broken:  # its notebook cannot be read
            stale += 1
            print(f"{label:<28} broken      {'; '.join(why)}")
        elif why:
            stale += 1
            print(f"{label:<28} stale       {'; '.join(why)}")
        else:
            print(f"{label:<28} up to date")
    print(f"{stale} of {len(rows)} stale" if stale else "everything is up to date")
    return 0


def _outs_record(run_id: str) -> tuple[Any, dict[str, Any]]:
    from nbops.mlflow.store import open_store
    from nbops.pipeline.cache import load_record

    store = open_store()
    run = store.get_run(run_id)
    with project.scratch(_root()) as tmp:  # not MLflow's default: a temp dir outside the project
        try:
            path = store.download_artifacts(run_id, "outs.json", str(tmp))
        except Exception as exc:  # noqa: BLE001 - no outs.json: not a stage run
            raise NotFound(
                f"run {run_id} has no outs.json (it is not a pipeline stage run with outs)",
                "pick a stage run from `nbops runs` (tag nbops.stage)",
            ) from exc
        return run, load_record(path, run_id)


def cmd_checkout(args: argparse.Namespace) -> int:
    from nbops.pipeline.cache import OutCache
    from nbops.pipeline.hashing import HashCache

    root = _root()
    _, record = _outs_record(args.run)
    state = project.state_dir(root)
    hashes = HashCache(root, state)
    restored = OutCache(root, state, hashes).restore(record, run=args.run)
    hashes.save()
    for rel in restored:
        print(f"restored {rel}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from nbops.mlflow.store import open_store

    store = open_store()
    a, b = store.get_run(args.run_a), store.get_run(args.run_b)
    lines: list[str] = []

    def section(title: str, da: dict[str, Any], db: dict[str, Any]) -> None:
        keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
        if keys:
            lines.append(title)
            for k in keys:
                lines.append(f"  {k}: {da.get(k, '(none)')} → {db.get(k, '(none)')}")

    section("params", a.data.params, b.data.params)
    section("metrics", a.data.metrics, b.data.metrics)
    section("outs (content hash)", _outs_tags(a), _outs_tags(b))
    print("\n".join(lines) if lines else "no differences in params, metrics or outs")
    return 0


def _outs_tags(run: Any) -> dict[str, str]:
    """The ``nbops.out.<path>`` tags of a stage run, by path."""
    prefix = tag_names.OUT_PREFIX
    return {k[len(prefix) :]: v for k, v in run.data.tags.items() if k.startswith(prefix)}


def add_parsers(sub: Any) -> None:
    sp = sub.add_parser(
        "run",
        help="run pipeline stages whose inputs changed",
        description="Run the stages of nbops.yaml (all, or the named ones and "
        "what they depend on) that are not up to date.",
    )
    sp.add_argument("stages", nargs="*", metavar="STAGE")
    sp.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="[STAGE.]K=V",
        help="override a parameter (repeatable)",
    )
    sp.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="K=A,B,C",
        help="run a stage once per value (repeatable: a grid)",
    )
    sp.add_argument("--force", action="store_true", help="run even what is up to date")
    sp.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help="stages/sweep points at once (default: CPU count)",
    )
    sp.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="K=V",
        help="set a tag on every run this execution makes (repeatable)",
    )
    sp.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop the kernels after this long; the runs end FAILED (nbops.end_reason=timeout)",
    )
    sp.add_argument(
        "--summary",
        metavar="FILE",
        help="write what ran as JSON: pipeline run id, per-stage status and run ids, error",
    )
    sp.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    sp.add_argument(
        "--resume", action="store_true", help="run only what failed or was skipped last time"
    )
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("status", help="each stage: up to date, or why it would run")
    sp.add_argument("stages", nargs="*", metavar="STAGE")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("checkout", help="restore the outs a stage run wrote, byte for byte")
    sp.add_argument("run", help="a stage run id")
    sp.set_defaults(func=cmd_checkout)

    sp = sub.add_parser("diff", help="params, metrics and outs that differ between two runs")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp.set_defaults(func=cmd_diff)
