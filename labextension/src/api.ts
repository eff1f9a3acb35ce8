/** Typed calls for each /nbops/api/ endpoint (REST contract: docs/architecture.md). */
import { requestAPI } from './request';
import type {
  CompareResponse,
  DiffResponse,
  ExperimentsResponse,
  JobAccepted,
  JobStatus,
  MetricHistoryResponse,
  PipelineResponse,
  RunDetail,
  RunsResponse
} from './types';

export interface RunsQuery {
  experiment: string;
  filter?: string;
  order_by?: string;
  max_results?: number;
  page_token?: string | null;
}

export const api = {
  experiments: (): Promise<ExperimentsResponse> => requestAPI('experiments'),

  runs: (q: RunsQuery): Promise<RunsResponse> =>
    requestAPI('runs', {
      query: {
        experiment: q.experiment,
        filter: q.filter,
        order_by: q.order_by,
        max_results: q.max_results,
        page_token: q.page_token
      }
    }),

  run: (runId: string): Promise<RunDetail> => requestAPI(`runs/${encodeURIComponent(runId)}`),

  metricHistory: (runId: string, key: string): Promise<MetricHistoryResponse> =>
    requestAPI(`runs/${encodeURIComponent(runId)}/metrics/${encodeURIComponent(key)}`),

  compare: (runIds: string[]): Promise<CompareResponse> =>
    requestAPI('compare', { query: { run_ids: runIds.join(',') } }),

  diff: (a: string, b: string): Promise<DiffResponse> => requestAPI('diff', { query: { a, b } }),

  rerun: (runId: string, params: Record<string, unknown>): Promise<JobAccepted> =>
    requestAPI(`runs/${encodeURIComponent(runId)}/rerun`, { method: 'POST', body: { params } }),

  job: (jobId: string): Promise<JobStatus> => requestAPI(`jobs/${encodeURIComponent(jobId)}`),

  pipeline: (): Promise<PipelineResponse> => requestAPI('pipeline'),

  runPipeline: (
    stages: string[],
    params: Record<string, unknown> = {},
    force = false
  ): Promise<JobAccepted> =>
    requestAPI('pipeline/run', { method: 'POST', body: { stages, params, force } })
};

/** Poll a job until it is no longer running; `onTick` sees every state. */
export async function waitForJob(
  jobId: string,
  onTick: (job: JobStatus) => void,
  intervalMs = 1000,
  isCancelled: () => boolean = () => false
): Promise<JobStatus> {
  for (;;) {
    const job = await api.job(jobId);
    onTick(job);
    if (job.state !== 'running' || isCancelled()) {
      return job;
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs));
  }
}
