"""``nbops verify RUN``: is a stage run reproducible?

Re-executes the run's executed notebook (its code as it ran) in a scratch copy of the project,
with the run's recorded params and its inputs restored to the exact content it read (from the out
cache, through the run that wrote them), logging into a new run tagged ``nbops.verify_of``. Then
compares the metrics (within ``tolerance``), the outputs cell by cell, nbval-style (text
outputs, with volatile parts (memory addresses, timestamps, durations, run ids, the scratch path)
masked and stderr ignored), and the run's own outs (``nbops.out.*``: removed from the scratch
copy first, so the re-execution must write them, then compared by content digest). Tags the run
``nbops.verified=true|false``. The project's own files are never touched.

Which runs: a stage run and a sweep point (its own params, inputs and outs) are verified; a
sweep's parent and a pipeline run executed no notebook themselves, so they are refused naming
the runs to verify (:func:`verifiable`); a run ``nbops run`` did not make is verified when it
kept an executed notebook (a ``notebook/`` artifact), else refused saying so.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops import envvars, project, tags
from nbops.errors import InvalidInput, NotFound
from nbops.tracking import audit

if TYPE_CHECKING:
    from nbops.mlflow.entities import Run as StoredRun
    from nbops.mlflow.store import TrackingStore

VOLATILE = [
    (re.compile(r"0x[0-9a-fA-F]{4,}"), "0x<address>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
        "<timestamp>",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|s|sec|secs|seconds)\b"), "<duration>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),  # MLflow run ids
    (re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{8}\b"), "<id>"),  # nbops spool ids (runs:/<id>/model)
]
VOLATILE_METRIC = re.compile(r"(duration|elapsed|seconds|runtime|wall|_time$|time_s$)", re.I)
TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")


@dataclass
class CellOutputDiff:
    """A code cell whose outputs differ between the run and its re-execution (masked text)."""

    cell: int  # index among the notebook's cells
    execution_count: Any
    expected: str
    got: str


@dataclass
class Verification:
    run_id: str
    ok: bool
    verify_run_id: str | None
    executed: Path
    metrics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    metric_diffs: list[str] = field(default_factory=list)
    ignored_metrics: list[str] = field(default_factory=list)
    cells_compared: int = 0
    cell_diffs: list[CellOutputDiff] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    outs: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    out_diffs: list[str] = field(default_factory=list)
    error: str | None = None


# --- comparing ------------------------------------------------------------------------------------
def normalize(text: str, scratch: str | None = None, root: str | None = None) -> str:
    if scratch and root:
        text = text.replace(scratch, root)
    for pattern, repl in VOLATILE:
        text = pattern.sub(repl, text)
    return text.rstrip()


def cell_text(cell: dict[str, Any]) -> str:
    """What nbval compares of a code cell: stdout, rich text results, errors (not stderr,
    images or widget state)."""
    parts = []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream":
            if o.get("name") == "stdout":
                parts.append("".join(o.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            data = o.get("data", {})
            for mime in TEXT_TYPES:
                if mime in data:
                    v = data[mime]
                    parts.append(
                        json.dumps(v, sort_keys=True) if isinstance(v, dict) else "".join(v)
                    )
                    break
        elif kind == "error":
            parts.append(f"{o.get('ename')}: {o.get('evalue')}")
    return "\n".join(parts)


def compare_cells(
    expected: dict[str, Any], got: dict[str, Any], scratch: str, root: str
) -> tuple[int, list[CellOutputDiff]]:
    a = [c for c in expected.get("cells", []) if c.get("cell_type") == "code"]
    b = [c for c in got.get("cells", []) if c.get("cell_type") == "code"]
    diffs = []
    for i, (ca, cb) in enumerate(zip(a, b, strict=False)):
        ta = normalize(cell_text(ca), scratch, root)
        tb = normalize(cell_text(cb), scratch, root)
        if ta != tb:
            diffs.append(CellOutputDiff(i, ca.get("execution_count"), ta, tb))
    if len(a) != len(b):
        diffs.append(CellOutputDiff(min(len(a), len(b)), None, f"{len(a)} code cells", f"{len(b)}"))
    return min(len(a), len(b)), diffs


def compare_metrics(
    expected: dict[str, float], got: dict[str, float], tolerance: float
) -> tuple[dict[str, tuple[float | None, float | None]], list[str], list[str]]:
    table: dict[str, tuple[float | None, float | None]] = {}
    diffs, ignored = [], []
    for k in sorted(set(expected) | set(got)):
        a, b = expected.get(k), got.get(k)
        table[k] = (a, b)
        if VOLATILE_METRIC.search(k):
            ignored.append(k)
            continue
        if a is None or b is None:
            diffs.append(f"{k}: {'missing' if a is None else a} -> {'missing' if b is None else b}")
        elif not math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance):
            diffs.append(f"{k}: {a:.10g} -> {b:.10g} (beyond tolerance {tolerance:g})")
    return table, diffs, ignored


# --- re-executing ---------------------------------------------------------------------------------
def verifiable(store: TrackingStore, run: StoredRun, root: Path) -> None:
    """Refuse a sweep's parent and a pipeline run (they executed no notebook themselves),
    naming the runs that did: InvalidInput with the exact ``nbops verify`` to run instead."""
    from nbops.ops.lineage import Walker
    from nbops.ops.runkinds import listed

    walker = Walker(root, store)
    rid = run.info.run_id
    kind = walker.kind(run)
    if kind == "sweep":
        points = walker.points(run)
        raise InvalidInput(
            f"run {rid} is the sweep of stage {run.data.tags.get(tags.STAGE)}: it executed no "
            f"notebook itself; its {len(points)} point runs did, each with its own params, "
            f"inputs and outs: {listed(points)}",
            f"verify a point: nbops verify {points[0].info.run_id}",
        )
    if kind == "pipeline":
        runs: list[Any] = []
        for child in walker.children(run):
            runs += walker.points(child) or [child]
        if not runs:
            raise InvalidInput(
                f"run {rid} is the pipeline run of an `nbops run` that made no stage runs",
                "verify a stage run (`nbops runs` lists them)",
            )
        raise InvalidInput(
            f"run {rid} is the pipeline run of an `nbops run`: it executed no notebook itself; "
            f"its {len(runs)} stage and sweep point runs did: {listed(runs)}",
            f"verify one of them: nbops verify {runs[0].info.run_id}",
        )


def _executed_notebook(store: TrackingStore, run: StoredRun, root: Path, into: Path) -> Path:
    rid = run.info.run_id
    runs_dir = project.state_dir(root, create=False) / "runs"
    for name in (rid, run.data.tags.get(tags.SPOOL)):  # kept by run id, or by spool id
        kept = runs_dir / name if name else None
        nbs = sorted(kept.glob("*.ipynb")) if kept is not None and kept.is_dir() else []
        if nbs:
            return Path(nbs[0])
    try:
        for a in store.list_artifacts(rid, "notebook"):
            if a.path.endswith(".ipynb"):
                into.mkdir(parents=True, exist_ok=True)
                return Path(store.download_artifacts(rid, a.path, str(into)))
    except Exception:  # noqa: BLE001 - no artifact store: handled below
        pass
    from nbops.ops.runkinds import KINDS, kind_of

    kind = kind_of(run.data.tags)
    raise NotFound(
        f"run {rid} has no executed notebook (neither .nbops/runs/{rid}/ nor a notebook/ "
        f"artifact): it is {KINDS[kind]}",
        "verify re-executes the notebook a run kept: the stage and sweep point runs of "
        "`nbops run` keep one (`nbops runs` lists them)",
    )


def _params(run: StoredRun, nb: Path) -> dict[str, Any]:
    """The run's recorded params the notebook declares, typed like the declared defaults
    (read back with nbops.values: no aliases, tags, deep nesting or huge numbers)."""
    from nbops.pipeline.notebook import declared_parameters
    from nbops.values import parse_recorded

    declared = declared_parameters(nb)
    out: dict[str, Any] = {}
    for k, v in run.data.params.items():
        if k not in declared:
            continue
        out[k] = v if isinstance(declared[k], str) else parse_recorded(v)
    return out


def _restore_inputs(store: TrackingStore, run: StoredRun, root: Path, work: Path) -> list[str]:
    """Put the content the run read (``nbops.dep.*``) into the scratch copy."""
    from nbops.ops.lineage import Walker, prefixed
    from nbops.pipeline.cache import OutCache, load_record
    from nbops.pipeline.hashing import HashCache

    deps = prefixed(run.data.tags, tags.DEP_PREFIX)
    hashes = HashCache(work, work / ".nbops")
    walker = Walker(root, store)
    restored = []
    for path, digest in deps.items():
        if digest == "missing" or hashes.digest(path) == digest:
            continue
        producer = walker.producer(run, path, digest)
        record: Any = {}
        producer_id = producer.info.run_id if producer is not None else None
        if producer is not None:
            try:
                local = store.download_artifacts(
                    producer.info.run_id, "outs.json", str(work / ".nbops")
                )
            except Exception:  # noqa: BLE001 - no outs.json: cannot restore, said below
                local = None
            if local is not None:
                record = load_record(local, producer_id)
        if not isinstance(record, dict) or path not in record:
            now = hashes.digest(path)
            raise NotFound(
                f"input {path} of run {run.info.run_id} changed since the run (content "
                f"{digest[:12]} then, {now[:12] if now else 'missing'} now) and no stage run "
                "recorded that content, so it cannot be restored",
                f"put the original {path} back (or check it out: nbops checkout RUN), then "
                "verify again",
            )
        cache = OutCache(work, work / ".nbops", hashes)
        cache.dir = project.state_dir(root) / "cache"
        cache.restore({path: record[path]}, run=producer_id)
        restored.append(path)
    return restored


def _clear_outs(run: StoredRun, work: Path) -> dict[str, str]:
    """The run's own outs (``nbops.out.<path>`` = digest; a sweep point's are its per-point
    files), removed from the scratch copy so that only the re-execution can write them."""
    from nbops.ops.lineage import prefixed
    from nbops.pipeline import paths

    outs = {}
    for path, digest in prefixed(run.data.tags, tags.OUT_PREFIX).items():
        if paths.refusal(work, path, "out") is not None:
            continue  # not a path nbops may write: not compared (and never removed)
        outs[path] = digest
        target = work / paths.normalise(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_file() or target.is_symlink():
            target.unlink()
    return outs


def compare_outs(
    expected: dict[str, str], work: Path
) -> tuple[dict[str, tuple[str | None, str | None]], list[str]]:
    """Each out's recorded digest against what the re-execution wrote in ``work``."""
    from nbops.pipeline.hashing import HashCache

    hashes = HashCache(work, work / ".nbops")
    table: dict[str, tuple[str | None, str | None]] = {}
    diffs = []
    for path, digest in sorted(expected.items()):
        got = hashes.digest(path) if (work / path).exists() else None
        table[path] = (digest or None, got)
        if got != (digest or None):
            diffs.append(
                f"{path}: {digest[:12] if digest else 'missing'} -> "
                f"{got[:12] if got else 'not written'}"
            )
    return table, diffs


def _scratch_copy(root: Path, work: Path) -> None:
    shutil.copytree(
        root,
        work,
        ignore=shutil.ignore_patterns(".nbops", ".git", "__pycache__", ".ipynb_checkpoints"),
        symlinks=True,
    )
    (work / ".nbops").mkdir(exist_ok=True)


def verify(run_id: str, tolerance: float = 1e-6, root: Path | None = None) -> Verification:
    """Re-execute a stage run and compare; tags the run ``nbops.verified``."""
    from nbops.ops.names import run_id as check_run_id

    check_run_id(run_id)
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise InvalidInput(
            f"--tolerance {tolerance!r} is not a finite number >= 0", "e.g. --tolerance 1e-6"
        )
    from nbops.executors.base import StageJob
    from nbops.executors.local import LocalExecutor
    from nbops.mlflow.store import open_store
    from nbops.tracking.run import Run

    root = root or project.find_root()
    store = open_store(project.tracking_uri(root))
    run = store.get_run(run_id)
    verifiable(store, run, root)
    out_dir = project.state_dir(root) / "verify" / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    original = _executed_notebook(store, run, root, out_dir / "original")
    nb_tag = run.data.tags.get(tags.NOTEBOOK) or str(original)
    try:
        rel = Path(nb_tag).resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(Path(nb_tag).name)
    exp = store.get_experiment(run.info.experiment_id).name
    with project.scratch(root, "verify-") as tmp:
        work = Path(tmp) / root.name
        _scratch_copy(root, work)
        restored = _restore_inputs(store, run, root, work)
        own_outs = _clear_outs(run, work)
        source = work / rel
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, source)  # the code as it ran, not as it is now
        params = _params(run, source)
        vrun = Run(
            exp,
            f"verify {run.info.run_name or run_id}",
            {tags.VERIFY_OF: run_id, tags.NOTEBOOK: nb_tag},
            params={k: str(v) for k, v in params.items()},
            root=root,
            capture=False,
        )
        output = out_dir / original.name
        job = StageJob(
            run.data.tags.get(tags.STAGE, "verify"),
            f"verify {run_id}",
            source,
            output,
            params,
            source.parent,
            env={
                envvars.ATTACH_SPOOL: str(vrun.spool.dir),
                envvars.NOTEBOOK: str(source),
                envvars.PROJECT_ROOT: str(root),
            },
        )
        executor = LocalExecutor(work, warm=0)
        try:
            result = executor.execute(job)
        finally:
            executor.stop()
        vrun.end("FINISHED" if result.ok else "FAILED")
        vid = vrun.id_if_ready()
        v = Verification(run_id, False, vid, output, restored=restored)
        if not result.ok:
            v.error = str(result.error) if result.error else "the re-execution failed"
        got_metrics = store.get_run(vid).data.metrics if vid else {}
        v.metrics, v.metric_diffs, v.ignored_metrics = compare_metrics(
            run.data.metrics, got_metrics, tolerance
        )
        v.outs, v.out_diffs = compare_outs(own_outs, work)
        if output.exists():
            v.cells_compared, v.cell_diffs = compare_cells(
                json.loads(Path(original).read_text(encoding="utf-8")),
                json.loads(output.read_text(encoding="utf-8")),
                str(work),
                str(root),
            )
    v.ok = v.error is None and not v.metric_diffs and not v.cell_diffs and not v.out_diffs
    _record(store, v, root)
    return v


def _record(store: TrackingStore, v: Verification, root: Path) -> None:
    verdict = [
        (tags.VERIFIED, str(v.ok).lower()),
        (tags.VERIFIED_AT, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
    ]
    if v.verify_run_id:
        verdict.append((tags.VERIFIED_BY, v.verify_run_id))
        store.log_batch(v.verify_run_id, tags=[(tags.VERIFY_RESULT, str(v.ok).lower())])
    store.log_batch(v.run_id, tags=verdict)
    audit.safe_record(
        "verify",
        root=root,
        store=store,
        run_id=v.run_id,
        verify_run_id=v.verify_run_id,
        ok=v.ok,
        differences=len(v.metric_diffs)
        + len(v.cell_diffs)
        + len(v.out_diffs)
        + (1 if v.error else 0),
    )
