/**
 * One run in the main area: its status, stage, times, the dask worker it ran on (tag
 * nbops.worker), params and metrics, the "reproducible" badge (tag nbops.verified) and its
 * Lineage section. Opened from schedule history rows and lineage links (model.requestRun) or
 * the `nbops:open-run` command.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import type { RunDetail } from '../api.generated';
import { formatDuration, formatFullTime, formatNumber, runLabel } from '../format';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import { scheduleApi } from '../schedules/api';
import { LineageSection, VerifiedBadge } from './LineageSection';

function KeyValues(props: { title: string; values: [string, string][] }): JSX.Element {
  return (
    <section className="nbops-Section">
      <h3>
        {props.title} <span className="nbops-count">{props.values.length}</span>
      </h3>
      {props.values.length ? (
        <table className="nbops-Table nbops-mod-compact">
          <tbody>
            {props.values.map(([k, v]) => (
              <tr key={k}>
                <th>{k}</th>
                <td>{v}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="nbops-note">None logged.</p>
      )}
    </section>
  );
}

function Run(props: { model: NbopsModel; runId: string }): JSX.Element {
  const [run, setRun] = React.useState<RunDetail | null>(null);
  const [error, setError] = React.useState<string | null>(null);

  React.useEffect(() => {
    let cancelled = false;
    scheduleApi
      .run(props.runId)
      .then(r => !cancelled && setRun(r))
      .catch(e => !cancelled && setError(e instanceof ApiError ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
  }, [props.runId]);

  if (error) {
    return (
      <div className="nbops-error" role="alert">
        {error}
      </div>
    );
  }
  if (!run) {
    return <div className="nbops-loading">Loading run {props.runId}…</div>;
  }
  const status = run.status.toLowerCase();
  return (
    <div className="nbops-Compare-body nbops-RunPanel-body">
      <header className="nbops-RunPanel-header">
        <span className={`nbops-status nbops-status-${status}`} title={run.status} />
        <h2>{runLabel(run)}</h2>
        <VerifiedBadge
          verified={run.tags['nbops.verified']}
          runId={run.run_id}
          at={run.tags['nbops.verified_at']}
        />
      </header>
      <div className="nbops-RunPanel-meta">
        <span>{run.status}</span>
        {run.stage ? <span>stage {run.stage}</span> : null}
        <span title={formatFullTime(run.start_time)}>started {formatFullTime(run.start_time)}</span>
        {run.duration_s !== null ? <span>took {formatDuration(run.duration_s)}</span> : null}
        {run.tags['nbops.schedule'] ? <span>schedule {run.tags['nbops.schedule']}</span> : null}
        {run.tags['nbops.worker'] ? (
          <span className="nbops-RunPanel-worker" title="the dask worker its notebook ran on">
            on {run.tags['nbops.worker']}
          </span>
        ) : null}
        <code>{run.run_id}</code>
      </div>
      <div className="nbops-Compare-columns">
        <KeyValues title="Params" values={Object.entries(run.params).sort()} />
        <KeyValues
          title="Metrics"
          values={Object.entries(run.metrics)
            .sort()
            .map(([k, v]) => [k, formatNumber(v)])}
        />
      </div>
      <LineageSection model={props.model} runId={run.run_id} />
    </div>
  );
}

export class RunWidget extends ReactWidget {
  constructor(
    private readonly _model: NbopsModel,
    readonly runId: string
  ) {
    super();
    this.addClass('nbops-Compare');
    this.addClass('nbops-RunPanel');
  }

  protected render(): JSX.Element {
    return <Run model={this._model} runId={this.runId} />;
  }
}
