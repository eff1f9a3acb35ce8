/** A schedule's executions, newest first: status, start, duration, run ids (open the run), error. */
import * as React from 'react';

import type { ScheduleExecution } from '../api.generated';
import { formatDuration, formatFullTime, formatStart, shortId } from '../format';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import { scheduleApi } from './api';

export const EXEC_CLASS: Record<string, string> = {
  ok: 'nbops-exec-ok',
  running: 'nbops-exec-running',
  failed: 'nbops-exec-failed',
  timeout: 'nbops-exec-failed',
  lost: 'nbops-exec-failed',
  killed: 'nbops-exec-muted',
  skipped: 'nbops-exec-muted'
};

/** The status word of a schedule's last execution ("skipped: <why>" keeps only "skipped"). */
export function statusWord(status: string | null): string {
  return status ? status.split(':')[0] : 'never run';
}

export function ScheduleHistory(props: {
  model: NbopsModel;
  name: string;
  /** when "Run now" was clicked (ms): look again until an execution since then shows */
  since: number | null;
  /** called when a running execution has ended (the list's last status changed) */
  onSettled?: () => void;
}): JSX.Element {
  const [rows, setRows] = React.useState<ScheduleExecution[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [poll, setPoll] = React.useState(0);

  React.useEffect(() => {
    let cancelled = false;
    scheduleApi
      .history(props.name)
      .then(h => {
        if (!cancelled) {
          setRows(h.executions);
          setError(null);
        }
      })
      .catch(e => !cancelled && setError(e instanceof ApiError ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
  }, [props.name, props.since, poll]);

  // while an execution runs, or one asked for has not shown up yet (for a minute), look again
  const since = props.since;
  const running = rows?.some(r => r.status === 'running') ?? false;
  const awaited =
    since !== null &&
    Date.now() - since < 60_000 &&
    !(rows ?? []).some(r => (r.start_time ?? r.fire_time ?? 0) >= since - 5000);
  const wasRunning = React.useRef(false);
  React.useEffect(() => {
    if (wasRunning.current && !running) {
      props.onSettled?.();
    }
    wasRunning.current = running;
  }, [running]);
  React.useEffect(() => {
    if (!running && !awaited) {
      return;
    }
    const timer = window.setTimeout(() => setPoll(p => p + 1), 2000);
    return () => window.clearTimeout(timer);
  }, [running, awaited, rows]);

  if (error) {
    return (
      <div className="nbops-error" role="alert">
        {error}
      </div>
    );
  }
  if (rows === null) {
    return <div className="nbops-loading">Loading history…</div>;
  }
  if (rows.length === 0) {
    return <p className="nbops-ScheduleHistory-empty">No executions yet.</p>;
  }
  return (
    <table className="nbops-Table nbops-mod-compact nbops-ScheduleHistory">
      <thead>
        <tr>
          <th>status</th>
          <th>started</th>
          <th>took</th>
          <th>runs</th>
        </tr>
      </thead>
      <tbody>
        {rows.map(r => {
          const ids = r.run_ids.length ? r.run_ids : r.pipeline_run_id ? [r.pipeline_run_id] : [];
          return (
            <React.Fragment key={r.id}>
              <tr data-execution={r.id} data-status={r.status}>
                <td>
                  <span
                    className={`nbops-exec ${EXEC_CLASS[r.status] ?? ''}`}
                    title={`${r.reason}${r.attempt ? `, retry ${r.attempt}` : ''}`}
                  >
                    {r.status}
                  </span>
                </td>
                <td title={formatFullTime(r.start_time ?? r.fire_time)}>
                  {formatStart(r.start_time ?? r.fire_time)}
                </td>
                <td>{formatDuration(r.duration_s)}</td>
                <td className="nbops-ScheduleHistory-runs">
                  {ids.map(id => (
                    <button
                      key={id}
                      className="nbops-link"
                      data-run-id={id}
                      title={`Open run ${id}`}
                      onClick={() => props.model.requestRun(id)}
                    >
                      {shortId(id)}
                    </button>
                  ))}
                </td>
              </tr>
              {r.error ? (
                <tr className="nbops-ScheduleHistory-error">
                  <td colSpan={4}>{r.error}</td>
                </tr>
              ) : null}
            </React.Fragment>
          );
        })}
      </tbody>
    </table>
  );
}
