/**
 * The /nbops/api/ contract (API-CONTRACT.md), written by hand until the server's
 * generated `api.generated.ts` lands. All times are epoch milliseconds.
 */

export type RunStatus = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED' | 'SCHEDULED';

export interface Experiment {
  experiment_id: string;
  name: string;
  run_count: number;
  last_run_time: number | null;
}

export interface ExperimentsResponse {
  experiments: Experiment[];
}

export interface RunSummary {
  run_id: string;
  run_name: string;
  experiment_id: string;
  status: RunStatus;
  start_time: number;
  end_time: number | null;
  duration_s: number | null;
  params: Record<string, string>;
  metrics: Record<string, number>;
  stage: string | null;
  rerun_of: string | null;
  parent_run_id: string | null;
  notebook: string | null;
}

export interface RunsResponse {
  runs: RunSummary[];
  next_page_token: string | null;
  total: number | null;
  param_keys: string[];
  metric_keys: string[];
}

export interface RunDetail extends RunSummary {
  tags: Record<string, string>;
  artifacts: string[];
  has_notebook: boolean;
}

export interface MetricPoint {
  step: number;
  timestamp: number;
  value: number;
}

export interface MetricHistoryResponse {
  key: string;
  history: MetricPoint[];
}

export interface CompareResponse {
  runs: RunSummary[];
  params_differ: Record<string, Record<string, string | null>>;
  params_same: Record<string, string>;
  metrics: Record<string, Record<string, number | null>>;
  best: Record<string, string>;
  histories: Record<string, Record<string, Array<[number, number]>>>;
}

export type DiffOp = 'equal' | 'insert' | 'delete';

export interface DiffChunk {
  op: DiffOp;
  text: string;
}

export type CellStatus = 'unchanged' | 'modified' | 'added' | 'removed';

export interface DiffCell {
  status: CellStatus;
  cell_type: string;
  source_a: string | null;
  source_b: string | null;
  outputs_a: string | null;
  outputs_b: string | null;
  source_diff: DiffChunk[];
}

export interface DiffResponse {
  a: string;
  b: string;
  cells: DiffCell[];
}

export type JobState = 'running' | 'done' | 'failed';

export interface JobAccepted {
  job_id: string;
  state: JobState;
}

export interface JobStatus {
  job_id: string;
  state: JobState;
  run_id: string | null;
  error: string | null;
  rerun_of: string | null;
}

export type StageStatus = 'up to date' | 'stale' | 'never run';

export interface PipelineStage {
  name: string;
  notebook: string;
  status: StageStatus;
  reasons: string[];
  last_run_id: string | null;
}

export interface PipelineResponse {
  path: string | null;
  stages: PipelineStage[];
}

export interface ApiErrorBody {
  error: string;
  message: string;
}
