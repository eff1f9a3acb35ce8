"""Data drift between a reference table and a current one, column by column: the two-sample
Kolmogorov–Smirnov test for numbers, the chi-squared test of homogeneity for categories (both from
scipy), and the population stability index (PSI, from scipy's relative entropy) for both.

``check_drift(ref_df, cur_df)`` is a plain function over two DataFrames; monitor.py adds files,
MLflow logging, the HTML report and retraining around it. A column drifts when its test's p-value
is below ``threshold``.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from nbops.errors import InvalidInput

PSI_BINS = 10
PSI_SMOOTHING = 0.5  # counts added to every bin, so PSI stays finite and tame on small samples
PSI_MAJOR = 0.2  # the usual reading: < 0.1 stable, 0.1–0.2 moderate, > 0.2 major shift


@dataclass
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical
    test: str  # ks | chi2
    statistic: float
    p_value: float
    psi: float
    drifted: bool
    n_reference: int
    n_current: int


@dataclass
class DriftReport:
    """The result of ``check_drift``: one ColumnDrift per column, and the threshold used."""

    columns: list[ColumnDrift]
    threshold: float
    reference: str = "reference"
    current: str = "current"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def __getitem__(self, column: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == column:
                return c
        raise KeyError(column)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "drifted_columns": self.drifted_columns,
            "columns": [asdict(c) for c in self.columns],
        }

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.columns]).set_index("column")

    def table(self) -> str:
        """The terminal table."""
        header = ["COLUMN", "TYPE", "TEST", "STATISTIC", "P-VALUE", "PSI", "DRIFT"]
        rows = [
            [
                c.column,
                c.kind,
                c.test,
                f"{c.statistic:.4g}",
                f"{c.p_value:.3g}",
                f"{c.psi:.3f}",
                "DRIFT" if c.drifted else "-",
            ]
            for c in self.columns
        ]
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
        lines += [
            "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=False)).rstrip() for r in rows
        ]
        n = len(self.drifted_columns)
        lines.append(
            f"{n} of {len(self.columns)} columns drifted (p < {self.threshold:g})"
            + (": " + ", ".join(self.drifted_columns) if n else "")
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def to_html(self, title: str = "nbops drift report") -> str:
        """A self-contained HTML page (also what a notebook shows)."""
        e = html.escape
        rows = "".join(
            f"<tr class='{'drift' if c.drifted else 'ok'}'><td>{e(c.column)}</td>"
            f"<td>{c.kind}</td><td>{c.test}</td><td>{c.statistic:.4g}</td>"
            f"<td>{c.p_value:.3g}</td><td>{c.psi:.3f}</td><td>{c.n_reference}</td>"
            f"<td>{c.n_current}</td><td>{'DRIFT' if c.drifted else 'ok'}</td></tr>"
            for c in self.columns
        )
        verdict = (
            f"{len(self.drifted_columns)} of {len(self.columns)} columns drifted: "
            + e(", ".join(self.drifted_columns))
            if self.drifted
            else f"no drift in {len(self.columns)} columns"
        )
        return (
            f"<html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
            "body{font-family:sans-serif} table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "td:first-child{text-align:left} tr.drift{background:#fdd}</style></head><body>"
            f"<h3>{e(title)}</h3><p>reference <code>{e(self.reference)}</code>, current "
            f"<code>{e(self.current)}</code>, threshold p &lt; {self.threshold:g}</p>"
            f"<p><b>{verdict}</b></p><table><tr><th>column</th><th>type</th><th>test</th>"
            "<th>statistic</th><th>p-value</th><th>PSI</th><th>n ref</th><th>n cur</th>"
            f"<th>drift</th></tr>{rows}</table></body></html>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def _kind(series: Any) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "categorical"


def _check_tables(ref: Any, cur: Any) -> list[str]:
    import pandas as pd

    for name, df in (("reference", ref), ("current", cur)):
        if not isinstance(df, pd.DataFrame):
            raise InvalidInput(
                f"check_drift: the {name} table is a {type(df).__name__}, not a DataFrame",
                "pass two pandas DataFrames (pd.read_csv(...))",
            )
    missing = [c for c in ref.columns if c not in cur.columns]
    extra = [c for c in cur.columns if c not in ref.columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing from current: {', '.join(map(str, missing))}")
        if extra:
            parts.append(f"not in reference: {', '.join(map(str, extra))}")
        raise InvalidInput(
            "the tables have different columns (" + "; ".join(parts) + ")",
            "compare tables with the same columns, or select them: check_drift(ref[cols], "
            "cur[cols])",
        )
    for c in ref.columns:
        a, b = _kind(ref[c]), _kind(cur[c])
        if a != b:
            raise InvalidInput(
                f"column {c!r} is {a} ({ref[c].dtype}) in reference but {b} ({cur[c].dtype}) "
                "in current",
                "fix the data (a number column read as text has a stray value), or cast it",
            )
    return [str(c) for c in ref.columns]


def _psi(ref_counts: Any, cur_counts: Any) -> float:
    """PSI of two histograms over the same bins, with half a count added to every bin (so an
    empty bin in a small sample does not blow it up)."""
    import numpy as np
    from scipy.special import rel_entr

    r = np.asarray(ref_counts, dtype=float) + PSI_SMOOTHING
    c = np.asarray(cur_counts, dtype=float) + PSI_SMOOTHING
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum(rel_entr(c, r) + rel_entr(r, c)))  # = Σ (c - r) · ln(c / r)


def _numeric(ref: Any, cur: Any) -> tuple[float, float, float]:
    import numpy as np
    from scipy import stats

    res = stats.ks_2samp(ref, cur)
    # reference deciles, fewer bins for small samples (~10 values a bin at least)
    bins = int(min(PSI_BINS, max(2, min(len(ref), len(cur)) // 10)))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    return float(res.statistic), float(res.pvalue), _psi(r, c)


def _categorical(ref: Any, cur: Any) -> tuple[float, float, float]:
    import numpy as np
    from scipy import stats

    rc, cc = ref.astype(str).value_counts(), cur.astype(str).value_counts()
    cats = sorted(set(rc.index) | set(cc.index))
    table = np.array([[rc.get(k, 0) for k in cats], [cc.get(k, 0) for k in cats]])
    if len(cats) < 2:
        stat, p = 0.0, 1.0  # one category in both: nothing can differ
    else:
        res = stats.chi2_contingency(table)
        stat, p = float(res.statistic), float(res.pvalue)
    return stat, p, _psi(table[0], table[1])


def check_drift(
    reference: Any,
    current: Any,
    threshold: float = 0.05,
    columns: list[str] | None = None,
) -> DriftReport:
    """Compare two DataFrames column by column (KS for numbers, chi-squared for categories, PSI
    for both). A column drifts when the test's p-value is below ``threshold``. Tables with other
    columns or other column types are refused (InvalidInput naming them)."""
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise InvalidInput(
            f"threshold {threshold!r} is not a p-value in (0, 1]", "use e.g. threshold=0.05"
        )
    names = _check_tables(reference, current)
    if columns is not None:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise InvalidInput(
                f"column {unknown[0]!r} is not in the tables", f"columns: {', '.join(names)}"
            )
        names = list(columns)
    out = []
    for name in names:
        ref, cur = reference[name].dropna(), current[name].dropna()
        for which, s in (("reference", ref), ("current", cur)):
            if len(s) == 0:
                raise InvalidInput(
                    f"column {name!r} has no values in the {which} table",
                    "drop the column, or check how the table was read",
                )
        kind = _kind(reference[name])
        if kind == "numeric":
            stat, p, psi = _numeric(ref.to_numpy(dtype=float), cur.to_numpy(dtype=float))
        else:
            stat, p, psi = _categorical(ref, cur)
        if math.isnan(p):
            p = 1.0
        out.append(
            ColumnDrift(
                name,
                kind,
                "ks" if kind == "numeric" else "chi2",
                stat,
                p,
                psi,
                p < threshold,
                len(ref),
                len(cur),
            )
        )
    return DriftReport(out, float(threshold))
