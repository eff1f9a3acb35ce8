"""What one ``nbops run`` did, said at its end: what did not reach the store (and why), and the
:class:`~nbops.pipeline.outcome.PipelineOutcome` that ``--summary`` writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbops.errors import StageFailed
from nbops.pipeline.attempt import Stop
from nbops.pipeline.outcome import PipelineOutcome
from nbops.pipeline.progress import Progress
from nbops.pipeline.runs import RunBook

if TYPE_CHECKING:
    from nbops.pipeline.sink import Sink


def tell_delivering(progress: Progress, left: list[str]) -> None:
    """Delivery takes a while at the end: say what is still on its way."""
    progress.note(f"nbops run: delivering the last data of {len(left)} run(s):")
    for line in left:
        progress.note(f"  {line}")


def report_delivery(progress: Progress, sink: Sink, delivered: bool) -> list[str]:
    """Say what is not in the store (left spooled, or refused by it); those lines, which make
    the execution fail."""
    undelivered: list[str] = []
    if not delivered:
        left = sink.undelivered()
        if sink.denied is not None:  # a refused login or permission: what to do, in one line
            progress.note(
                f"nbops run: {len(left)} run(s) stay spooled in .nbops/spool/: {sink.error}; "
                f"{sink.denied.hint or 'fix the login, then `nbops sync` delivers them'}"
            )
            return [f"not delivered: {line}" for line in left] + [
                f"refused by the store: {line}" for line in sink.dropped()
            ]
        why = (
            f"the tracking store is unreachable ({sink.error})"
            if sink.error
            else ("delivery did not finish in time (NBOPS_FLUSH_TIMEOUT)")
        )
        undelivered = [f"not delivered: {line}" for line in left]
        progress.note(
            f"nbops run: {len(left)} run(s) are not all in the store: {why}. What is left "
            "stays spooled under .nbops/spool/ and `nbops sync` delivers it:"
        )
        for line in left:
            progress.note(f"  {line}")
    refused = sink.dropped()
    if refused:
        undelivered += [f"refused by the store: {line}" for line in refused]
        progress.note("nbops run: the tracking store refused what it was sent:")
        for line in refused:
            progress.note(f"  {line}")
    return undelivered


def outcome(
    *,
    order: list[str],
    status: dict[str, str],
    failures: list[StageFailed],
    runs: RunBook,
    stop: Stop,
    undelivered: list[str],
    exit_code: int | None,
    seconds: float,
) -> PipelineOutcome:
    """The execution as data: each stage's status, run ids and error, the pipeline run."""
    stages: dict[str, dict[str, Any]] = {}
    for name in order:
        wait = 0 if undelivered else 5  # a store that was given up is not waited for
        stages[name] = {"status": status[name], "run_ids": runs.run_ids(name, wait)}
        why = next((f.message for f in failures if f.stage == name), None)
        if why is not None and not stop.is_set():  # a stopped run says why once
            stages[name]["error"] = why
    code = exit_code if exit_code is not None else 1
    state = (
        "timeout" if stop.timed_out else "killed" if stop.is_set() else "failed" if code else "ok"
    )
    error = None
    if stop.timed_out:
        error = f"timed out after {stop.timeout:g} s"
    elif stop.is_set():
        error = "interrupted (SIGINT or SIGTERM): kernels stopped, runs KILLED"
    elif failures:
        error = failures[0].message
    elif undelivered:
        error = f"{len(undelivered)} run(s) not all in the store: {undelivered[0]}"
    return PipelineOutcome(
        pipeline_run_id=runs.pipeline_run.id_if_ready() if runs.pipeline_run else None,
        exit_code=code,
        status=state,
        stages=stages,
        error=error,
        seconds=seconds,
        undelivered=list(undelivered),
    )
