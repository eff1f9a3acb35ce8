/** The project's nbops.yaml stages: up to date or why not, and a Run button. */
import * as React from 'react';

import { api, waitForJob } from '../api';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import type { JobView, PipelineResponse } from '../types';
import { ErrorBox } from '../sidebar/EmptyState';

const STATUS_CLASS: Record<string, string> = {
  'up to date': 'nbops-stage-ok',
  stale: 'nbops-stage-stale',
  'never run': 'nbops-stage-never'
};

export function PipelineView(props: { model: NbopsModel }): JSX.Element {
  const [pipeline, setPipeline] = React.useState<PipelineResponse | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [job, setJob] = React.useState<JobView | null>(null);
  const [force, setForce] = React.useState(false);

  const load = React.useCallback(async () => {
    try {
      setPipeline(await api.pipeline());
      setError(null);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  }, []);

  React.useEffect(() => {
    void load();
  }, []);

  const run = async (stages: string[]): Promise<void> => {
    try {
      const accepted = await api.runPipeline(stages, {}, force);
      props.model.jobStarted();
      setJob({ job_id: accepted.job_id, state: 'running', run_id: null, error: null });
      const done = await waitForJob(accepted.job_id, setJob, 1000);
      props.model.jobEnded(done.run_id ?? undefined);
      await load();
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  };

  if (error) {
    return <ErrorBox message={error} onRetry={() => void load()} />;
  }
  if (!pipeline) {
    return <div className="nbops-loading">Loading the pipeline…</div>;
  }
  if (!pipeline.path) {
    return (
      <div className="nbops-empty" data-empty="no-pipeline">
        <p className="nbops-empty-title">No pipeline in this project</p>
        <p>
          Declare notebooks as stages in <code>nbops.yaml</code> at the project root, then run them
          here or with <code>nbops run</code>. <code>nbops demo</code> writes an example.
        </p>
      </div>
    );
  }
  const busy = job?.state === 'running';
  return (
    <div className="nbops-PipelineView">
      <div className="nbops-Toolbar">
        <span className="nbops-Toolbar-count" title={pipeline.path}>
          {pipeline.path.split('/').pop()}
        </span>
        <label className="nbops-check-label" title="Run even the stages that are up to date">
          <input type="checkbox" checked={force} onChange={() => setForce(f => !f)} /> force
        </label>
        <button
          className="nbops-button nbops-mod-accept nbops-mod-small"
          disabled={busy}
          onClick={() => void run([])}
        >
          {busy ? 'Running…' : 'Run pipeline'}
        </button>
      </div>
      {job ? (
        <div className={`nbops-job nbops-job-${job.state}`} role="status">
          {job.state === 'running'
            ? 'Pipeline running…'
            : job.state === 'done'
              ? 'Pipeline finished.'
              : `Pipeline failed: ${job.error ?? 'see the run in the table'}`}
          {job.state === 'failed' && job.log_tail ? (
            <pre className="nbops-job-log">{job.log_tail}</pre>
          ) : null}
        </div>
      ) : null}
      <ul className="nbops-StageList">
        {pipeline.stages.map(stage => (
          <li key={stage.name} data-stage={stage.name}>
            <div className="nbops-StageList-head">
              <span className={`nbops-stage-status ${STATUS_CLASS[stage.status] ?? ''}`}>
                {stage.status}
              </span>
              <span className="nbops-StageList-name">{stage.name}</span>
              <button
                className="nbops-button nbops-mod-small"
                disabled={busy}
                title={`Run ${stage.name} (and what it needs)`}
                onClick={() => void run([stage.name])}
              >
                Run
              </button>
            </div>
            <div className="nbops-StageList-notebook">{stage.notebook}</div>
            {stage.reasons.length && stage.reasons.join() !== stage.status ? (
              <ul className="nbops-StageList-reasons">
                {stage.reasons.map(r => (
                  <li key={r}>{r}</li>
                ))}
              </ul>
            ) : null}
          </li>
        ))}
      </ul>
    </div>
  );
}
