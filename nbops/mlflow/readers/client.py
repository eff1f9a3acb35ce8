"""The general read path: MlflowClient (through the store facade, :mod:`nbops.mlflow.store`), for
any tracking store (MLflow server, files, databases).

On a tracking server every call is an HTTP round trip, so the per-run reads are batched: the
runs of a compare come from one search per :data:`BATCH` ids (``attributes.run_id IN (...)``), not
one ``get_run`` each, and metric histories are fetched :data:`HISTORY_THREADS` at a time.
Experiments tagged ``nbops.hidden`` (nbops' own: the shared audit trail, the shared outs) are not
listed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbops import tags as tag_names
from nbops.errors import InvalidInput, NotFound
from nbops.mlflow import search
from nbops.mlflow.failures import BAD_REQUEST, INVALID_PARAMETER_VALUE, error_code
from nbops.mlflow.readers import bounds as limits
from nbops.mlflow.readers import models as m
from nbops.mlflow.readers.base import (
    RUN_ID,
    ExperimentRecord,
    Page,
    Reader,
    RecordData,
    RecordInfo,
    RunInfo,
    RunRecord,
    decode_token,
    encode_token,
    finite,
    query_digest,
    summarize,
)


def _syntax(filter_string: str, order_by: list[str], exc: Exception) -> InvalidInput:
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return InvalidInput(
        f"filter {filter_string[:200]!r} / order_by {order_by} is not valid MLflow search "
        f"syntax: {msg}",
        "example: \"metrics.accuracy > 0.9 and params.C = '1.0'\"",
    )


def _check_order(filter_string: str, order_by: list[str]) -> None:
    """Each order_by clause parses and names its key once (MLflow reports a repeated key as an
    internal error)."""
    seen: set[tuple[str, str]] = set()
    for clause in order_by:
        try:
            kind, key, _ = search.parse_order_by(clause)
        except search.SearchSyntaxError as exc:
            raise _syntax(filter_string, order_by, exc) from exc
        if (kind, key) in seen:
            raise InvalidInput(f"order_by names {clause[:200]!r} twice", "name each key once")
        seen.add((kind, key))


def _check_inner_token(inner: str) -> None:
    """MlflowClient's own page token, when it is the offset token of MLflow's SQL and file
    stores (base64 JSON ``{"offset": n}``), within the offset limit (a huge one overflows SQLite
    inside MLflow). Tokens of other stores are opaque and passed on as they are."""
    import base64
    import json

    try:
        data = json.loads(base64.b64decode(inner + "=" * (-len(inner) % 4)))
    except (ValueError, TypeError, RecursionError):
        return
    if isinstance(data, dict) and "offset" in data:
        try:
            limits.offset(data["offset"])
        except ValueError:
            raise InvalidInput(
                "page_token is corrupt (its offset is out of range)",
                "pass back the next_page_token of the previous page",
            ) from None


BATCH = 100
"""Run ids one search asks for (``attributes.run_id IN (...)``)."""
HISTORY_THREADS = 8
"""Metric histories read at once (each is one request on a tracking server)."""


def hidden(experiment: Any) -> bool:
    """True for nbops' own experiments (tagged ``nbops.hidden``): listings skip them."""
    value = (getattr(experiment, "tags", None) or {}).get(tag_names.HIDDEN, "")
    return str(value).strip().lower() == "true"


def record_of(run: Any) -> RunRecord:
    """An MLflow ``Run`` as the readers' :class:`~nbops.mlflow.readers.base.RunRecord`."""
    i, d = run.info, run.data
    info = RecordInfo(
        i.artifact_uri,
        i.end_time,
        str(i.experiment_id),
        i.lifecycle_stage,
        i.run_id,
        i.run_name,
        i.start_time,
        i.status,
        i.user_id,
    )
    return RunRecord(info, RecordData(dict(d.params), dict(d.metrics), dict(d.tags)))


class MlflowReader(Reader):
    source = "mlflow"

    def __init__(self, uri: str) -> None:
        from nbops.mlflow.store import open_store

        self.store = open_store(uri)

    def _experiments(self) -> list[Any]:
        return [e for e in self.store.experiments() if not hidden(e)]

    def experiments(self) -> list[m.Experiment]:
        out = []
        for e in self._experiments():
            count, last, token = 0, None, None
            while True:  # no count API in MLflow: page through the runs, newest first
                page, token = self.store.search_runs_page(
                    [e.experiment_id], max_results=1000, page_token=token
                )
                if last is None and page:
                    last = page[0].info.start_time
                count += len(page)
                if not token:
                    break
            out.append(
                m.Experiment(
                    experiment_id=str(e.experiment_id),
                    name=e.name,
                    run_count=count,
                    last_run_time=last,
                )
            )
        return sorted(out, key=lambda x: int(x.experiment_id) if x.experiment_id.isdigit() else 0)

    def experiment_names(self) -> list[tuple[str, str]]:
        exps = [(str(e.experiment_id), e.name) for e in self._experiments()]
        return sorted(exps, key=lambda x: int(x[0]) if x[0].isdigit() else 0)

    def _summary(self, run: Any) -> m.RunSummary:
        info, data = run.info, run.data
        return summarize(
            info.run_id,
            info.run_name,
            info.experiment_id,
            info.status,
            info.start_time,
            info.end_time,
            dict(data.params),
            dict(data.metrics),
            dict(data.tags),
        )

    def search(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
    ) -> Page:
        limits.search(filter_string, order_by, max_results)
        digest = query_digest(experiment_ids, filter_string, order_by)
        inner = decode_token(page_token, digest, "m").get("m")
        if inner is not None:
            _check_inner_token(inner)
        if filter_string:
            try:
                parsed = search.parse_filter(filter_string)
            except search.SearchSyntaxError as exc:
                raise _syntax(filter_string, order_by, exc) from exc
            limits.terms(parsed)
        _check_order(filter_string, order_by)
        if not experiment_ids:
            return Page([], None, 0, [], [], self.source)
        try:
            page, inner_next = self.store.search_runs_page(
                experiment_ids, filter_string, order_by or None, max_results, inner
            )
        except Exception as exc:
            if error_code(exc) in (INVALID_PARAMETER_VALUE, BAD_REQUEST):
                raise _syntax(filter_string, order_by, exc) from exc
            raise
        runs = [self._summary(r) for r in page]
        nxt = encode_token(digest, m=inner_next) if inner_next else None
        # MLflow has no count or key listing: keys are those of the runs on this page
        pkeys = sorted({k for r in runs for k in r.params})
        mkeys = sorted({k for r in runs for k in r.metrics})
        return Page(runs, nxt, None, pkeys, mkeys, self.source)

    def _get(self, run_id: str) -> Any:
        run = self.store.get_run(run_id)  # NotFound for unknown ids
        if run.info.lifecycle_stage != "active":
            raise NotFound(f"run {run_id} was deleted", "restore it with `mlflow runs restore`")
        return run

    def run_info(self, run_id: str) -> RunInfo:
        run = self._get(run_id)
        tags = dict(sorted(run.data.tags.items()))
        return RunInfo(self._summary(run), tags, run.info.artifact_uri)

    def summaries(self, run_ids: list[str]) -> list[m.RunSummary]:
        """One search per :data:`BATCH` ids over every experiment (hidden ones too: a run id
        names its run wherever it is); an id the search did not find (unknown, deleted) is
        asked for alone, for the exact NotFound."""
        found: dict[str, Any] = {}
        wanted = [rid for rid in dict.fromkeys(run_ids) if RUN_ID.fullmatch(rid)]
        if wanted:
            exp_ids = [str(e.experiment_id) for e in self.store.experiments()]
            for i in range(0, len(wanted), BATCH):
                chunk = wanted[i : i + BATCH]
                quoted = ", ".join(f"'{rid}'" for rid in chunk)  # 32 hex digits each
                for run in self.store.search_runs(
                    exp_ids, f"attributes.run_id IN ({quoted})", None, len(chunk)
                ):
                    found[run.info.run_id] = run
        return [self._summary(found[rid] if rid in found else self._get(rid)) for rid in run_ids]

    def metric_history(self, run_id: str, key: str) -> list[m.MetricPoint]:
        self._get(run_id)
        hist = self.store.metric_history(run_id, key)
        pts = sorted(hist, key=lambda x: (x.step, x.timestamp, x.value))
        return [
            m.MetricPoint(step=p.step, timestamp=p.timestamp, value=finite(p.value)) for p in pts
        ]

    def histories(self, run_ids: list[str]) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
        ids = list(dict.fromkeys(run_ids))
        keys = {s.run_id: list(s.metrics) for s in self.summaries(ids)}
        pairs = [(rid, key) for rid in ids for key in keys[rid]]

        def one(pair: tuple[str, str]) -> list[tuple[int, float | None]]:
            hist = self.store.metric_history(*pair)
            pts = sorted(hist, key=lambda x: (x.step, x.timestamp, x.value))
            return [(p.step, finite(p.value)) for p in pts]

        if len(pairs) > 1:
            with ThreadPoolExecutor(min(HISTORY_THREADS, len(pairs))) as pool:
                series = list(pool.map(one, pairs))
        else:
            series = [one(p) for p in pairs]
        out: dict[str, dict[str, list[tuple[int, float | None]]]] = {}
        for (rid, key), points in zip(pairs, series, strict=True):
            out.setdefault(key, {})[rid] = points
        return {k: out[k] for k in sorted(out)}

    def run(self, run_id: str) -> RunRecord:
        return record_of(self.store.get_run(run_id))  # NotFound for unknown ids

    def find_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        order_by: list[str],
        max_results: int,
    ) -> list[RunRecord]:
        if not experiment_ids:
            return []
        found = self.store.search_runs(experiment_ids, filter_string, order_by or None, max_results)
        return [record_of(r) for r in found]

    def all_experiments(self) -> list[ExperimentRecord]:
        return [
            ExperimentRecord(
                str(e.experiment_id),
                e.name,
                e.artifact_location,
                e.lifecycle_stage,
                dict(e.tags or {}),
            )
            for e in self.store.experiments()
        ]
