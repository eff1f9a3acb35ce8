"""The /nbops/api/ contract, written once: request and response bodies of every endpoint.

``scripts/gen_api_types.py`` turns the JSON Schema of these models into
``labextension/src/api.generated.ts``; tests/unit/test_api_types.py fails when the two drift.
Names follow API-CONTRACT.md; fields may be added, never renamed. Times are epoch milliseconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nbops.server.schedule_models import SCHEDULE_MODELS


class _Response(BaseModel):
    # every field of a response is always present (null when unknown): the TypeScript interfaces
    # get no optional `?` members
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED"]
JobState = Literal["running", "done", "failed"]


class ApiError(_Response):
    """Every 4xx/5xx body: a short code and a message that says what to do."""

    error: Literal["bad_request", "not_found", "forbidden", "conflict", "unavailable", "internal"]
    message: str


class Experiment(_Response):
    experiment_id: str
    name: str
    run_count: int
    last_run_time: int | None = None


class ExperimentList(_Response):
    experiments: list[Experiment]


class RunSummary(_Response):
    run_id: str
    run_name: str | None = None
    experiment_id: str
    status: RunStatus
    start_time: int | None = None
    end_time: int | None = None
    duration_s: float | None = None
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    stage: str | None = None
    rerun_of: str | None = None
    parent_run_id: str | None = None
    notebook: str | None = None


class RunList(_Response):
    runs: list[RunSummary]
    next_page_token: str | None = None
    total: int | None = None
    param_keys: list[str] = Field(default_factory=list)
    metric_keys: list[str] = Field(default_factory=list)
    # which read path answered: "sqlite" (read-only SQL on the store) or "mlflow" (MlflowClient)
    source: Literal["sqlite", "mlflow"] = "mlflow"


class RunDetail(RunSummary):
    tags: dict[str, str] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)
    # why `artifacts` is empty or incomplete (listing capped, artifacts outside the project)
    artifacts_note: str | None = None
    has_notebook: bool = False


class MetricPoint(_Response):
    step: int
    timestamp: int
    value: float | None


class MetricHistory(_Response):
    key: str
    history: list[MetricPoint]


class Comparison(_Response):
    runs: list[RunSummary]
    params_differ: dict[str, dict[str, str | None]]
    params_same: dict[str, str]
    metrics: dict[str, dict[str, float | None]]
    best: dict[str, str]
    histories: dict[str, dict[str, list[tuple[int, float | None]]]]


class SourceOp(_Response):
    op: Literal["equal", "insert", "delete"]
    text: str


class CellDiff(_Response):
    status: Literal["unchanged", "modified", "added", "removed"]
    cell_type: str
    source_a: str | None = None
    source_b: str | None = None
    outputs_a: str | None = None
    outputs_b: str | None = None
    source_diff: list[SourceOp] = Field(default_factory=list)


class NotebookDiff(_Response):
    a: str
    b: str
    cells: list[CellDiff]


class RerunRequest(_Request):
    params: dict[str, Any] = Field(default_factory=dict)


class JobAccepted(_Response):
    job_id: str
    state: JobState


class Job(_Response):
    job_id: str
    state: JobState
    run_id: str | None = None
    error: str | None = None
    rerun_of: str | None = None
    kind: Literal["rerun", "pipeline"] = "rerun"
    run_ids: list[str] = Field(default_factory=list)
    started: int = 0
    finished: int | None = None
    log_tail: str = ""


class PipelineStage(_Response):
    name: str
    notebook: str
    status: Literal["up to date", "stale", "never run"]
    reasons: list[str]
    last_run_id: str | None = None


class Pipeline(_Response):
    path: str | None = None
    stages: list[PipelineStage]


class PipelineRunRequest(_Request):
    stages: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    force: bool = False


# every model the TypeScript side sees, in the order they are emitted
API_MODELS: list[type[BaseModel]] = [
    ApiError,
    Experiment,
    ExperimentList,
    RunSummary,
    RunList,
    RunDetail,
    MetricPoint,
    MetricHistory,
    Comparison,
    SourceOp,
    CellDiff,
    NotebookDiff,
    RerunRequest,
    JobAccepted,
    Job,
    PipelineStage,
    Pipeline,
    PipelineRunRequest,
    *SCHEDULE_MODELS,
]
