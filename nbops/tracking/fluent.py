"""The module-level API (``nbops.log_metric`` ...): one-liners over the process' active Run."""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbops import envvars
from nbops.errors import InvalidInput, NbopsError
from nbops.tracking import shutdown
from nbops.tracking.run import FINISHED, Run

_active: Run | None = None
_lock = threading.Lock()
_exiting: str | None = None  # the run ended because this process is going away
EXIT_TIMEOUT = envvars.seconds(envvars.EXIT_FLUSH_TIMEOUT, 30.0)


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    notebook: str | os.PathLike[str] | None = None,
    user_ns: dict[str, Any] | None = None,
) -> Run:
    """Start a run and make it the active one. Returns at once; the store is opened in the
    background. Use as a context manager to end it (FAILED on an exception)."""
    global _active
    from nbops.tracking import context

    with _lock:
        if _active is not None and _active.status == "RUNNING":
            raise InvalidInput(
                f"run {_active.id_if_ready() or _active.local_id} is still active",
                "end it first (nbops.end_run() / %track stop), or use it",
            )
        spool = os.environ.get(envvars.ATTACH_SPOOL)
        if spool:  # a pipeline stage: log into the stage's run, owned by the runner
            _active = Run.attach(Path(spool))
            return _active
        nb = Path(notebook) if notebook else context.notebook_path(user_ns)
        snapshot = None if notebook else context.executed_notebook(user_ns)
        nb_params = context.parameters(nb, user_ns)
        nb_params.update(params or {})
        attach = os.environ.get(envvars.RUN_ID) or None
        if name is None and attach is None:  # a name that says what ran, not MLflow's random one
            name = f"{nb.stem if nb else 'python'}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = Run(
            experiment, name, tags, params=nb_params, notebook=nb, run_id=attach, snapshot=snapshot
        )
        shutdown.install()  # in a kernel: end the run when the kernel is told to go
        if attach:
            os.environ.pop(envvars.RUN_ID, None)  # one attach per process: later runs are new
        _active = run
        return run


def active_run() -> Run | None:
    return _active if _active is not None and _active.status == "RUNNING" else None


def _run() -> Run:
    run = active_run()
    if run is not None:
        return run
    if _exiting is not None:  # a cell still logging while its kernel shuts down
        raise InvalidInput(
            f"run {_exiting} has ended: this process is shutting down",
            "nothing more is logged; the values logged before are in the run",
        )
    return start_run()


def end_run(status: str = FINISHED, timeout: float | None = None) -> bool:
    """End the active run (if any) and wait for its data to reach the store."""
    global _active
    run = _active
    if run is None:
        return True
    _active = None
    return run.end(status, timeout)


def end_for_exit(status: str, timeout: float, reason: str | None = None) -> bool:
    """End the active run for a process that is going away: hand it to the writer, waiting at
    most ``timeout`` s for the delivery (0: not at all; see shutdown.py and Run.hand_off)."""
    global _active, _exiting
    with _lock:
        run = _active
        if run is None or run.status != "RUNNING":
            return True
        _active = None
        _exiting = run.id_if_ready() or run.local_id
    return run.hand_off(status, timeout, reason)


def flush(timeout: float | None = None) -> bool:
    run = _active
    return True if run is None else run.flush(timeout)


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    run = _active
    if run is None or run.status != "RUNNING":
        run = _run()
    run.log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    _run().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    _run().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _run().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _run().set_tags(tags)


def log_artifact(path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _run().log_artifact(path, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _run().log_text(text, artifact_file)


def log_figure(figure: Any, name: str = "figure.png") -> None:
    _run().log_figure(figure, name)


def log_model(
    model: Any,
    name: str = "model",
    flavor: str | None = None,
    *,
    input_example: Any = None,
    pip_requirements: list[str] | None = None,
) -> str:
    return _run().log_model(
        model, name, flavor, input_example=input_example, pip_requirements=pip_requirements
    )


def track_data(
    path: str | os.PathLike[str], role: str = "input", name: str | None = None
) -> dict[str, Any]:
    return _run().track_data(path, role, name)


@atexit.register
def _end_at_exit() -> None:
    """A process that exits normally ends its run FINISHED (as MLflow does)."""
    run = _active
    if run is not None and run.status == "RUNNING":
        # a kernel is SIGTERMed soon after it is told to go: hand the end to the writer there
        # (without waiting, by default); a script waits for its run as MLflow's would
        timeout = shutdown.GRACE_S if shutdown.in_kernel() else EXIT_TIMEOUT
        try:
            end_for_exit(FINISHED, timeout)
        except NbopsError:
            pass
