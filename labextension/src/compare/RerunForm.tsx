/**
 * Re-run a run's notebook with edited params: POST runs/<id>/rerun, poll the job, and point
 * the run table at the new run when it ends.
 */
import * as React from 'react';

import { api, waitForJob } from '../api';
import { parseParamValue, runLabel, shortId } from '../format';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import type { JobView, RunSummary } from '../types';

export function RerunForm(props: {
  model: NbopsModel;
  runs: RunSummary[];
  onNewRun(runId: string): void;
}): JSX.Element {
  const { runs, model } = props;
  const [source, setSource] = React.useState(runs[0]?.run_id ?? '');
  const run = runs.find(r => r.run_id === source) ?? runs[0];
  const [values, setValues] = React.useState<Record<string, string>>({ ...(run?.params ?? {}) });
  const [job, setJob] = React.useState<JobView | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const alive = React.useRef(true);

  React.useEffect(
    () => () => {
      alive.current = false;
    },
    []
  );

  React.useEffect(() => {
    setValues({ ...(run?.params ?? {}) });
  }, [run?.run_id]);

  if (!run) {
    return <></>;
  }
  const keys = Object.keys(run.params).sort();
  const changed = keys.filter(k => values[k] !== run.params[k]);
  const busy = job?.state === 'running';

  const submit = async (e: React.FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    const params: Record<string, unknown> = {};
    for (const k of changed) {
      params[k] = parseParamValue(values[k]);
    }
    try {
      const accepted = await api.rerun(run.run_id, params);
      model.jobStarted();
      setJob({ job_id: accepted.job_id, state: 'running', run_id: null, error: null });
      const done = await waitForJob(
        accepted.job_id,
        j => alive.current && setJob(j),
        1000
      );
      model.jobEnded(done.run_id ?? undefined);
      if (done.run_id && alive.current) {
        props.onNewRun(done.run_id);
      }
    } catch (err) {
      if (alive.current) {
        setError(err instanceof ApiError ? err.message : String(err));
        setJob(null);
      }
    }
  };

  return (
    <section className="nbops-Section nbops-Rerun">
      <h3>Re-run</h3>
      <form onSubmit={e => void submit(e)}>
        <div className="nbops-Rerun-source">
          <label>
            notebook of{' '}
            <select
              className="nbops-select"
              aria-label="run to re-run"
              value={run.run_id}
              onChange={e => setSource(e.target.value)}
            >
              {runs.map(r => (
                <option key={r.run_id} value={r.run_id}>
                  {runLabel(r)} ({shortId(r.run_id)})
                </option>
              ))}
            </select>
          </label>
          {run.notebook ? <code className="nbops-Rerun-notebook">{run.notebook}</code> : null}
        </div>
        {keys.length ? (
          <div className="nbops-Rerun-params">
            {keys.map(k => (
              <label key={k} className={values[k] !== run.params[k] ? 'nbops-mod-changed' : ''}>
                <span>{k}</span>
                <input
                  className="nbops-input"
                  name={k}
                  value={values[k] ?? ''}
                  onChange={e => setValues(v => ({ ...v, [k]: e.target.value }))}
                />
              </label>
            ))}
          </div>
        ) : (
          <p className="nbops-note">This run has no params: it re-runs as it was.</p>
        )}
        <div className="nbops-Rerun-actions">
          <button
            type="submit"
            className="nbops-button nbops-mod-accept nbops-RerunButton"
            disabled={busy}
          >
            {busy ? 'Re-running…' : changed.length ? `Re-run with ${changed.length} change${changed.length === 1 ? '' : 's'}` : 'Re-run'}
          </button>
          {changed.length ? (
            <button
              type="button"
              className="nbops-button"
              disabled={busy}
              onClick={() => setValues({ ...run.params })}
            >
              Reset
            </button>
          ) : null}
          <span className="nbops-note">
            Params not changed keep the run's values.
          </span>
        </div>
      </form>
      {error ? (
        <div className="nbops-error" role="alert">
          {error}
        </div>
      ) : null}
      {job ? (
        <div
          className={`nbops-job nbops-job-${job.state}`}
          role="status"
          data-job-state={job.state}
          data-new-run-id={job.run_id ?? ''}
        >
          {job.state === 'running'
            ? `Re-running ${runLabel(run)}…${job.run_id ? ` new run ${shortId(job.run_id)}` : ''}`
            : job.state === 'done'
              ? `Done: new run ${job.run_id ? shortId(job.run_id) : ''} is in the run table.`
              : `The re-run failed: ${job.error ?? 'see its run'}`}
          {job.state === 'failed' && job.log_tail ? (
            <pre className="nbops-job-log">{job.log_tail}</pre>
          ) : null}
        </div>
      ) : null}
    </section>
  );
}
