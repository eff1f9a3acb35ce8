/**
 * The /nbops/api/ types, from the server's generated `api.generated.ts` (pydantic models in
 * nbops/server/models.py), under the names the UI code uses.
 */
import type { CellDiff, Job, PipelineStage, RunSummary } from './api.generated';

export type {
  ApiError as ApiErrorBody,
  CellDiff as DiffCell,
  Comparison as CompareResponse,
  Experiment,
  ExperimentList as ExperimentsResponse,
  Job as JobStatus,
  JobAccepted,
  MetricHistory as MetricHistoryResponse,
  MetricPoint,
  NotebookDiff as DiffResponse,
  Pipeline as PipelineResponse,
  PipelineStage,
  RunDetail,
  RunList as RunsResponse,
  RunSummary,
  SourceOp as DiffChunk
} from './api.generated';

export type RunStatus = RunSummary['status'];
export type CellStatus = CellDiff['status'];
export type DiffOp = CellDiff['source_diff'][number]['op'];
export type JobState = Job['state'];
export type StageStatus = PipelineStage['status'];

/** What the UI shows of a job while it polls it. */
export type JobView = Pick<Job, 'job_id' | 'state' | 'run_id' | 'error'> & { log_tail?: string };
