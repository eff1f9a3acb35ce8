"""``nbops drift``: read two tables, ``check_drift`` them, write the HTML report, log the
statistics as an MLflow run (experiment ``drift``), append to the audit log and, with
``--retrain``, run the ``on_drift`` stages as ``nbops run --force`` tagged with the drift run."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops import project, tags
from nbops.errors import ConfigError, InvalidInput, NotFound
from nbops.ops.drift import DriftReport, check_drift
from nbops.tracking import audit

EXPERIMENT = "drift"
_KEY_BAD = re.compile(r"[^\w.\- /]")


@dataclass
class DriftCheck:
    report: DriftReport
    run_id: str | None
    html: Path
    retrain: dict[str, Any] = field(default_factory=dict)  # status, exit_code, run_ids
    on_drift: list[str] = field(default_factory=list)


def read_table(path: Path) -> Any:
    import pandas as pd

    try:
        exists = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL
        exists = False
    if not exists:
        shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
        raise NotFound(f"table {shown!r} does not exist", f"check the path (cwd {os.getcwd()})")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".json", ".jsonl"):
            return pd.read_json(path, lines=suffix == ".jsonl")
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as exc:  # noqa: BLE001 - a bad file is the user's to fix, not a traceback
        raise InvalidInput(
            f"table {str(path)!r} cannot be read: {str(exc).splitlines()[0][:200]}",
            "nbops drift reads CSV, TSV, Parquet and JSON (lines) files",
        ) from None


def settings(
    root: Path, ref: str | None, cur: str | None, threshold: float | None
) -> tuple[Path, Path, float, list[str]]:
    """REF, CUR and threshold from the command line, else from ``drift:`` of nbops.yaml."""
    from nbops.ops.registry import pipeline

    spec = pipeline(root)
    drift = spec.drift if spec is not None else None
    if (ref is None) != (cur is None):
        raise InvalidInput("give both REF and CUR, or neither", "nbops drift REF.csv CUR.csv")
    if ref is None or cur is None:
        if drift is None:
            raise ConfigError(
                f"no tables to compare: no REF CUR given and no `drift:` in {project.CONFIG_FILE}",
                "run `nbops drift REF.csv CUR.csv`, or add drift: {reference: ..., current: ...}",
                file=str(root / project.CONFIG_FILE),
            )
        ref_p, cur_p = root / drift.reference, root / drift.current
    else:
        for what, text in (("REF", ref), ("CUR", cur)):
            if "\x00" in text or not text:
                raise InvalidInput(f"{what} {text[:200]!r} is not a file name", "name a table file")
        ref_p, cur_p = Path(ref).resolve(), Path(cur).resolve()
    th = threshold if threshold is not None else (drift.threshold if drift else 0.05)
    try:
        th = float(th)
    except (TypeError, ValueError):
        th = math.nan
    if not 0 < th < 1:  # also NaN
        raise InvalidInput(
            f"drift threshold {th!r} is not a p-value between 0 and 1",
            "e.g. --threshold 0.05 (or drift: threshold: in nbops.yaml)",
        )
    return ref_p, cur_p, th, list(drift.on_drift) if drift else []


def run_check(
    root: Path,
    ref: str | None = None,
    cur: str | None = None,
    threshold: float | None = None,
    retrain: bool = False,
    html_out: str | None = None,
) -> DriftCheck:
    """Compare, report, log and audit; ``retrain`` only checks that there is something to run
    (call :func:`retrain` after showing the result)."""
    ref_p, cur_p, th, on_drift = settings(root, ref, cur, threshold)
    if retrain and not on_drift:
        raise ConfigError(
            "--retrain needs the stages to run: `drift: on_drift:` is empty or missing",
            "add on_drift: [prepare, train] under drift: in nbops.yaml",
            file=str(root / project.CONFIG_FILE),
        )
    report = check_drift(read_table(ref_p), read_table(cur_p), th)
    report.reference, report.current = _rel(ref_p, root), _rel(cur_p, root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    html = Path(html_out) if html_out else project.state_dir(root) / "drift" / f"{stamp}.html"
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(report.to_html(f"nbops drift report {stamp}"), encoding="utf-8")
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(
            f"--html {str(html)[:200]!r} cannot be written: {why}",
            "name a file in a writable directory, e.g. --html reports/drift.html",
        ) from None
    run_id = _log_run(root, report, ref_p, cur_p, html)
    from nbops.mlflow.store import open_store

    audit.safe_record(
        "drift.check",
        root=root,
        store=open_store(project.tracking_uri(root)),
        run_id=run_id,
        reference=report.reference,
        current=report.current,
        drifted=report.drifted_columns,
    )
    return DriftCheck(report, run_id, html, on_drift=on_drift)


def retrain(root: Path, check: DriftCheck) -> dict[str, Any]:
    """Run the ``on_drift`` stages for a drift check that found drift; links the runs."""
    if check.run_id is None or not check.on_drift:
        return {}
    check.retrain = _retrain(root, check.on_drift, check.run_id)
    return check.retrain


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _key(column: str) -> str:
    return _KEY_BAD.sub("_", column)[:200] or "_"


def _log_run(root: Path, report: DriftReport, ref_p: Path, cur_p: Path, html: Path) -> str:
    """The check as an MLflow run: params, per-column metrics, data fingerprints, the report."""
    from nbops.mlflow.store import open_store
    from nbops.tracking.fingerprint import fingerprint

    store = open_store(project.tracking_uri(root))
    fps = {"reference": fingerprint(ref_p, role="input"), "current": fingerprint(cur_p)}
    run_tags = {
        tags.KIND: "drift",
        tags.DRIFT: str(report.drifted).lower(),
        tags.DRIFT_COLUMNS: ",".join(report.drifted_columns)[:5000],
        **{f"{tags.DATA_PREFIX}{role}.{_key(fp['name'])}": fp["xxh3"] for role, fp in fps.items()},
    }
    try:
        import getpass

        run_tags[tags.MLFLOW_USER] = getpass.getuser()
    except (KeyError, OSError):
        pass
    start = int(time.time() * 1000)
    rid = store.create_run(store.experiment_id(EXPERIMENT), start, "drift-check", run_tags)
    ms = int(time.time() * 1000)
    metrics = [("drift.n_drifted", float(len(report.drifted_columns)), 0, ms)]
    for c in report.columns:
        k = _key(c.column)
        metrics += [
            (f"drift.{k}.p_value", c.p_value, 0, ms),
            (f"drift.{k}.statistic", c.statistic, 0, ms),
            (f"drift.{k}.psi", c.psi, 0, ms),
        ]
    params = [
        ("reference", report.reference),
        ("current", report.current),
        ("threshold", str(report.threshold)),
    ]
    for i in range(0, len(metrics), 900):
        store.log_batch(rid, metrics=metrics[i : i + 900], params=params if i == 0 else ())
    for fp in fps.values():
        try:
            store.log_dataset(rid, fp)
        except Exception:  # noqa: BLE001 - the tags above already hold the fingerprints
            pass
    with project.scratch(root) as tmp:
        js = Path(tmp) / "drift.json"
        js.write_text(json.dumps(report.to_dict(), indent=1))
        store.log_artifact(rid, str(js), None)
        rep = Path(tmp) / "drift_report.html"
        rep.write_bytes(html.read_bytes())
        store.log_artifact(rid, str(rep), None)
    store.set_terminated(rid, "FINISHED", int(time.time() * 1000))
    return rid


KIND_WORDS = {
    "pipeline": ("pipeline run", "pipeline runs"),
    "stage": ("stage run", "stage runs"),
    "sweep": ("sweep run", "sweep runs"),
    "point": ("sweep point run", "sweep point runs"),
}


def tagged_runs(store: Any, drift_run: str) -> dict[str, list[str]]:
    """The runs of every experiment tagged ``nbops.drift_run=<drift_run>``, by kind
    (``pipeline``, ``stage``, ``sweep``, ``point`` in that order; anything else after, under its
    own kind), each oldest first: what the store holds, the one count the line, ``--json`` and
    the audit record use."""
    from nbops.ops.names import filter_value
    from nbops.ops.runkinds import kind_of

    quoted = filter_value(drift_run)
    ids = [str(e.experiment_id) for e in store.experiments()]
    if quoted is None or not ids:
        return {}
    found = store.search_runs(
        ids, f"tags.`{tags.DRIFT_RUN}` = {quoted}", ["attributes.start_time ASC"], 10000
    )
    parents = {
        r.data.tags.get(tags.MLFLOW_PARENT_RUN_ID) for r in found if tags.SWEEP_POINT in r.data.tags
    }
    out: dict[str, list[str]] = {}
    for r in found:
        kind = kind_of(r.data.tags, r.info.run_id in parents)
        out.setdefault(kind, []).append(str(r.info.run_id))
    # the kinds in one order whatever the start times (a sweep's run and its first point start
    # in the same millisecond): the line and the audit record say the same thing every time
    order = list(KIND_WORDS)
    return dict(
        sorted(
            out.items(),
            key=lambda kv: (kv[0] not in order, order.index(kv[0]) if kv[0] in order else 0, kv[0]),
        )
    )


def describe(result: dict[str, Any]) -> str:
    """The line ``nbops drift --retrain`` prints about the retraining, from its result."""
    verdict = "done" if result.get("exit_code") == 0 else "FAILED"
    parts = [f"retrain {verdict}: {result.get('command')}"]
    ran, fresh = result.get("ran") or [], result.get("up_to_date") or []
    parts.append("ran " + (", ".join(ran) if ran else "no stage"))
    if fresh:
        parts.append("up to date, not re-run: " + ", ".join(fresh))
    if result.get("pipeline_run_id"):
        parts.append(f"pipeline run {result['pipeline_run_id']}")
    tagged: dict[str, list[str]] = result.get("tagged") or {}
    total = sum(len(v) for v in tagged.values())
    kinds = ", ".join(
        f"{len(v)} {KIND_WORDS.get(k, (k + ' run', k + ' runs'))[len(v) != 1]}"
        for k, v in tagged.items()
    )
    parts.append(
        f"{total} run{'s' if total != 1 else ''} tagged {tags.DRIFT_RUN}={result.get('drift_run')}"
        + (f" ({kinds})" if kinds else "")
    )
    return "; ".join(parts)


def _retrain(root: Path, stages: list[str], drift_run: str) -> dict[str, Any]:
    """``nbops run <stages> --force --tag nbops.drift_run=<id>`` (``--force`` forces the named
    stages; an upstream stage runs only if it is not up to date); its output goes to the
    terminal; what ran is read from ``--summary``, the runs it tagged from the store, and both
    are linked from the drift run and recorded in the audit log."""
    command = f"nbops run {' '.join(stages)} --force"
    with project.scratch(root) as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [
            sys.executable,
            "-m",
            "nbops",
            "run",
            *stages,
            "--force",
            "--tag",
            f"{tags.DRIFT_RUN}={drift_run}",
            "--summary",
            str(summary),
        ]
        print(f"drift found: retraining: {command}", flush=True)
        proc = subprocess.run(cmd, cwd=root, check=False)
        outcome = json.loads(summary.read_text()) if summary.is_file() else {}
    ran_stages: dict[str, Any] = outcome.get("stages") or {}
    run_ids = [rid for s in ran_stages.values() for rid in s.get("run_ids", [])]
    from nbops.mlflow.store import open_store

    store = open_store(project.tracking_uri(root))
    result = {
        "command": command,
        "drift_run": drift_run,
        "exit_code": proc.returncode,
        "status": outcome.get("status", "failed"),
        "pipeline_run_id": outcome.get("pipeline_run_id"),
        "stages": list(stages),
        "ran": [n for n, st in ran_stages.items() if st.get("status") == "done"],
        "up_to_date": [n for n, st in ran_stages.items() if st.get("status") == "up to date"],
        "not_run": [
            n for n, st in ran_stages.items() if st.get("status") not in ("done", "up to date")
        ],
        "run_ids": run_ids,
        "tagged": tagged_runs(store, drift_run),
        "error": outcome.get("error"),
    }
    links = [
        (tags.RETRAIN_STATUS, str(result["status"])),
        (tags.RETRAIN_RUNS, ",".join(run_ids)[:7900]),
    ]
    if result["pipeline_run_id"]:
        links.append((tags.RETRAIN_PIPELINE_RUN, str(result["pipeline_run_id"])))
    store.log_batch(drift_run, tags=links)
    audit.safe_record(
        "drift.retrain",
        root=root,
        store=store,
        run_id=drift_run,
        command=command,
        stages=stages,
        ran=result["ran"],
        up_to_date=result["up_to_date"],
        status=result["status"],
        pipeline_run_id=result["pipeline_run_id"],
        tagged={k: len(v) for k, v in result["tagged"].items()},
    )
    return result
