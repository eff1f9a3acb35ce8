"""The general read path: MlflowClient (through the store facade, :mod:`nbops.mlflow.store`), for
any tracking store (MLflow server, files, databases)."""

from __future__ import annotations

from typing import Any

from nbops.errors import InvalidInput, NotFound
from nbops.mlflow import search
from nbops.mlflow.failures import BAD_REQUEST, INVALID_PARAMETER_VALUE, error_code
from nbops.mlflow.readers import bounds as limits
from nbops.mlflow.readers import models as m
from nbops.mlflow.readers.base import (
    Page,
    Reader,
    RunInfo,
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


class MlflowReader(Reader):
    source = "mlflow"

    def __init__(self, uri: str) -> None:
        from nbops.mlflow.store import open_store

        self.store = open_store(uri)

    def experiments(self) -> list[m.Experiment]:
        out = []
        for e in self.store.experiments():
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
        exps = [(str(e.experiment_id), e.name) for e in self.store.experiments()]
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
        return [self._summary(self._get(rid)) for rid in run_ids]

    def metric_history(self, run_id: str, key: str) -> list[m.MetricPoint]:
        self._get(run_id)
        hist = self.store.metric_history(run_id, key)
        pts = sorted(hist, key=lambda x: (x.step, x.timestamp, x.value))
        return [
            m.MetricPoint(step=p.step, timestamp=p.timestamp, value=finite(p.value)) for p in pts
        ]

    def histories(self, run_ids: list[str]) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
        out: dict[str, dict[str, list[tuple[int, float | None]]]] = {}
        for rid in dict.fromkeys(run_ids):
            run = self._get(rid)
            for key in run.data.metrics:
                hist = self.store.metric_history(rid, key)
                pts = sorted(hist, key=lambda x: (x.step, x.timestamp, x.value))
                out.setdefault(key, {})[rid] = [(p.step, finite(p.value)) for p in pts]
        return {k: out[k] for k in sorted(out)}
