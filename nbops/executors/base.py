"""The executor interface: the runner hands it jobs; local.py runs them with papermill here, a
dask executor can run them elsewhere without the runner changing."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops.errors import StageFailed


@dataclass
class StageJob:
    """One execution of a stage's notebook (one sweep point)."""

    stage: str
    label: str  # "train" or "train[C=0.1]"
    notebook: Path  # the source notebook
    output: Path  # where the executed notebook goes
    parameters: dict[str, Any]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the kernel
    timeout: float | None = None  # per cell, seconds
    # called by the executor when the job really starts (a kernel is ready for it), in the
    # executor's thread: until then the job is queued
    on_start: Callable[[], None] | None = None
    # called by the executor when a job it started is over (its notebook ran to the end, failed
    # or was stopped), in the executor's thread, before the next job can start
    on_end: Callable[[], None] | None = None
    # --- what an executor that runs elsewhere (dask) needs; the local one ignores them ---------
    root: Path | None = None  # the project root: every path below is relative to it
    deps: list[str] = field(default_factory=list)  # the stage's declared deps (files/folders)
    outs: list[str] = field(default_factory=list)  # what this job writes: its own + shared outs
    resources: dict[str, float] = field(default_factory=dict)  # {"GPU": 1} (dask resources)
    memory: float | None = None  # bytes of memory the stage needs (a worker restriction)
    retries: int = 1  # times the job is run again when its worker dies under it
    kernel_name: str = "python3"
    # set by the executor before it calls started(): where the job runs ("tcp://10.0.0.5:4711"),
    # None when it runs here
    worker: str | None = None
    # the executor says something about a started job (a retry on another worker): the live
    # table shows it on the job's row
    on_note: Callable[[str], None] | None = None

    def note(self, text: str) -> None:
        if self.on_note is not None:
            self.on_note(text)

    def started(self) -> None:
        if self.on_start is not None:
            self.on_start()

    def ended(self) -> None:
        if self.on_end is not None:
            self.on_end()


@dataclass
class StageResult:
    """How one StageJob ended: ``error`` says why when it is not ``ok``."""

    job: StageJob
    ok: bool
    seconds: float
    error: StageFailed | None = None
    worker: str | None = None  # where it ran last (None: here)


class Executor(ABC):
    """Runs jobs. ``warm_up`` may start kernels ahead of ``execute``; ``stop`` ends
    everything at once (Ctrl-C, SIGTERM) leaving no process behind.

    ``execute`` calls ``job.started()`` when the job really starts (a kernel is ready for it)
    and ``job.ended()`` when a started job is over, before it returns: the pipeline's table says
    ``queued`` until then, and the job's MLflow run is created with that start time and given
    that end time. An executor that never calls them still works: the run is then created when
    the job has ended, from when it was queued."""

    #: set once the executor can run a job without importing anything more (None: no such
    #: signal). The runner's sink waits for it before it imports MLflow: both imports are
    #: CPU-bound Python in one process, and the first stage needs the executor's first.
    loaded: threading.Event | None = None

    def warm_up(self) -> None:  # noqa: B027 - optional
        """Get ready for jobs soon to come (start kernels) without waiting."""

    @abstractmethod
    def execute(self, job: StageJob) -> StageResult: ...

    @abstractmethod
    def stop(self) -> None: ...

    def report(self) -> str | None:
        """One line said at the end of ``nbops run`` (dask: jobs per worker, bytes shipped);
        None: nothing to say."""
        return None
