"""The kinds of run nbops makes (a pipeline run, a sweep's run, a sweep point, a stage run, a
verify re-execution, a drift check, and any other run) and how a message names them: every ops
command and the server's notebook endpoints say what a run is through :func:`kind_of` and
:data:`KINDS`, and list runs with :func:`listed`."""

from __future__ import annotations

from typing import Any

from nbops import tags

KINDS = {
    "pipeline": "the pipeline run of an `nbops run` (its stage runs are its children)",
    "sweep": "the run of a sweep stage, parent of one run per sweep point",
    "point": "the run of one sweep point",
    "stage": "the run of a pipeline stage",
    "verify": "a re-execution by `nbops verify`",
    "drift": "a check by `nbops drift`",
    "run": "a run that `nbops run` did not make (the tracking API, %track, mlflow)",
}
"""What :func:`kind_of` answers, and what each kind is (the messages that name a kind use it)."""


def kind_of(run_tags: dict[str, str], has_points: bool = False) -> str:
    """The kind of a run (a key of :data:`KINDS`) from its tags; ``has_points``: it has child
    runs tagged ``nbops.sweep_point`` (a sweep's parent and a plain stage run carry the same
    tags otherwise: :meth:`Walker.kind` asks the store)."""
    if tags.PIPELINE in run_tags:
        return "pipeline"
    if tags.SWEEP_POINT in run_tags:
        return "point"
    if tags.STAGE in run_tags:
        return "sweep" if has_points else "stage"
    if tags.VERIFY_OF in run_tags:
        return "verify"
    if run_tags.get(tags.KIND) == "drift":
        return "drift"
    return "run"


def label_of(run: Any) -> str:
    """How a run is named in a message: its sweep point, its stage, or its run name."""
    t = run.data.tags
    return str(t.get(tags.SWEEP_POINT) or t.get(tags.STAGE) or run.info.run_name or "-")


def listed(runs: list[Any], limit: int = 10) -> str:
    """``<id> (<label>), ...`` of at most ``limit`` runs, and how many more."""
    shown = ", ".join(f"{r.info.run_id} ({label_of(r)})" for r in runs[:limit])
    return shown + (f" and {len(runs) - limit} more" if len(runs) > limit else "")
