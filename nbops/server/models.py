"""The /nbops/api/ contract, written once: request and response bodies of every endpoint.

``scripts/gen_api_types.py`` turns the JSON Schema of these models into
``labextension/src/api.generated.ts``; tests/unit/test_api_types.py fails when the two drift.
The REST contract of docs/architecture.md; fields may be added, never renamed. Times are epoch
milliseconds. The read models (runs, experiments, comparisons) live with the readers
(:mod:`nbops.mlflow.readers.models`) and are listed here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nbops.mlflow.readers import models as _models
from nbops.server.schedule_models import SCHEDULE_MODELS

# the read models live with the readers; the contract lists them
Experiment = _models.Experiment
MetricPoint = _models.MetricPoint
ReadModel = _models.ReadModel
RunComparison = _models.RunComparison
RunList = _models.RunList
RunSummary = _models.RunSummary


_Response = ReadModel


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


JobState = Literal["running", "done", "failed"]


class ApiError(_Response):
    """Every 4xx/5xx body: a short code and a message that says what to do."""

    error: Literal["bad_request", "not_found", "forbidden", "conflict", "unavailable", "internal"]
    message: str


class ExperimentList(_Response):
    experiments: list[Experiment]


class RunDetail(RunSummary):
    tags: dict[str, str] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)
    # why `artifacts` is empty or incomplete (listing capped, artifacts outside the project)
    artifacts_note: str | None = None
    has_notebook: bool = False


class MetricHistory(_Response):
    key: str
    history: list[MetricPoint]


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


class LaunchedJob(_Response):
    # a re-run or pipeline run the server launched (not an executor's or the scheduler's job);
    # ``Job`` on the wire and in TypeScript
    model_config = ConfigDict(json_schema_serialization_defaults_required=True, title="Job")

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


class PipelineStatus(_Response):
    # the pipeline's stages and whether each is up to date; ``Pipeline`` on the wire
    model_config = ConfigDict(json_schema_serialization_defaults_required=True, title="Pipeline")

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
    RunComparison,
    SourceOp,
    CellDiff,
    NotebookDiff,
    RerunRequest,
    JobAccepted,
    LaunchedJob,
    PipelineStage,
    PipelineStatus,
    PipelineRunRequest,
    *SCHEDULE_MODELS,
]
