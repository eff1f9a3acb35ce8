"""The scheduler's data, written once as pydantic models: what a schedule is, what one execution
left behind (a history row) and whether the daemon is alive. The server wraps these as JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Catchup = Literal["none", "latest", "all"]
Source = Literal["nbops.yaml", "cli"]
Status = Literal["running", "ok", "failed", "timeout", "killed", "skipped", "lost"]


class ScheduleSpec(BaseModel):
    """One schedule: when (cron in a time zone), what (stages + params) and how (catch-up after
    downtime, retries, timeout in seconds, a shell hook on failure)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    cron: str
    stages: list[str] = []  # empty: every stage of nbops.yaml
    params: dict[str, Any] = {}  # "k" or "stage.k" -> value, as `nbops run -p`
    catchup: Catchup = "latest"
    retries: int = Field(0, ge=0)
    timeout: float | None = Field(None, gt=0)
    timezone: str | None = None  # IANA name; None: the machine's local zone
    on_failure: str | None = None
    source: Source = "cli"


class HistoryRow(BaseModel):
    """One execution of a schedule (or one fire time that was skipped)."""

    id: int
    schedule: str
    fire_time: float | None = None  # epoch s of the cron time (or of a manual run's request)
    reason: str = "cron"  # cron | catchup | manual | retry
    attempt: int = 0
    status: Status
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    pipeline_run_id: str | None = None
    run_ids: list[str] = []
    error: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    log: str | None = None  # the execution's output file


class ScheduleView(BaseModel):
    """A schedule as listed: its spec plus when it fires next and how it did last."""

    name: str
    cron: str
    timezone: str  # shown, e.g. 'Europe/Berlin' or 'Etc/UTC (local)'
    stages: list[str]
    params: dict[str, Any]
    catchup: Catchup
    retries: int
    timeout: float | None
    on_failure: str | None
    source: Source
    next_fire: int | None  # epoch ms; None for an invalid schedule
    last_status: str | None
    last_run_id: str | None
    invalid: str | None = None  # why it does not run (a bad stored row, a cron with no time)


class DaemonStatus(BaseModel):
    """Whether `nbops scheduler` runs for this project, since when and when it last beat."""

    alive: bool
    pid: int | None = None
    since: float | None = None
    last_beat: float | None = None
    hint: str | None = None
