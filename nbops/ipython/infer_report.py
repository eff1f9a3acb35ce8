"""What ``%%track`` tells the user: the one line after a tracked cell, and the plan that
``%%track --explain`` prints (each name, what it is logged as, and the rule)."""

from __future__ import annotations

from typing import Any

from nbops.ipython.infer import METRIC, PARAM, Plan


def names_of(option: str | None) -> list[str]:
    """The names of a ``--params A,B`` style option."""
    return [s.strip() for s in (option or "").split(",") if s.strip()]


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def summary_line(
    step: str, params: dict[str, Any], metrics: dict[str, list[float]], figures: int
) -> str:
    """One line after a tracked cell: what it logged."""
    parts = []
    if params:
        parts.append("params " + _listing(list(params)))
    if metrics:
        shown = [f"{k} ({len(v)} steps)" if len(v) > 1 else k for k, v in metrics.items()]
        parts.append("metrics " + _listing(shown))
    if figures:
        parts.append(f"{figures} figure{'s' if figures > 1 else ''}")
    what = "; ".join(parts) if parts else "no params or metrics"
    return f"nbops: cell {step} logged {what} (`%%track --explain` says why)"


def explain_text(cell_plan: Plan, args: Any, step: str) -> str:
    """The plan of a cell, one name a line: what is logged, by which rule, what is left out."""
    lines = [f"%%track -n {step}: what this cell logs (--explain: the cell did not run)"]
    label = {PARAM: "param ", METRIC: "metric", "skip": "skip  "}
    width = max([len(c.name) for c in cell_plan.choices] + [4])
    explicit = {PARAM: args.params is not None, METRIC: args.metrics is not None}
    order = {PARAM: 0, METRIC: 1}
    for c in sorted(cell_plan.choices, key=lambda c: (order.get(c.kind, 2), c.line)):
        rule = c.rule
        if explicit.get(c.kind):
            rule += f"  [replaced: --{c.kind}s names exactly what is logged]"
        lines.append(f"  {label.get(c.kind, c.kind)}  {c.name:<{width}}  line {c.line}: {rule}")
    if not cell_plan.choices:
        lines.append("  nothing: the cell binds no literal setting and calls no scoring function")
    for kind, option in ((PARAM, args.params), (METRIC, args.metrics)):
        if option is not None:
            lines.append(f"  --{kind}s: exactly {', '.join(names_of(option)) or 'none'}")
    if args.skip:
        lines.append(f"  --skip: {', '.join(names_of(args.skip))} left out")
    lines.append(
        "  params are read at the end of the cell (text of at most 250 characters); metrics "
        "as they are computed (a loop gives a history)"
    )
    if not args.no_figures:
        lines.append(f"  figures the cell shows -> cells/{step}/figure-N.png")
    return "\n".join(lines)
