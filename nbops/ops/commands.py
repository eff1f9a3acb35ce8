"""The operations' CLI verbs: ``nbops promote``, ``rollback``, ``models``, ``audit``, ``drift``,
``lineage``, ``verify``. Parsing here, work in the modules named after each verb; every import of
MLflow, pandas or scipy happens inside a command, so ``nbops --help`` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from nbops import tags
from nbops.errors import Exit
from nbops.table import table


def _when(ms: Any) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(int(ms) / 1000))


# --- registry ------------------------------------------------------------------------------------
def cmd_promote(args: argparse.Namespace) -> int:
    from nbops.ops.registry import promote

    p = promote(args.run, args.model, args.alias)
    for o in p.outcomes:
        print(f"  gate {o.name}: passed ({o.detail})")
    how = "reused" if p.reused else "registered"
    was = f" (was version {p.previous})" if p.previous and p.previous != p.version else ""
    print(
        f"{how} run {p.run_id} as {p.model} version {p.version}; @{p.alias} -> version "
        f"{p.version}{was}"
    )
    return Exit.OK


def cmd_rollback(args: argparse.Namespace) -> int:
    from nbops.ops.registry import rollback

    old, new = rollback(args.model, args.alias)
    print(f"{args.model} @{args.alias}: version {old} -> version {new}")
    return Exit.OK


def cmd_models(args: argparse.Namespace) -> int:
    from nbops.ops.registry import models

    rows = models(args.name)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return Exit.OK
    if not rows:
        print("no registered models yet: nbops promote RUN --model NAME registers one")
        return Exit.OK
    if args.name is None:
        cells = [
            [
                r["model"],
                " ".join(f"@{a}=v{v}" for a, v in r["aliases"].items()) or "-",
                r["latest"] or "-",
            ]
            for r in rows
        ]
        print(table(cells, ["MODEL", "ALIASES", "LATEST"]))
        return Exit.OK
    metric_names = list(rows[0]["metrics"]) if rows else []
    cells = []
    for r in rows:
        cells.append(
            [
                r["version"],
                " ".join("@" + a for a in r["aliases"]) or "-",
                r["run_id"] or "-",
                _when(r["created"]),
            ]
            + [
                "-" if r["metrics"].get(m) is None else f"{r['metrics'][m]:.4g}"
                for m in metric_names
            ]
        )
    print(table(cells, ["VERSION", "ALIASES", "RUN", "CREATED", *metric_names]))
    return Exit.OK


# --- audit ---------------------------------------------------------------------------------------
_SHOWN = ("seq", "ts", "who", "action")
_HIDDEN = ("seq", "ts", "who", "host", "action", "prev", "hash", "id")


def cmd_audit(args: argparse.Namespace) -> int:
    from nbops import project
    from nbops.tracking import audit, audit_shared

    shared = audit_shared.is_shared(project.tracking_uri())
    if shared:  # records the server could not take before go first (in their order)
        sent = audit_shared.flush()
        if sent.sent:
            print(f"nbops audit: delivered {len(sent.sent)} pending record(s)", file=sys.stderr)
        if sent.left:
            print(
                f"nbops audit: note: {sent.left} record(s) still wait in "
                f".nbops/{audit_shared.PENDING_NAME}: {sent.error}",
                file=sys.stderr,
            )
    if args.verify:
        v = audit.check()
        for note in v.notes:
            print(f"nbops audit: note: {note}", file=sys.stderr)
        if v.problem is not None:
            if v.shared:
                for other in v.problems[1:]:
                    print(f"nbops audit: also: {other}", file=sys.stderr)
                print(
                    f"nbops audit: the shared audit trail ({v.shared}) was tampered with: "
                    f"{v.problem}",
                    file=sys.stderr,
                )
                return Exit.FAILED
            print(
                f"nbops audit: the audit log was tampered with: {v.problem} "
                f"({v.records} records before it are intact)",
                file=sys.stderr,
            )
            return Exit.FAILED
        if v.shared:
            print(
                f"shared audit trail intact: {v.records} records by {v.writers} user@host(s) in "
                f"{v.shared}; checked " + ", ".join(v.checked)
            )
            return Exit.OK
        if v.records == 0:
            print("audit log intact: no records yet (compared with " + ", ".join(v.checked) + ")")
            return Exit.OK
        print(
            f"audit log intact: {v.records} records, hash chain verified, its end matches "
            + " and ".join(v.checked)
        )
        return Exit.OK
    recs = audit.select(action=args.action, since=args.since)
    if args.json:
        print(json.dumps(recs, indent=1))
        return Exit.OK
    if not recs:
        print("no audit records" + (" match" if args.action or args.since else " yet"))
        return Exit.OK
    rows = [
        [
            str(r.get("seq")),
            str(r.get("ts", ""))[:19].replace("T", " "),
            str(r.get("who", "")),
            *([str(r.get("host", ""))] if shared else []),
            str(r.get("action", "")),
            " ".join(f"{k}={v}" for k, v in r.items() if k not in _HIDDEN and v is not None),
        ]
        for r in recs
    ]
    head = ["SEQ", "WHEN (UTC)", "WHO", *(["HOST"] if shared else []), "ACTION", "WHAT"]
    print(table(rows, head))
    return Exit.OK


# --- drift ---------------------------------------------------------------------------------------
def cmd_drift(args: argparse.Namespace) -> int:
    from nbops.ops.monitor import describe, retrain, run_check
    from nbops.project import find_root

    root = find_root()
    check = run_check(root, args.ref, args.cur, args.threshold, args.retrain, args.html)
    rep = check.report
    if not args.json:
        print(f"drift: {rep.reference} -> {rep.current}")
        print(rep.table())
        print(f"report {check.html}; run {check.run_id} (experiment drift)", flush=True)
    if args.retrain and rep.drifted:
        r = retrain(root, check)
        if not args.json:
            print(describe(r))
    if args.json:
        out = {**rep.to_dict(), "run_id": check.run_id, "html": str(check.html)}
        print(json.dumps({**out, "retrain": check.retrain or None}, indent=1))
    if check.retrain and check.retrain["exit_code"] != 0:
        return Exit.FAILED
    return Exit.DRIFT if rep.drifted else Exit.OK


# --- lineage -------------------------------------------------------------------------------------
def cmd_lineage(args: argparse.Namespace) -> int:
    from nbops.ops.lineage import lineage, render

    tree = lineage(args.target)
    print(json.dumps(tree, indent=1, default=str) if args.json else render(tree))
    return Exit.OK


# --- verify --------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from nbops.ops.verify import verify

    v = verify(args.run, args.tolerance)
    if v.restored:
        print("restored inputs: " + ", ".join(v.restored))
    for k, (a, b) in v.metrics.items():
        mark = " (volatile, ignored)" if k in v.ignored_metrics else ""
        show = ["-" if x is None else f"{x:.10g}" for x in (a, b)]
        print(f"  metric {k}: {show[0]} -> {show[1]}{mark}")
    if v.error:
        print(f"re-execution failed: {v.error}")
    for path, (was, now) in v.outs.items():
        print(f"  out {path}: {(was or 'missing')[:12]} -> {(now or 'not written')[:12]}")
    for d in v.metric_diffs:
        print(f"DIFFERS metric {d}")
    for d in v.out_diffs:
        print(f"DIFFERS out {d}")
    for c in v.cell_diffs:
        print(f"DIFFERS code cell {c.cell} (In [{c.execution_count}]):")
        print("  expected: " + (c.expected.replace("\n", "\n            ") or "(no output)"))
        print("  got:      " + (c.got.replace("\n", "\n            ") or "(no output)"))
    verdict = "reproduced" if v.ok else "NOT reproduced"
    print(
        f"run {v.run_id} {verdict}: {len(v.metrics)} metrics, {v.cells_compared} code cells "
        f"compared, {len(v.outs)} outs compared; re-executed as run {v.verify_run_id}, "
        f"notebook {v.executed}; tagged {tags.VERIFIED}={str(v.ok).lower()}"
    )
    return Exit.OK if v.ok else Exit.FAILED


# --- parsers -------------------------------------------------------------------------------------
def add_parsers(sub: Any) -> None:
    from nbops.ops.arguments import number

    sp = sub.add_parser(
        "promote",
        help="register a run's model and move an alias to it, if the gates pass",
        description="Check the gates of nbops.yaml for the model (stage, required metrics, "
        "better than the current alias holder), then register the run's model in MLflow's "
        "Model Registry and move the alias. A refused promotion changes nothing (exit 1).",
    )
    sp.add_argument("run", help="the run id of a run that logged a model")
    sp.add_argument("--model", "-m", required=True, help="registered model name")
    sp.add_argument(
        "--alias", "-a", default=None, help="alias to move (default: the gate's, or champion)"
    )
    sp.set_defaults(func=cmd_promote)

    sp = sub.add_parser(
        "rollback",
        help="move a model alias back to the version that held it before",
        description="Move the alias back one step in its history (repeatable).",
    )
    sp.add_argument("model", metavar="NAME")
    sp.add_argument("--alias", "-a", default="champion")
    sp.set_defaults(func=cmd_rollback)

    sp = sub.add_parser("models", help="registered models, or one model's versions")
    sp.add_argument("name", nargs="?", metavar="NAME")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_models)

    sp = sub.add_parser(
        "audit",
        help="the hash-chained audit log: list, filter, verify",
        description="List the audit log of .nbops/audit.jsonl (runs, promotions, rollbacks, "
        "schedule changes, drift checks), or check its hash chain with --verify (exit 1 and "
        "the first bad record if it was edited, cut or reordered). With a server store "
        "(MLFLOW_TRACKING_URI=http://...): the team's shared trail on the server (experiment "
        "nbops-audit), with the user and host of each record; --verify exits 1 naming the run "
        "of the first record edited, deleted or removed.",
    )
    sp.add_argument("--action", help="only this action (e.g. promote, run.end, or run)")
    sp.add_argument("--since", help="only records newer than 30m, 2h, 7d or a date")
    sp.add_argument("--verify", action="store_true", help="check the hash chain")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_audit)

    sp = sub.add_parser(
        "drift",
        help="compare two tables for data drift (exit 3 on drift); --retrain runs on_drift",
        description="Per column: Kolmogorov-Smirnov (numbers) or chi-squared (categories) and "
        "PSI. Prints a table, writes an HTML report, logs the statistics as an MLflow run "
        "(experiment drift). REF and CUR default to drift: reference/current of nbops.yaml. "
        "Exit 3 when a column drifted.",
    )
    sp.add_argument("ref", nargs="?", metavar="REF", help="reference table (CSV, Parquet, JSON)")
    sp.add_argument("cur", nargs="?", metavar="CUR", help="current table")
    sp.add_argument(
        "--threshold",
        type=number(0, 1, open_lo=True, open_hi=True),
        default=None,
        help="p-value below which a column drifted (default: nbops.yaml, else 0.05)",
    )
    sp.add_argument(
        "--retrain",
        action="store_true",
        help="on drift, run the on_drift stages (nbops run STAGES --force: the named stages; "
        "an upstream stage only if it is not up to date), every run tagged with the drift run "
        "and counted by kind",
    )
    sp.add_argument("--html", help="where to write the HTML report (default .nbops/drift/)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_drift)

    sp = sub.add_parser(
        "lineage",
        help="where a model or run came from: run, stage, notebook, git, params, data, upstream",
        description="Walk model version -> run -> stage -> executed notebook -> git commit -> "
        "params -> data fingerprints -> upstream stage runs (those whose outs are this run's "
        "deps or tracked files, by content hash; for a directory, the runs whose outs make it "
        "up). Any run: a stage run, a sweep point (its own outs), a sweep's run (its points), "
        "a pipeline run (its stage runs), a run nbops run did not make (what it recorded).",
    )
    sp.add_argument("target", metavar="NAME@ALIAS|NAME/VERSION|RUN")
    sp.add_argument("--json", action="store_true", help="the tree as JSON")
    sp.set_defaults(func=cmd_lineage)

    sp = sub.add_parser(
        "verify",
        help="re-execute a stage run with its params and inputs; compare metrics and outputs",
        description="Re-execute the run's notebook (its code as it ran) in a scratch copy of the "
        "project with the recorded params and the inputs restored from the out cache, compare "
        "metrics (--tolerance), outputs cell by cell (volatile parts masked) and the run's own "
        "outs (by content digest), report what differs and tag the run "
        "nbops.verified=true|false. Exit 1 when it differs.",
    )
    sp.add_argument(
        "run",
        help="a stage run or sweep point id (a sweep's run or a pipeline run: the runs to "
        "verify are named)",
    )
    sp.add_argument(
        "--tolerance",
        type=number(0, 1e300),
        default=1e-6,
        help="relative and absolute (default 1e-6)",
    )
    sp.set_defaults(func=cmd_verify)
