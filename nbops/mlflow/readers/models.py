"""What the readers answer: experiments, run summaries, pages of runs, metric points and a
comparison, as pydantic models. They are also the read half of the REST contract
(:mod:`nbops.server.models` lists them in ``API_MODELS``; docs/architecture.md, "REST contract"):
fields may be added, never renamed. Times are epoch milliseconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReadModel(BaseModel):
    # every field of a response is always present (null when unknown): the generated TypeScript
    # interfaces get no optional `?` members
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED"]
ReadSource = Literal["sqlite", "postgres", "mlflow"]


class Experiment(ReadModel):
    experiment_id: str
    name: str
    run_count: int
    last_run_time: int | None = None


class RunSummary(ReadModel):
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


class RunList(ReadModel):
    runs: list[RunSummary]
    next_page_token: str | None = None
    total: int | None = None
    param_keys: list[str] = Field(default_factory=list)
    metric_keys: list[str] = Field(default_factory=list)
    # which read path answered: "sqlite" or "postgres" (read-only SQL on the store's database)
    # or "mlflow" (MlflowClient)
    source: ReadSource = "mlflow"


class MetricPoint(ReadModel):
    step: int
    timestamp: int
    value: float | None


class RunComparison(ReadModel):
    # runs side by side (the Compare panel); ``Comparison`` on the wire and in TypeScript
    model_config = ConfigDict(json_schema_serialization_defaults_required=True, title="Comparison")

    runs: list[RunSummary]
    params_differ: dict[str, dict[str, str | None]]
    params_same: dict[str, str]
    metrics: dict[str, dict[str, float | None]]
    best: dict[str, str]
    histories: dict[str, dict[str, list[tuple[int, float | None]]]]
