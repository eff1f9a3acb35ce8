"""Background jobs of the server: re-runs and pipeline runs, each a subprocess (``nbops run`` or
papermill) watched from the event loop; state kept in memory, output in ``.nbops/jobs/<id>.log``."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbops.errors import NotFound
from nbops.server import limits
from nbops.server import models as m

LOG_TAIL = 4000


@dataclass
class Launch:
    """What to start: the command, where, with what environment, and how to find its runs."""

    kind: str  # "rerun" | "pipeline"
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    rerun_of: str | None = None
    stage: str | None = None
    summary: Path | None = None  # nbops run --summary FILE


@dataclass
class JobRecord:
    job_id: str
    launch: Launch
    log: Path
    state: str = "running"
    run_id: str | None = None
    run_ids: list[str] = field(default_factory=list)
    error: str | None = None
    started: int = field(default_factory=lambda: int(time.time() * 1000))
    finished: int | None = None

    def model(self) -> m.LaunchedJob:
        try:
            tail = self.log.read_bytes()[-LOG_TAIL:].decode(errors="replace")
        except OSError:
            tail = ""
        return m.LaunchedJob(
            job_id=self.job_id,
            state=self.state,  # type: ignore[arg-type]
            run_id=self.run_id,
            error=self.error,
            rerun_of=self.launch.rerun_of,
            kind=self.launch.kind,  # type: ignore[arg-type]
            run_ids=self.run_ids,
            started=self.started,
            finished=self.finished,
            log_tail=tail,
        )


# given a finished job, the ids of the runs it made (looked up in the store: a blocking call)
FindRuns = Callable[[JobRecord], Awaitable[list[str]]]


class Jobs:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "jobs"
        self.jobs: dict[str, JobRecord] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def new_id(self) -> str:
        return secrets.token_hex(8)

    def get(self, job_id: str) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"job {job_id[:40]!r} is not known to this server",
                "jobs live in the server's memory: a restarted server forgets them",
            )
        return job

    async def start(
        self, launch: Launch, find_runs: FindRuns, job_id: str | None = None
    ) -> JobRecord:
        limits.argv(launch.argv)  # E2BIG from the OS would surface as a 500: refuse it here
        self.dir.mkdir(parents=True, exist_ok=True)
        job_id = job_id or self.new_id()
        job = JobRecord(job_id, launch, self.dir / f"{job_id}.log")
        with open(job.log, "wb") as log:
            log.write(("$ " + " ".join(launch.argv) + "\n").encode())
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                cwd=str(launch.cwd),
                env={**os.environ, **launch.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.jobs[job_id] = job
        task = asyncio.ensure_future(self._watch(job, proc, find_runs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _watch(self, job: JobRecord, proc: Any, find_runs: FindRuns) -> None:
        code = await proc.wait()
        summary: dict[str, Any] = {}
        if job.launch.summary is not None:
            try:
                summary = json.loads(job.launch.summary.read_text())
            except (OSError, ValueError, RecursionError):
                summary = {}
        try:
            if summary:
                stages = summary.get("stages") or {}
                ids: list[str] = []
                for name, st in stages.items():
                    if job.launch.stage is None or name == job.launch.stage:
                        ids.extend(st.get("run_ids") or [])
                job.run_ids = ids
                job.run_id = (
                    ids[0] if job.launch.kind == "rerun" and ids else summary.get("pipeline_run_id")
                )
                if summary.get("error"):
                    job.error = str(summary["error"])
            else:
                job.run_ids = await find_runs(job)
                job.run_id = job.run_ids[0] if job.run_ids else None
        except Exception as exc:  # noqa: BLE001 - a lookup failure fails the job, not the server
            job.error = f"could not find the runs of the job: {exc}"
        ok = code == 0 and (job.launch.kind == "pipeline" or job.run_id is not None)
        if not ok and job.error is None:
            tail = job.model().log_tail.strip().splitlines()
            job.error = (f"exited with code {code}" if code else "finished but made no run") + (
                ": " + tail[-1] if tail else ""
            )
        job.state = "done" if ok else "failed"
        job.finished = int(time.time() * 1000)

    async def stop_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
