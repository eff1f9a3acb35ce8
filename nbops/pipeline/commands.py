"""The pipeline's CLI verbs: ``nbops run``, ``status``, ``checkout``, ``diff`` (parsing lives in
cli.py; this module turns arguments into calls on the runner and prints results)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from nbops import envvars, project
from nbops import tags as tag_names
from nbops.errors import ConfigError, InvalidInput, NotFound


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
        force_upstream=args.force_upstream,
        jobs=args.jobs,
        tags=args.tag,
        timeout=args.timeout,
        dask=args.dask,
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
    """Each stage point: up to date, stale (and why) or broken. With ``--check`` the exit code
    says it too: 1 when anything is not up to date (for a CI step), 0 when all is. Read-only:
    it reads nbops' own state, never MLflow on the embedded store (on a tracking server, the
    points without an up-to-date record here are looked up there: nbops.pipeline.sharing)."""
    from nbops.errors import Exit
    from nbops.pipeline.runner import Runner

    runner = Runner(_root())
    rows = runner.status(list(args.stages) or None)
    note = runner.server_note()
    if note:
        print(note, file=sys.stderr)
    to_fetch = {pt.label: missing for items in runner.to_fetch.values() for pt, _, missing in items}
    not_ok: list[str] = []
    for label, why in rows:
        if label.split("[", 1)[0] in runner.broken:  # its notebook cannot be read
            not_ok.append(label)
            print(f"{label:<28} broken      {'; '.join(why)}")
        elif why:
            not_ok.append(label)
            print(f"{label:<28} stale       {'; '.join(why)}")
        elif label in to_fetch:  # team mode: up to date on the server, its outs are there
            missing = to_fetch[label]
            print(
                f"{label:<28} up to date  outs on the tracking server, not here: "
                f"{', '.join(missing)} (`nbops run` or `nbops pull` fetches them)"
            )
        else:
            print(f"{label:<28} up to date")
    if not not_ok:
        print("everything is up to date")
        return int(Exit.OK)
    print(f"{len(not_ok)} of {len(rows)} stale")
    if args.check:
        print(
            f"nbops status --check: {len(not_ok)} of {len(rows)} not up to date "
            f"({', '.join(not_ok)}): exit 1 (`nbops run` brings them up to date)"
        )
        return int(Exit.FAILED)
    return int(Exit.OK)


# --- checkout and diff: every kind of run -------------------------------------------------------
STAGE_FILTER = f"tags.`{tag_names.STAGE}` = 'STAGE'"


def _open(run_id: str) -> tuple[Any, Any]:
    from nbops.mlflow.store import open_store

    store = open_store()
    return store, store.get_run(run_id)


def _download_outs(store: Any, run_id: str, root: Any) -> Any | None:
    """The run's ``outs.json`` record, None when it has none."""
    from nbops.pipeline.cache import load_record

    with project.scratch(root) as tmp:  # not MLflow's default: a temp dir outside the project
        try:
            path = store.download_artifacts(run_id, "outs.json", str(tmp))
        except NotFound:
            return None
        return load_record(path, run_id)


def _children(store: Any, run: Any) -> list[Any]:
    """The stage runs of a pipeline run (a sweep's stage run among them; its points are its
    own children), oldest first."""
    found = store.search_runs(
        [run.info.experiment_id],
        f"tags.`{tag_names.MLFLOW_PARENT_RUN_ID}` = '{run.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return [r for r in found if tag_names.STAGE in r.data.tags]


def _named(run: Any) -> str:
    t = run.data.tags
    label = t.get(tag_names.SWEEP_POINT) or t.get(tag_names.STAGE)
    return f"{label} {run.info.run_id}" if label else run.info.run_id


def _not_a_stage_run(store: Any, run: Any) -> InvalidInput:
    """Why a run without a stage cannot be checked out, and which runs can."""
    rid, t = run.info.run_id, run.data.tags
    if tag_names.PIPELINE in t:
        stages = _children(store, run)
        if not stages:
            return InvalidInput(
                f"run {rid} is a pipeline run (one `nbops run` of {t[tag_names.PIPELINE]}) and "
                "none of its stages ran (they were up to date): it has no outs",
                'pick the stage run that wrote the outs: nbops runs --filter "'
                + STAGE_FILTER
                + '"',
            )
        return InvalidInput(
            f"run {rid} is a pipeline run (one `nbops run` of {t[tag_names.PIPELINE]}): its "
            "outs are on its stage runs: " + ", ".join(_named(r) for r in stages),
            f"restore one stage's outs: nbops checkout {stages[0].info.run_id}",
        )
    name = t.get(tag_names.MLFLOW_RUN_NAME) or "unnamed"
    return InvalidInput(
        f"run {rid} ({name}) is not a pipeline stage run: it has no {tag_names.STAGE} tag "
        "(it was logged from a notebook or a script), so no stage of nbops.yaml wrote outs "
        "for it",
        "checkout restores what a stage wrote: pick a stage run, e.g. from nbops runs "
        '--filter "' + STAGE_FILTER + '"',
    )


def _shared_outs(store: Any, point: Any) -> tuple[str | None, dict[str, str]]:
    """A sweep point's sweep (its stage run id) and the outs every point shares, with the
    digests the sweep's run recorded."""
    import json

    parent_id = point.data.tags.get(tag_names.MLFLOW_PARENT_RUN_ID)
    if not parent_id:
        return None, {}
    try:
        parent = store.get_run(parent_id)
    except NotFound:
        return parent_id, {}
    try:
        names = json.loads(parent.data.tags.get(tag_names.SHARED_OUTS, "[]"))
    except ValueError:
        names = []
    outs = _outs_tags(parent)
    return parent_id, {n: outs.get(n, "") for n in names if isinstance(n, str)}


def cmd_checkout(args: argparse.Namespace) -> int:
    """Restore the outs a run recorded: a stage run's, a sweep's stage run's (every point's
    and the shared ones), a sweep point's own (the shared ones are the sweep's: said, not
    restored); a pipeline run or a run of no stage is refused, naming what to pick. On a
    tracking server, contents the local cache lacks are fetched from the shared outs first, each
    hashed (nbops.pipeline.sharing); all of it or nothing is restored."""
    from nbops.pipeline.cache import OutCache
    from nbops.pipeline.hashing import HashCache

    root = _root()
    store, run = _open(args.run)
    rid, t = run.info.run_id, run.data.tags
    stage = t.get(tag_names.STAGE)
    if stage is None:
        raise _not_a_stage_run(store, run)
    point = t.get(tag_names.SWEEP_POINT)
    record = _download_outs(store, rid, root)
    shared: dict[str, str] = {}
    parent = None
    if point is not None:
        parent, shared = _shared_outs(store, run)
    if record is None:
        status = run.info.status
        what = f"sweep point {point} of stage {stage!r}" if point else f"a run of stage {stage!r}"
        if status != "FINISHED":
            why = f"it ended {status}, before its outs were versioned"
        elif point:
            why = "its stage names no per-point outs (${...}), or nbops made it before it kept them"
        else:
            why = "its stage declares no outs"
        hint = (
            f"its sweep's run holds every point's outs: nbops checkout {parent}"
            if point and parent
            else f'pick a run of stage {stage!r} that finished: nbops runs --filter "'
            + STAGE_FILTER.replace("STAGE", stage)
            + '"'
        )
        raise NotFound(f"run {rid} is {what}: it recorded no outs.json ({why})", hint)
    from nbops.pipeline.sharing import fetcher

    state = project.state_dir(root)
    hashes = HashCache(root, state)
    cache = OutCache(root, state, hashes)
    # on a tracking server, what the local cache lacks is fetched (and checked) first
    restored = cache.restore(record, run=rid, fetch=fetcher(store.uri, cache))
    hashes.save()
    for rel in restored:
        print(f"restored {rel}")
    if not restored:
        print(f"run {rid} ({point or stage}) recorded no outs of its own: nothing restored")
    for rel in shared:
        print(
            f"not restored: {rel} is shared by every point of the sweep of stage {stage!r} "
            f"(`nbops checkout {parent}` restores it, with every point's files)"
        )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Params, metrics and outs that differ between two runs of any kind: a sweep point's outs
    are its own and the sweep's shared ones, a pipeline run's those of its stage runs. Read
    through the embedded store's SQL when it can (no MLflow imported), else MLflow."""
    from nbops.mlflow.readers.facade import open_read_store

    store = open_read_store()
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
    (outs_a, note_a), (outs_b, note_b) = _outs_of(store, a), _outs_of(store, b)
    section("outs (content hash)", outs_a, outs_b)
    print("\n".join(lines) if lines else "no differences in params, metrics or outs")
    for note in dict.fromkeys(n for n in (note_a, note_b) if n):
        print(note)
    return 0


def _outs_of(store: Any, run: Any) -> tuple[dict[str, str], str | None]:
    """What a run of any kind wrote (path → digest) and, where it wrote nothing itself, why."""
    t, rid = run.data.tags, run.info.run_id
    if tag_names.STAGE in t:
        outs = _outs_tags(run)
        if tag_names.SWEEP_POINT in t:
            outs.update(_shared_outs(store, run)[1])  # the sweep's folders every point shares
        return outs, None
    if tag_names.PIPELINE in t:
        outs = {}
        for child in _children(store, run):
            outs.update(_outs_tags(child))
        return outs, f"outs of pipeline run {rid}: those of its stage runs"
    return {}, f"run {rid} is not a pipeline stage run (no {tag_names.STAGE} tag): it has no outs"


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
    sp.add_argument(
        "--force",
        action="store_true",
        help="run the named stages (every stage when none is named) even if they are up to "
        "date; the stages they depend on run only if they are not",
    )
    sp.add_argument(
        "--force-upstream",
        action="store_true",
        help="run the named stages and every stage they depend on, up to date or not "
        "(DVC's `dvc repro --force`)",
    )
    sp.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help="stages/sweep points at once (default: the CPU count; on a dask cluster, every "
        "ready one: the cluster's workers take them as they are free)",
    )
    sp.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run the stages on a dask cluster: its scheduler (tcp://HOST:8786, HOST:8786), or "
        "local[:N] for a local cluster of N worker processes started for this run (default: "
        f"${envvars.DASK}, else nbops.yaml's dask: {{scheduler:}}, else here)",
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

    sp = sub.add_parser(
        "status",
        help="each stage: up to date, or why it would run",
        description="Each stage (each sweep point): up to date, or why `nbops run` would run "
        "it. Reads nbops' own state (no MLflow); on a tracking server, also the runs there for "
        "what is not up to date here.",
    )
    sp.add_argument("stages", nargs="*", metavar="STAGE")
    sp.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when any stage is not up to date, 0 when all are (a CI step)",
    )
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser(
        "checkout",
        help="restore the outs a stage run wrote, byte for byte",
        description="Restore the outs a run recorded: a stage run's; a sweep's stage run's "
        "(every point's and the shared ones); a sweep point's own files (the folders every "
        "point shares are the sweep's: checkout the sweep's run for them).",
    )
    sp.add_argument("run", help="a stage run or sweep point run id")
    sp.set_defaults(func=cmd_checkout)

    sp = sub.add_parser("diff", help="params, metrics and outs that differ between two runs")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp.set_defaults(func=cmd_diff)
