"""The /nbops/api/ contract of schedules and lineage: bodies of the endpoints in schedules.py.

Listed in ``models.API_MODELS`` so the TypeScript types are generated with the rest. Times are
epoch milliseconds (the scheduler keeps seconds; the handlers convert).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbops.scheduler.model import ScheduleOptions, ScheduleView


class _Response(BaseModel):  # as in models.py: every field present, null when unknown
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ScheduleInfo(ScheduleView):
    """One schedule as listed: its spec, when it fires next and how it did last."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class SchedulerDaemon(_Response):
    """Whether `nbops scheduler` runs for this project; ``hint`` says how to start it."""

    alive: bool
    pid: int | None = None
    since: int | None = None
    last_beat: int | None = None
    hint: str | None = None


class ScheduleList(_Response):
    schedules: list[ScheduleInfo]
    daemon: SchedulerDaemon
    # why there are no schedules to show (no nbops.yaml, or it is broken), else null
    problem: str | None = None


class CreateSchedule(ScheduleOptions):
    """A new schedule (as `nbops schedule add`); shell hooks are not set from the browser."""

    # built, it is checked as the scheduler checks every schedule (a bad field: InvalidInput
    # naming it, the 400's message); POST /schedules then checks it against nbops.yaml


class ScheduleRemoved(_Response):
    removed: str


class ScheduleRunAccepted(_Response):
    """Run now: queued for the running daemon, or started as a detached process (pid)."""

    schedule: str
    queued: bool
    pid: int | None = None


class ScheduleExecution(_Response):
    """One execution of a schedule (or a fire time that was skipped)."""

    id: int
    schedule: str
    status: Literal["running", "ok", "failed", "timeout", "killed", "skipped", "lost"]
    reason: str  # cron | catchup | manual | retry
    attempt: int
    fire_time: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    duration_s: float | None = None
    pipeline_run_id: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    error: str | None = None
    exit_code: int | None = None


class ScheduleHistory(_Response):
    schedule: str
    executions: list[ScheduleExecution]  # newest first


class LineageGit(_Response):
    commit: str | None = None
    branch: str | None = None
    dirty: str | None = None


class LineageData(_Response):
    """Content hashes (xxh3) by path: what the run read, tracked and wrote."""

    deps: dict[str, str] = Field(default_factory=dict)
    tracked: dict[str, str] = Field(default_factory=dict)
    outs: dict[str, str] = Field(default_factory=dict)


class LineageBrief(_Response):
    """A run named in a lineage without its own lineage (a sweep's points, a pipeline's stages)."""

    run_id: str
    stage: str | None = None
    sweep_point: str | None = None
    name: str | None = None
    status: str | None = None


class LineageUpstream(_Response):
    """A dep of the run and the stage run that wrote that content (null: source data)."""

    dep: str
    digest: str
    run: LineageRun | None = None
    # a dep on a directory: the files of it this run wrote (one edge per writer)
    files: list[str] | None = None
    # how the writer was found ("tracked" file, directory contents, ...)
    via: str | None = None
    note: str | None = None


class LineageRun(_Response):
    run_id: str
    name: str | None = None
    status: str
    experiment_id: str
    # pipeline | sweep | point | stage | verify | drift | run (nbops.ops.runkinds.KINDS)
    kind: str | None = None
    # what cannot be known about this run's lineage, said exactly
    note: str | None = None
    sweep: dict[str, str | None] | None = None  # a point's sweep run
    points: list[LineageBrief] = Field(default_factory=list)  # a sweep's point runs
    stages: list[LineageBrief] = Field(default_factory=list)  # a pipeline run's stage runs
    stage: str | None = None
    sweep_point: str | None = None
    pipeline_run: str | None = None
    notebook: str | None = None
    executed_notebook: str | None = None
    git: LineageGit
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    data: LineageData
    models: list[str] = Field(default_factory=list)
    upstream: list[LineageUpstream] = Field(default_factory=list)
    # the walk stopped here (a run seen before, or too deep)
    upstream_cut: bool = False


class Lineage(_Response):
    """Where a run came from (nbops lineage RUN) and whether `nbops verify` reproduced it."""

    run: LineageRun
    # tag nbops.verified: "true" / "false", null when the run was never verified
    verified: Literal["true", "false"] | None = None
    verified_at: str | None = None
    verified_by: str | None = None


LineageUpstream.model_rebuild()

SCHEDULE_MODELS: list[type[BaseModel]] = [
    ScheduleInfo,
    SchedulerDaemon,
    ScheduleList,
    CreateSchedule,
    ScheduleRemoved,
    ScheduleRunAccepted,
    ScheduleExecution,
    ScheduleHistory,
    LineageGit,
    LineageData,
    LineageUpstream,
    LineageRun,
    Lineage,
]
