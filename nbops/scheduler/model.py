"""The scheduler's data, written once as pydantic models: what a schedule is, what one execution
left behind (a history row) and whether the daemon is alive. The server wraps these as JSON.

One schedule model, whatever its way in::

    ScheduleOptions    what anyone may set: name, cron, timezone, stages, params, catchup,
    │                  retries, timeout (``POST /schedules`` takes exactly these)
    └── Schedule       + on_failure (a shell hook: the CLI and nbops.yaml only) and source;
        │              what ``nbops schedule add``, ``POST /schedules`` and nbops.yaml's
        │              ``schedules:`` (``sources.from_pipeline``) become, and what api, store,
        │              core, daemon and execution take whole
        └── ScheduleView  + when it fires next and how it did last (``schedule list``,
                       ``GET /schedules``)

Building one checks it (``validation.checked``): a bad value is an NbopsError naming the
schedule and the field, never a pydantic error. Given ``context={"pipeline": ...}``, its stages
and params are checked against nbops.yaml too (``validation.validate``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

Catchup = Literal["none", "latest", "all"]
Source = Literal["nbops.yaml", "cli"]
Status = Literal["running", "ok", "failed", "timeout", "killed", "skipped", "lost"]


class ScheduleOptions(BaseModel):
    """When (cron in a time zone), what (stages + params) and how (catch-up after downtime,
    retries, timeout in seconds): the options of a schedule that anyone may set."""

    model_config = ConfigDict(extra="forbid")

    name: str
    cron: str
    timezone: str | None = None  # IANA name; None: the machine's local zone
    stages: list[str] = []  # empty: every stage of nbops.yaml
    params: dict[str, Any] = {}  # "k" or "stage.k" -> value, as `nbops run -p`
    catchup: Catchup = "latest"
    retries: int = Field(0, ge=0)
    timeout: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any, info: ValidationInfo) -> Any:
        from nbops.scheduler.validation import checked

        return checked(data, set(cls.model_fields), info.context)


class Schedule(ScheduleOptions):
    """One schedule: its options, the shell hook run when it gives up, and where it is defined
    (nbops.yaml or the CLI / the server)."""

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


class ScheduleView(Schedule):
    """A schedule as listed: its spec plus when it fires next and how it did last. An invalid
    one is listed too, with what of it could be read and ``invalid`` saying why."""

    model_config = ConfigDict(extra="forbid")

    timezone: str  # shown, e.g. 'Europe/Berlin' or 'Etc/UTC (local)'
    retries: int  # as found (an invalid stored row may say anything)
    timeout: float | None
    next_fire: int | None  # epoch ms; None for an invalid schedule
    last_status: str | None
    last_run_id: str | None
    invalid: str | None = None  # why it does not run (a bad stored row, a cron with no time)

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any, info: ValidationInfo) -> Any:
        return data  # shown as found: an invalid schedule is listed, not refused


class DaemonStatus(BaseModel):
    """Whether `nbops scheduler` runs for this project, since when and when it last beat."""

    alive: bool
    pid: int | None = None
    since: float | None = None
    last_beat: float | None = None
    hint: str | None = None
