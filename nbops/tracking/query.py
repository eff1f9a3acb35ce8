"""Reading runs back: ``nbops.runs()`` and ``nbops.compare()`` as pandas DataFrames."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbops import project
from nbops.errors import NotFound

if TYPE_CHECKING:
    import pandas as pd

    from nbops.tracking.store import Store

_stores: dict[str, Store] = {}


def open_store(uri: str | None = None) -> Store:
    from nbops.tracking.store import Store

    uri = uri or project.tracking_uri()
    if uri not in _stores:
        _stores[uri] = Store(uri)
    return _stores[uri]


def _experiment_ids(store: Store, experiment: str | list[str] | None) -> list[str]:
    exps = store.experiments()
    if experiment is None:
        return [str(e.experiment_id) for e in exps]
    wanted = [experiment] if isinstance(experiment, str) else list(experiment)
    by_name = {e.name: str(e.experiment_id) for e in exps}
    ids = {str(e.experiment_id) for e in exps}
    out = []
    for w in wanted:
        if w in by_name:
            out.append(by_name[w])
        elif w in ids:
            out.append(w)
        else:
            raise NotFound(
                f"experiment {w!r} does not exist in {store.uri}",
                "known experiments: " + (", ".join(sorted(by_name)) or "none yet"),
            )
    return out


def run_rows(
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: list[str] | str | None = None,
    max_results: int | None = None,
    uri: str | None = None,
) -> list[dict[str, Any]]:
    """Runs as flat dicts: run_id, experiment, name, status, times, params.*, metrics.*"""
    store = open_store(uri)
    ids = _experiment_ids(store, experiment)
    names = {str(e.experiment_id): e.name for e in store.experiments()}
    if not ids:
        return []
    order = (
        [order_by] if isinstance(order_by, str) else (order_by or ["attributes.start_time DESC"])
    )
    try:
        found = store.search_runs(ids, filter or "", order, max_results or 1000)
    except Exception as exc:
        from nbops.errors import InvalidInput

        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not filter or "order_by" in said.lower() or "order by" in said.lower():
            raise InvalidInput(
                f"order_by {order!r} is not valid MLflow search syntax: {said}",
                'example: "metrics.accuracy DESC" or "attributes.start_time ASC"',
            ) from exc
        if "filter" in str(exc).lower() or "invalid" in str(exc).lower():
            raise InvalidInput(
                f"filter {filter!r} is not valid MLflow search syntax: {str(exc).splitlines()[0]}",
                "example: \"metrics.accuracy > 0.9 and params.C = '1.0'\"",
            ) from exc
        raise
    return [_row(r, names) for r in found]


def _row(r: Any, names: dict[str, str]) -> dict[str, Any]:
    info, data = r.info, r.data
    end = info.end_time
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "experiment": names.get(str(info.experiment_id), str(info.experiment_id)),
        "name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": end,
        "duration_s": (end - info.start_time) / 1000 if end and info.start_time else None,
    }
    for k, v in sorted(data.params.items()):
        row[f"params.{k}"] = v
    for k, v in sorted(data.metrics.items()):
        row[f"metrics.{k}"] = v
    for k, v in sorted(data.tags.items()):
        if k.startswith("nbops.") and k not in ("nbops.spool", "nbops.pid"):
            row[f"tags.{k}"] = v
    return row


def runs(
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: list[str] | str | None = None,
    max_results: int | None = None,
) -> pd.DataFrame:
    """Runs of an experiment (default: every experiment of the store) as a DataFrame."""
    import pandas as pd

    rows = run_rows(experiment, filter, order_by, max_results)
    df = pd.DataFrame(rows)
    for col in ("start_time", "end_time"):
        if col in df:
            df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    return df


@dataclass
class Comparison:
    """Runs side by side: ``params`` that differ, all ``metrics`` (latest values), and ``best``."""

    run_ids: list[str]
    params: pd.DataFrame
    same_params: pd.DataFrame
    metrics: pd.DataFrame
    best: dict[str, str] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        parts = [
            "<div class='nbops-compare'><h4>Params that differ</h4>",
            self.params.to_html(na_rep="—") if len(self.params) else "<p>none</p>",
            "<h4>Metrics</h4>",
            self.metrics.to_html(na_rep="—") if len(self.metrics) else "<p>none</p>",
            f"<p>{len(self.same_params)} params are the same in every run.</p></div>",
        ]
        return "".join(parts)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """In a notebook: a widget (tables and a metric chart); plain HTML without ipywidgets."""
        from nbops.ipython.widgets import comparison_bundle

        return comparison_bundle(self)

    def __repr__(self) -> str:
        return (
            f"Params that differ:\n{self.params.to_string() if len(self.params) else '  none'}"
            f"\n\nMetrics:\n{self.metrics.to_string() if len(self.metrics) else '  none'}"
        )


def compare(run_ids: list[str], uri: str | None = None) -> Comparison:
    """Compare runs: a params table of only the params that differ, and a metrics table."""
    import pandas as pd

    if isinstance(run_ids, str):
        run_ids = [s for s in run_ids.replace(",", " ").split() if s]
    store = open_store(uri)
    found = [store.get_run(rid) for rid in run_ids]
    cols = [r.info.run_name or r.info.run_id[:8] for r in found]
    cols = [
        f"{c} ({r.info.run_id[:8]})" if cols.count(c) > 1 else c
        for c, r in zip(cols, found, strict=True)
    ]
    params = pd.DataFrame({c: r.data.params for c, r in zip(cols, found, strict=True)})
    metrics = pd.DataFrame({c: r.data.metrics for c, r in zip(cols, found, strict=True)})
    if len(params):
        differs = params.astype(str).nunique(axis=1, dropna=False) > 1
        differs |= params.isna().any(axis=1)
        diff, same = params[differs], params[~differs]
    else:
        diff, same = params, params
    best: dict[str, str] = {}
    for key, row in metrics.iterrows():
        vals = {c: v for c, v in row.items() if isinstance(v, float) and not math.isnan(v)}
        if vals:
            lower = any(w in str(key).lower() for w in ("loss", "error", "rmse", "mae", "mse"))
            best[str(key)] = (min if lower else max)(vals, key=lambda c: vals[c])
    return Comparison(
        list(run_ids), diff.sort_index(), same.sort_index(), metrics.sort_index(), best
    )
