"""Reading runs for the REST API and the notebook: one interface, two paths.

:class:`~nbops.mlflow.readers.sqlite.SqliteReader` answers with read-only SQL when the tracking
store is SQLite at a schema revision it knows (MLflow's own UI tops out around 100 runs; this
pages through 10,000 in milliseconds); :class:`~nbops.mlflow.readers.client.MlflowReader` answers
through MlflowClient for every other store and for what the SQL path cannot translate. Both
return the same models (:mod:`~nbops.mlflow.readers.models`) for the same query.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from nbops import tags
from nbops.comparisons import compare_runs
from nbops.errors import InvalidInput, NotFound
from nbops.mlflow.readers import bounds as limits

if TYPE_CHECKING:  # the pydantic models cost 0.1-0.2 s to import: on first use
    from nbops.mlflow.readers import models as m

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
SUMMARY_TAGS = (tags.STAGE, tags.RERUN_OF, tags.MLFLOW_PARENT_RUN_ID, tags.NOTEBOOK)


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise InvalidInput(
            f"{run_id[:80]!r} is not a run id",
            "run ids are MLflow run ids: 32 lowercase hex characters",
        )
    return run_id


@dataclass
class Page:
    runs: list[m.RunSummary]
    next_token: str | None
    total: int | None
    param_keys: list[str]
    metric_keys: list[str]
    source: str


@dataclass(frozen=True)
class RecordInfo:
    """A run's info as MLflow's ``RunInfo`` has it (same fields, same order: ``dict(info)`` is
    MLflow's), for the read commands."""

    artifact_uri: str | None
    end_time: int | None
    experiment_id: str
    lifecycle_stage: str
    run_id: str
    run_name: str | None
    start_time: int | None
    status: str
    user_id: str | None

    @property
    def run_uuid(self) -> str:
        return self.run_id

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter([(f.name, getattr(self, f.name)) for f in fields(self)])


@dataclass(frozen=True)
class RecordData:
    """A run's params, latest metrics (NaN as ``nan``, as MLflow answers) and every tag."""

    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class RunRecord:
    """A whole run, shaped as MLflow's ``Run`` (``.info``, ``.data``) so that the code written
    for the store facade reads it unchanged."""

    info: RecordInfo
    data: RecordData


@dataclass(frozen=True)
class ExperimentRecord:
    """An active experiment with its tags (hidden ones too), shaped as MLflow's."""

    experiment_id: str
    name: str
    artifact_location: str | None
    lifecycle_stage: str
    tags: dict[str, str]


@dataclass
class RunInfo:
    """What the detail view needs besides the summary: all tags and where the artifacts are."""

    summary: m.RunSummary
    tags: dict[str, str]
    artifact_uri: str | None


def finite(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def summarize(
    run_id: str,
    name: str | None,
    experiment_id: Any,
    status: str,
    start: int | None,
    end: int | None,
    params: dict[str, str],
    metrics: dict[str, float | None],
    run_tags: dict[str, str],
) -> m.RunSummary:
    from nbops.mlflow.readers import models as m

    # built from store rows, not user input: no validation pass (a page is 100 of these)
    return m.RunSummary.model_construct(
        run_id=run_id,
        run_name=name or None,
        experiment_id=str(experiment_id),
        status=status,
        start_time=start,
        end_time=end,
        duration_s=(end - start) / 1000 if end and start else None,
        params=dict(sorted(params.items())),
        metrics={k: finite(v) for k, v in sorted(metrics.items())},
        stage=run_tags.get(tags.STAGE),
        rerun_of=run_tags.get(tags.RERUN_OF),
        parent_run_id=run_tags.get(tags.MLFLOW_PARENT_RUN_ID),
        notebook=run_tags.get(tags.NOTEBOOK),
    )


def query_digest(experiment_ids: list[str], filter_string: str, order_by: list[str]) -> str:
    raw = json.dumps([sorted(experiment_ids), filter_string, order_by])
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def encode_token(digest: str, **position: Any) -> str:
    raw = json.dumps({"q": digest, **position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str | None, digest: str, kind: str) -> dict[str, Any]:
    """The position a page token holds, checked: it must be one this query handed out, of the
    read path ``kind`` ("o": a row offset; "m": MlflowClient's own token), within the limits."""
    if not token:
        return {}
    ok = False
    try:
        limits.text("page_token", token, limits.MAX_TOKEN_CHARS)
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.b64decode(token + pad, altchars=b"-_", validate=True))
        if isinstance(data, dict) and data.get("q") == digest and set(data) <= {"q", "o", "m"}:
            if "o" in data:
                limits.offset(data["o"])
            if "m" in data and not isinstance(data["m"], str):
                raise ValueError("inner token")
            ok = kind in data
    except (ValueError, TypeError, RecursionError, InvalidInput):
        ok = False
    if not ok:
        raise InvalidInput(
            "page_token does not belong to this query (or is corrupt)",
            "pass back the next_page_token of the previous page with the same experiment, "
            "filter and order_by",
        )
    return data  # type: ignore[no-any-return]


def find_experiments(
    known: Sequence[tuple[str, str]], wanted: str | Sequence[str] | None, store: str | None = None
) -> list[str]:
    """The ids of the experiments ``wanted`` names, each by id or else by name (None: all of
    ``known``, which is ``(id, name)`` pairs); NotFound names the first unknown one and lists the
    known names (and ``store``, when given). One look-up for ``nbops.runs()`` and the panel."""
    if wanted is None or wanted == "":
        return [i for i, _ in known]
    by_id = {i for i, _ in known}
    by_name: dict[str, str] = {}
    for i, name in known:
        by_name.setdefault(name, i)
    out = []
    for w in [wanted] if isinstance(wanted, str) else list(wanted):
        if w in by_id:
            out.append(w)
        elif w in by_name:
            out.append(by_name[w])
        else:
            where = f" in {store}" if store else ""
            raise NotFound(
                f"experiment {w!r} does not exist{where}",
                "known experiments: " + (", ".join(sorted(by_name)) or "none yet"),
            )
    return out


class Reader(ABC):
    source = "mlflow"

    @abstractmethod
    def experiments(self) -> list[m.Experiment]: ...

    @abstractmethod
    def search(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
    ) -> Page: ...

    @abstractmethod
    def run_info(self, run_id: str) -> RunInfo: ...

    @abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[m.MetricPoint]: ...

    @abstractmethod
    def summaries(self, run_ids: list[str]) -> list[m.RunSummary]:
        """Runs in the order asked; NotFound names the first id that does not exist."""

    @abstractmethod
    def histories(self, run_ids: list[str]) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
        """Every metric's full history per run: {key: {run_id: [(step, value), ...]}}."""

    @abstractmethod
    def experiment_names(self) -> list[tuple[str, str]]:
        """(experiment_id, name) of the active experiments, without counting their runs."""

    # --- whole runs, for the read commands (nbops runs / show / diff / lineage) ---------------
    @abstractmethod
    def run(self, run_id: str) -> RunRecord:
        """The whole run (a deleted one too, as MLflow's ``get_run``); NotFound when none."""

    @abstractmethod
    def find_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
    ) -> list[RunRecord]:
        """The first ``max_results`` active runs of these experiments that match, in MLflow's
        order (runs by tag: ``tags.`nbops.stage` = 'train'``); a filter MLflow refuses is
        :class:`~nbops.mlflow.search_syntax.SearchSyntaxError`."""

    @abstractmethod
    def all_experiments(self) -> list[ExperimentRecord]:
        """Every active experiment with its tags, nbops' hidden ones too."""

    # --- shared ------------------------------------------------------------------------------
    def experiment_ids(self, experiment: str | None) -> list[str]:
        """The id of the experiment named or numbered ``experiment`` (None: every active one)."""
        return find_experiments(self.experiment_names(), experiment)

    def run_list(
        self,
        experiment: str | None,
        filter_string: str,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
    ) -> m.RunList:
        """GET /nbops/api/runs: the whole answer, as the handler sends it."""
        from nbops.mlflow.readers import models as m

        limits.text("experiment", experiment or "")
        limits.search(filter_string, order_by, max_results)
        ids = self.experiment_ids(experiment)
        page = self.search(ids, filter_string, order_by, max_results, page_token)
        return m.RunList.model_construct(
            runs=page.runs,
            next_page_token=page.next_token,
            total=page.total,
            param_keys=page.param_keys,
            metric_keys=page.metric_keys,
            source=page.source,
        )

    def compare(self, run_ids: list[str]) -> m.RunComparison:
        """The Compare panel's answer: :func:`nbops.comparisons.compare_runs` of the runs, with
        each metric's history (downsampled) for the charts."""
        from nbops.mlflow.readers import models as m

        runs = self.summaries(run_ids)
        ids = [r.run_id for r in runs]
        cmp = compare_runs({r.run_id: r.params for r in runs}, {r.run_id: r.metrics for r in runs})
        hist = {
            k: {rid: downsample(points) for rid, points in by_run.items()}
            for k, by_run in self.histories(ids).items()
        }
        return m.RunComparison(
            runs=runs,
            params_differ=cmp.params_differ,
            params_same=cmp.params_same,
            metrics=cmp.metrics,
            best=cmp.best,
            histories=hist,
        )


MAX_POINTS = 2000
"""Points per series a compare answer carries at most: more than a chart has pixels for. The
full history stays one request away (GET runs/<id>/metrics/<key>)."""


def downsample(
    points: list[tuple[int, float | None]], limit: int = MAX_POINTS
) -> list[tuple[int, float | None]]:
    """At most ``limit`` points of a (step-ordered) series that still draw its shape: the first
    and last points, and per bucket of consecutive points its lowest and highest value (spikes
    and dips survive, unlike taking every n-th point); gaps (None) are kept."""
    if len(points) <= limit:
        return points
    inner = points[1:-1]
    buckets = max(1, (limit - 2) // 2)
    size = -(-len(inner) // buckets)  # ceil
    out = [points[0]]
    for i in range(0, len(inner), size):
        chunk = inner[i : i + size]
        gaps = [p for p in chunk if p[1] is None]
        vals = [p for p in chunk if p[1] is not None]
        if vals:
            lo = min(vals, key=lambda p: p[1])  # type: ignore[arg-type,return-value]
            hi = max(vals, key=lambda p: p[1])  # type: ignore[arg-type,return-value]
            out.extend(sorted({lo, hi}, key=lambda p: p[0]))
        elif gaps:
            out.append(gaps[0])
    out.append(points[-1])
    return out
