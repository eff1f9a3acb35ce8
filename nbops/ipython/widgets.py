"""Notebook views of runs: ``nbops.compare(...)`` renders as a widget (params that differ, metrics
with the best value marked, a metric chart you switch with a dropdown), and ``nbops.runs_widget()``
is a filterable runs table with checkboxes and a Compare button. Without ipywidgets both fall
back to plain HTML. The charts are SVG written here: no plotting library is needed.

Importing this module registers the widget as the notebook display of every
:class:`~nbops.tracking.query.Comparison` (:func:`~nbops.tracking.query.register_display`): the
query side knows no surface. ``nbops.compare`` and ``nbops.Comparison`` are re-exported here so
that ``nbops/__init__`` can load them from this module and the display is always registered."""

from __future__ import annotations

import html
import math
from typing import Any

from nbops.tracking.query import Comparison, compare, register_display

__all__ = [
    "Comparison",
    "RunsBrowser",
    "compare",
    "comparison_bundle",
    "comparison_html",
    "comparison_widget",
    "histories",
    "runs_widget",
    "svg_chart",
]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
MAX_SERIES = 20


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def svg_chart(
    title: str, series: dict[str, list[tuple[int, float | None]]], width: int = 560
) -> str:
    """A line chart of ``{label: [(step, value), ...]}`` as an inline SVG string."""
    height, left, right, top, bottom = 240, 56, 150, 24, 28
    pts = {
        k: [(s, v) for s, v in h if v is not None and math.isfinite(v)] for k, h in series.items()
    }
    pts = {k: h for k, h in list(pts.items())[:MAX_SERIES] if h}
    esc = html.escape
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="nbops-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        f'font-size="11"><text x="{left}" y="15" font-weight="bold">{esc(title)}</text>'
    )
    if not pts:
        return head + f'<text x="{left}" y="{height // 2}">no values</text></svg>'
    xs = [s for h in pts.values() for s, _ in h]
    ys = [v for h in pts.values() for _, v in h]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - left - right, height - top - bottom

    def x(s: float) -> float:
        return left + (s - x0) / (x1 - x0) * pw

    def y(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * ph

    parts = [
        head,
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_fmt(y1)}</text>',
        f'<text x="{left - 4}" y="{top + ph}" text-anchor="end">{_fmt(y0)}</text>',
        f'<text x="{left}" y="{height - 8}">step {x0}</text>',
        f'<text x="{left + pw}" y="{height - 8}" text-anchor="end">{x1}</text>',
    ]
    for i, (label, h) in enumerate(pts.items()):
        color = PALETTE[i % len(PALETTE)]
        if len(h) == 1:
            s, v = h[0]
            parts.append(f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')
        else:
            line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in h)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{line}"/>'
            )
        ly = top + 12 + i * 14
        parts.append(
            f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + pw + 24}" y="{ly + 1}">{esc(label[:22])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histories(cmp: Comparison) -> dict[str, dict[str, list[tuple[int, float | None]]]]:
    """{metric: {column label: [(step, value)]}} for the runs of a comparison (one store read
    per run and metric)."""
    from nbops.mlflow.store import open_store

    store = open_store()
    labels = dict(zip(cmp.run_ids, list(cmp.metrics.columns), strict=False))
    out: dict[str, dict[str, list[tuple[int, float | None]]]] = {}
    for key in cmp.metrics.index:
        for rid in cmp.run_ids:
            hist = store.metric_history(rid, str(key))
            if hist:
                pts = sorted(hist, key=lambda p: (p.step, p.timestamp))
                out.setdefault(str(key), {})[labels.get(rid, rid[:8])] = [
                    (p.step, p.value) for p in pts
                ]
    return out


def _metrics_html(cmp: Comparison) -> str:
    if not len(cmp.metrics):
        return "<p>no metrics</p>"
    cols = list(cmp.metrics.columns)
    labels = dict(zip(cmp.run_ids, cols, strict=False))
    best = {k: labels.get(b, b) for k, b in cmp.best.items()}  # column labels (or run ids)
    rows = ["<tr><th></th>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>"]
    for key, row in cmp.metrics.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            text = "—" if v is None or (isinstance(v, float) and math.isnan(v)) else _fmt(v)
            mark = ' style="font-weight:bold;background:#e6f4ea"' if best.get(str(key)) == c else ""
            cells.append(f"<td{mark}>{text}</td>")
        rows.append(f"<tr><th>{html.escape(str(key))}</th>{''.join(cells)}</tr>")
    return "<table class='nbops-metrics'>" + "".join(rows) + "</table>"


def comparison_html(cmp: Comparison, charts: dict[str, Any] | None = None) -> str:
    """The plain-HTML view: both tables and every metric's chart."""
    params = cmp.params.to_html(na_rep="—") if len(cmp.params) else "<p>none</p>"
    parts = [
        "<div class='nbops-compare'><h4>Params that differ</h4>",
        params,
        f"<p>{len(cmp.same_params)} params are the same in every run.</p>",
        "<h4>Metrics (best in bold)</h4>",
        _metrics_html(cmp),
    ]
    for key, series in (charts or {}).items():
        parts.append(svg_chart(key, series))
    parts.append("</div>")
    return "".join(parts)


def comparison_widget(cmp: Comparison, charts: dict[str, Any] | None = None) -> Any:
    """An ipywidgets view of a comparison; the chart follows the metric dropdown."""
    import ipywidgets as w

    charts = histories(cmp) if charts is None else charts
    tables = w.HTML(comparison_html(cmp))
    keys = list(charts)
    pick = w.Dropdown(options=keys, value=keys[0] if keys else None, description="metric")
    chart = w.HTML(svg_chart(keys[0], charts[keys[0]]) if keys else "")

    def show(change: dict[str, Any]) -> None:
        if change.get("new") in charts:
            chart.value = svg_chart(change["new"], charts[change["new"]])

    pick.observe(show, names="value")
    box = w.VBox([tables, pick, chart] if keys else [tables])
    box.add_class("nbops-compare-widget")
    return box


def comparison_bundle(cmp: Comparison) -> dict[str, Any]:
    """``Comparison._repr_mimebundle_``: the widget, with plain HTML for frontends without one."""
    try:
        charts = histories(cmp)
    except Exception:  # noqa: BLE001 - the tables still show when histories cannot be read
        charts = {}
    bundle: dict[str, Any] = {"text/plain": repr(cmp), "text/html": comparison_html(cmp, charts)}
    try:
        widget = comparison_widget(cmp, charts)
    except ImportError:
        return bundle
    bundle.update({k: v for k, v in widget._repr_mimebundle_().items() if k != "text/plain"})
    return bundle


class RunsBrowser:
    """``nbops.runs_widget()``: runs of an experiment with an MLflow filter box, a checkbox per
    run and a Compare button that shows ``nbops.compare`` of the ticked runs below."""

    def __init__(
        self, experiment: str | None = None, filter: str = "", max_results: int = 100
    ) -> None:
        import ipywidgets as w

        self.experiment = experiment
        self.max_results = max_results
        self.run_ids: list[str] = []
        self.checks: list[Any] = []
        self.comparison: Comparison | None = None
        self.filter = w.Text(value=filter, placeholder="metrics.acc > 0.9 and params.C = '1.0'")
        self.filter.layout.width = "420px"
        self.apply_button = w.Button(description="Filter")
        self.compare_button = w.Button(description="Compare", button_style="primary")
        self.message = w.HTML()
        self.table = w.VBox()
        self.output = w.Output()
        self.apply_button.on_click(lambda _: self.refresh())
        self.filter.continuous_update = False  # Enter (or leaving the box) applies the filter
        self.filter.observe(lambda _: self.refresh(), names="value")
        self.compare_button.on_click(lambda _: self.compare_selected())
        self.widget = w.VBox(
            [
                w.HBox([self.filter, self.apply_button, self.compare_button]),
                self.message,
                self.table,
                self.output,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        import ipywidgets as w

        from nbops.errors import NbopsError
        from nbops.tracking.query import run_rows

        try:
            rows = run_rows(self.experiment, self.filter.value or None, None, self.max_results)
        except NbopsError as exc:
            self.message.value = f"<span style='color:#c00'>{html.escape(exc.message)}</span>"
            return
        metric_keys = sorted({k for r in rows for k in r if k.startswith("metrics.")})[:4]
        self.run_ids = [r["run_id"] for r in rows]
        self.checks = [
            w.Checkbox(value=False, indent=False, layout={"width": "24px"}) for _ in rows
        ]
        head = "".join(f"<th>{html.escape(k[8:])}</th>" for k in metric_keys)
        lines = [w.HTML(f"<b>{len(rows)} runs</b> <table><tr><th>run</th><th>status</th>{head}")]
        for check, r in zip(self.checks, rows, strict=True):
            vals = "".join(
                f"<td>{_fmt(r[k]) if isinstance(r.get(k), float) else '—'}</td>"
                for k in metric_keys
            )
            label = html.escape(str(r.get("name") or r["run_id"][:8]))
            cell = w.HTML(
                f"<table><tr><td style='width:16em'><code>{label}</code></td>"
                f"<td style='width:6em'>{r['status']}</td>{vals}</tr></table>"
            )
            lines.append(w.HBox([check, cell]))
        self.table.children = lines
        self.message.value = ""

    def selected(self) -> list[str]:
        return [rid for rid, c in zip(self.run_ids, self.checks, strict=True) if c.value]

    def compare_selected(self) -> Comparison | None:
        ids = self.selected()
        if len(ids) < 2:
            self.message.value = "<span style='color:#c00'>tick at least two runs to compare</span>"
            return None
        self.message.value = ""
        self.comparison = compare(ids)
        data = comparison_bundle(self.comparison)
        self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)
        return self.comparison

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self.widget._repr_mimebundle_(**kwargs)  # type: ignore[no-any-return]


def runs_widget(experiment: str | None = None, filter: str = "", max_results: int = 100) -> Any:
    """A filterable runs table with checkboxes and a Compare button (plain HTML without
    ipywidgets)."""
    try:
        return RunsBrowser(experiment, filter, max_results)
    except ImportError:
        from IPython.core.display import HTML

        from nbops.tracking.query import runs

        table = runs(experiment, filter or None, None, max_results)
        return HTML(table.to_html())  # type: ignore[no-untyped-call]


register_display(comparison_bundle)
