"""Promotion gates: plain functions over plain data (a Gate of nbops.yaml, a run's stage and
metrics, the current alias holder's metrics). No MLflow here; registry.py feeds it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbops import tags
from nbops.comparisons import CHECK_OPS, lower_is_better
from nbops.errors import GateFailed, InvalidInput
from nbops.pipeline.spec import parse_check


@dataclass
class GateOutcome:
    """One gate check: its name (``require accuracy >= 0.9``), whether it passed, and why."""

    name: str
    passed: bool
    detail: str


def check(
    gate: Any,
    model: str,
    run_id: str,
    stage: str | None,
    metrics: Mapping[str, float],
    current: tuple[str, Mapping[str, float]] | None,
    *,
    run_tags: Mapping[str, str] | None = None,
) -> list[GateOutcome]:
    """Every check of ``gate`` (spec.Gate) on a run; ``current`` is (``v3``, its run's metrics)
    for the version that holds the alias now, or None. A gate on a metric the run (or the
    current holder) never logged is bad input, not a failed gate: InvalidInput naming it.
    ``run_tags`` (the run's tags) lets the stage check say what kind of run it is: a sweep
    point of the stage passes ``stage:`` like a plain stage run (it is a run of that stage)."""
    out: list[GateOutcome] = []
    if gate.stage:
        ok = stage == gate.stage
        out.append(
            GateOutcome(
                f"stage {gate.stage}", ok, stage_detail(run_id, stage, gate.stage, run_tags)
            )
        )
    for metric, expr in gate.require.items():
        op, bound = parse_check(expr)
        value = _metric(metrics, metric, run_id, model, f"require {metric}")
        out.append(
            GateOutcome(
                f"require {metric} {expr}", CHECK_OPS[op](value, bound), f"{metric} = {value:.6g}"
            )
        )
    metric = gate.better_than_current
    if metric:
        value = _metric(metrics, metric, run_id, model, "better_than_current")
        if current is None:
            out.append(
                GateOutcome(
                    f"better_than_current {metric}",
                    True,
                    f"{metric} = {value:.6g}; no version holds the alias yet",
                )
            )
        else:
            label, cur_metrics = current
            if metric not in cur_metrics:
                raise InvalidInput(
                    f"gate {model}: better_than_current {metric!r} cannot be checked: the "
                    f"current {label} never logged {metric!r}",
                    f"log {metric!r} in the stage, or change better_than_current in nbops.yaml",
                )
            cur = float(cur_metrics[metric])
            better = value < cur if lower_is_better(metric) else value > cur
            word = "lower" if lower_is_better(metric) else "higher"
            out.append(
                GateOutcome(
                    f"better_than_current {metric}",
                    better,
                    f"{metric} = {value:.6g} vs {cur:.6g} of {label} ({word} is better)",
                )
            )
    return out


def stage_detail(
    run_id: str, stage: str | None, wanted: str, run_tags: Mapping[str, str] | None = None
) -> str:
    """Why run ``run_id`` is or is not a run of stage ``wanted``, naming what it is."""
    from nbops.ops.runkinds import KINDS, kind_of

    t = dict(run_tags or {})
    point = t.get(tags.SWEEP_POINT)
    if stage:
        what = f"sweep point {point} of stage {stage!r}" if point else f"a run of stage {stage!r}"
        return f"run {run_id} is {what}" + ("" if stage == wanted else f", not {wanted!r}")
    kind = kind_of(t) if run_tags is not None else None
    if kind == "pipeline":
        return (
            f"run {run_id} is the pipeline run of an `nbops run`, not a run of stage "
            f"{wanted!r}: promote the {wanted} run (or one of its sweep points) it made"
        )
    made = f" ({KINDS[kind]})" if kind is not None else ""
    return (
        f"run {run_id} is not a pipeline stage run{made}: it has no {tags.STAGE} tag, and the "
        f"gate needs a run of stage {wanted!r} made by `nbops run`"
    )


def _metric(metrics: Mapping[str, float], metric: str, run_id: str, model: str, what: str) -> float:
    if metric not in metrics:
        logged = ", ".join(sorted(metrics)) or "none"
        raise InvalidInput(
            f"gate {model}: {what} needs metric {metric!r}, which run {run_id} never logged "
            f"(it logged: {logged})",
            "promote a run that logs it, or fix the gate in nbops.yaml",
        )
    return float(metrics[metric])


def refusal(model: str, run_id: str, outcomes: list[GateOutcome]) -> GateFailed | None:
    """The error for the first failed check, naming it, or None if all passed."""
    failed = [o for o in outcomes if not o.passed]
    if not failed:
        return None
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return GateFailed(
        f"promotion of run {run_id} to {model} refused: gate {first.name} failed: "
        f"{first.detail}{more}",
        "nothing was registered and no alias moved; improve the run, or change `gates:` in "
        "nbops.yaml",
    )
