"""Reading runs back: ``nbops.runs()`` and ``nbops.compare()`` as pandas DataFrames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbops import tags
from nbops.comparisons import compare_runs

if TYPE_CHECKING:
    import pandas as pd

    from nbops.mlflow.store import TrackingStore


def open_store(uri: str | None = None) -> TrackingStore:
    """:func:`nbops.mlflow.store.open_store` (one store per URI per process), imported on first
    use so that importing this module imports no MLflow."""
    from nbops.mlflow.store import open_store as open_

    return open_(uri)


RichDisplay = Callable[["Comparison"], dict[str, Any]]
_displays: list[RichDisplay] = []


def register_display(render: RichDisplay) -> None:
    """How a :class:`Comparison` shows in a notebook (its ``_repr_mimebundle_``): a surface
    (:mod:`nbops.ipython.widgets`) registers its widget here when it is imported; without one
    a comparison shows as its plain HTML tables."""
    if render not in _displays:
        _displays.append(render)


def run_rows(
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: list[str] | str | None = None,
    max_results: int | None = None,
    uri: str | None = None,
) -> list[dict[str, Any]]:
    """Runs as flat dicts: run_id, experiment, name, status, times, params.*, metrics.*

    Read through :func:`nbops.mlflow.readers.facade.open_read_store`: the embedded store's SQL
    when it can (no MLflow imported), else MLflow; the same rows either way."""
    from nbops.mlflow.readers.base import find_experiments
    from nbops.mlflow.readers.facade import open_read_store

    order = (
        [order_by] if isinstance(order_by, str) else (order_by or ["attributes.start_time DESC"])
    )
    _check_syntax(filter or "", order)
    store = open_read_store(uri)
    every = store.experiments()
    exps = [(str(e.experiment_id), e.name) for e in every]
    if experiment is None or experiment == "":  # nbops' own experiments only when named
        ids = [str(e.experiment_id) for e in every if not _hidden(e)]
    else:
        ids = find_experiments(exps, experiment, store.uri)
    names = dict(exps)
    if not ids:
        return []
    try:
        found = store.search_runs(ids, filter or "", order, max_results or 1000)
    except Exception as exc:
        from nbops.errors import NbopsError

        if isinstance(exc, NbopsError):
            raise
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not filter or "order_by" in said.lower() or "order by" in said.lower():
            raise _order_error(order, said) from exc
        if "filter" in str(exc).lower() or "invalid" in str(exc).lower():
            raise _filter_error(filter, said) from exc
        raise
    return [_row(r, names) for r in found]


def _order_error(order: list[str], said: str) -> Exception:
    from nbops.errors import InvalidInput

    return InvalidInput(
        f"order_by {order!r} is not valid MLflow search syntax: {said}",
        'example: "metrics.accuracy DESC" or "attributes.start_time ASC"',
    )


def _filter_error(filter: str, said: str) -> Exception:
    from nbops.errors import InvalidInput

    return InvalidInput(
        f"filter {filter!r} is not valid MLflow search syntax: {said}",
        "example: \"metrics.accuracy > 0.9 and params.C = '1.0'\"",
    )


def _check_syntax(filter_string: str, order: list[str]) -> None:
    """A filter or order_by MLflow's parser refuses, named with its reason before any store is
    opened (:mod:`nbops.mlflow.search`: MLflow's parser without MLflow), as MLflow's store
    would: the filter first."""
    from nbops.mlflow import search

    try:
        search.parse_filter(filter_string)
    except search.SearchSyntaxError as exc:
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _filter_error(filter_string, said) from None
    for clause in order:
        try:
            search.parse_order_by(clause)
        except search.SearchSyntaxError as exc:
            said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _order_error(order, said) from None


_NBOPS = tags.NOTEBOOK.partition(".")[0] + "."  # "nbops.": the tags nbops writes


def _hidden(experiment: Any) -> bool:
    """nbops' own experiments (tagged ``nbops.hidden``: the shared audit trail, the shared
    outs), which a listing of every experiment leaves out."""
    value = (getattr(experiment, "tags", None) or {}).get(tags.HIDDEN, "")
    return str(value).strip().lower() == "true"


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
        if k.startswith(_NBOPS) and k not in tags.INTERNAL:
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
        """In a notebook: what the registered display renders (:func:`register_display`:
        nbops.ipython.widgets' widget with tables and a metric chart), else plain HTML."""
        if _displays:
            return _displays[-1](self)
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def __repr__(self) -> str:
        return (
            f"Params that differ:\n{self.params.to_string() if len(self.params) else '  none'}"
            f"\n\nMetrics:\n{self.metrics.to_string() if len(self.metrics) else '  none'}"
        )


def _runs_by_id(store: TrackingStore, run_ids: list[str]) -> list[Any]:
    """The runs, in the order asked: one search per 100 ids over every experiment (on a
    tracking server each ``get_run`` is a round trip); an id the search does not find (not a
    run id, unknown, deleted) is asked for alone, for the exact NotFound."""
    from nbops.mlflow.readers.base import RUN_ID

    wanted = [rid for rid in dict.fromkeys(run_ids) if RUN_ID.fullmatch(rid)]
    found: dict[str, Any] = {}
    if len(wanted) > 1:
        exp_ids = [str(e.experiment_id) for e in store.experiments()]
        for i in range(0, len(wanted), 100):
            chunk = wanted[i : i + 100]
            quoted = ", ".join(f"'{rid}'" for rid in chunk)  # 32 hex digits each
            for run in store.search_runs(exp_ids, f"attributes.run_id IN ({quoted})", None, 100):
                found[run.info.run_id] = run
    return [found[rid] if rid in found else store.get_run(rid) for rid in run_ids]


def compare(run_ids: list[str], uri: str | None = None) -> Comparison:
    """Compare runs: a params table of only the params that differ, a metrics table (latest
    values) and the best run per metric (:func:`nbops.comparisons.compare_runs`, as the Compare
    panel shows them); the tables' columns are run names (with the id's start when two share a
    name)."""
    import pandas as pd

    if isinstance(run_ids, str):
        run_ids = [s for s in run_ids.replace(",", " ").split() if s]
    store = open_store(uri)
    found = _runs_by_id(store, list(run_ids))
    cols = [r.info.run_name or r.info.run_id[:8] for r in found]
    cols = [
        f"{c} ({r.info.run_id[:8]})" if cols.count(c) > 1 else c
        for c, r in zip(cols, found, strict=True)
    ]
    label = {r.info.run_id: c for c, r in zip(cols, found, strict=True)}
    cmp = compare_runs(
        {r.info.run_id: dict(r.data.params) for r in found},
        {r.info.run_id: dict(r.data.metrics) for r in found},
    )
    params = pd.DataFrame({c: r.data.params for c, r in zip(cols, found, strict=True)})
    metrics = pd.DataFrame({c: r.data.metrics for c, r in zip(cols, found, strict=True)})
    differ = params.index.isin(list(cmp.params_differ))
    diff, same = params[differ], params[~differ]
    best = {key: label[rid] for key, rid in cmp.best.items()}
    return Comparison(
        list(run_ids), diff.sort_index(), same.sort_index(), metrics.sort_index(), best
    )
