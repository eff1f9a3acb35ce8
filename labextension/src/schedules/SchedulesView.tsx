/**
 * The Schedules tab of the nbops sidebar: the project's schedules (nbops.yaml and
 * `nbops schedule add`) with their next run in local time and last status, whether the
 * `nbops scheduler` daemon is alive, a form to add one, remove, run now and the history.
 */
import * as React from 'react';

import type { ScheduleInfo, ScheduleList } from '../api.generated';
import { shortId } from '../format';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import { ErrorBox } from '../sidebar/EmptyState';
import { scheduleApi } from './api';
import { ScheduleForm } from './ScheduleForm';
import { EXEC_CLASS, ScheduleHistory, statusWord } from './ScheduleHistory';

const REFRESH_MS = 15_000;

/** "Wed 26 Nov, 03:00 CET" in the browser's zone (the zone is always shown). */
export function formatNext(ms: number | null): string {
  if (!ms) {
    return 'never';
  }
  return new Date(ms).toLocaleString(undefined, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit',
    timeZoneName: 'short'
  });
}

/** "in 5 min", "in 3 h", "in 2 d". */
export function formatUntil(ms: number | null, now: number = Date.now()): string {
  if (!ms) {
    return '';
  }
  const s = (ms - now) / 1000;
  if (s < 60) {
    return 'in < 1 min';
  }
  if (s < 3600) {
    return `in ${Math.round(s / 60)} min`;
  }
  if (s < 86400) {
    return `in ${Math.round(s / 3600)} h`;
  }
  return `in ${Math.round(s / 86400)} d`;
}

function message(e: unknown): string {
  return e instanceof ApiError ? e.message : String(e);
}

function DaemonBar(props: { daemon: ScheduleList['daemon'] }): JSX.Element {
  const { daemon } = props;
  if (daemon.alive) {
    return (
      <div className="nbops-Daemon nbops-mod-alive" data-daemon="alive" title={daemon.hint ?? ''}>
        <span className="nbops-status nbops-status-finished" /> Scheduler running
        {daemon.pid ? ` (pid ${daemon.pid})` : ''}
        {daemon.hint ? <div className="nbops-Daemon-hint">{daemon.hint}</div> : null}
      </div>
    );
  }
  return (
    <div className="nbops-Daemon nbops-mod-down" data-daemon="down" role="status">
      <span className="nbops-status nbops-status-killed" /> The scheduler is not running: schedules
      fire only while it runs. Start it with <code>nbops scheduler</code> in the project folder.
    </div>
  );
}

function ScheduleItem(props: {
  model: NbopsModel;
  schedule: ScheduleInfo;
  onChanged(): void;
  onError(message: string): void;
}): JSX.Element {
  const { schedule: s } = props;
  const [open, setOpen] = React.useState(false);
  const [confirming, setConfirming] = React.useState(false);
  const [since, setSince] = React.useState<number | null>(null);
  const [note, setNote] = React.useState<string | null>(null);
  const fromYaml = s.source === 'nbops.yaml';
  const word = statusWord(s.last_status);

  const runNow = async (): Promise<void> => {
    try {
      const res = await scheduleApi.runNow(s.name);
      setNote(res.queued ? 'Queued for the scheduler.' : 'Started (no scheduler running).');
      setOpen(true);
      setSince(Date.now());
    } catch (e) {
      props.onError(message(e));
    }
  };

  const remove = async (): Promise<void> => {
    try {
      await scheduleApi.remove(s.name);
      props.onChanged();
    } catch (e) {
      props.onError(message(e));
    } finally {
      setConfirming(false);
    }
  };

  return (
    <li className="nbops-ScheduleList-item" data-schedule={s.name}>
      <div className="nbops-StageList-head">
        <span
          className={`nbops-exec ${EXEC_CLASS[word] ?? 'nbops-exec-never'}`}
          title={s.last_status ?? 'this schedule has not run yet'}
        >
          {word}
        </span>
        <span className="nbops-StageList-name">{s.name}</span>
        <span
          className="nbops-ScheduleList-source"
          title={fromYaml ? 'defined in nbops.yaml' : 'added with nbops schedule add or here'}
        >
          {fromYaml ? 'nbops.yaml' : 'added'}
        </span>
      </div>
      <div className="nbops-ScheduleList-when">
        <code>{s.cron}</code>
        <span className="nbops-ScheduleList-zone">{s.timezone}</span>
      </div>
      {s.invalid ? (
        <div className="nbops-ScheduleList-invalid" role="alert">
          invalid, skipped by the scheduler: {s.invalid}
        </div>
      ) : (
        <div className="nbops-ScheduleList-next" title={`cron in ${s.timezone}`}>
          next <strong>{formatNext(s.next_fire)}</strong>{' '}
          <span className="nbops-ScheduleList-until">{formatUntil(s.next_fire)}</span>
        </div>
      )}
      <div className="nbops-ScheduleList-meta">
        {s.stages.length ? s.stages.join(' → ') : 'all stages'} · catch-up {s.catchup}
        {s.retries ? ` · ${s.retries} retries` : ''}
        {s.timeout ? ` · timeout ${s.timeout} s` : ''}
        {s.last_run_id ? (
          <>
            {' · last run '}
            <button
              className="nbops-link"
              data-run-id={s.last_run_id}
              title={`Open run ${s.last_run_id}`}
              onClick={() => props.model.requestRun(s.last_run_id ?? '')}
            >
              {shortId(s.last_run_id)}
            </button>
          </>
        ) : null}
      </div>
      <div className="nbops-ScheduleList-actions">
        <button className="nbops-button nbops-mod-small" onClick={() => void runNow()}>
          Run now
        </button>
        <button
          className="nbops-button nbops-mod-small"
          aria-expanded={open}
          onClick={() => setOpen(o => !o)}
        >
          History
        </button>
        {confirming ? (
          <>
            <button
              className="nbops-button nbops-mod-small nbops-mod-warn"
              onClick={() => void remove()}
            >
              Remove {s.name}?
            </button>
            <button className="nbops-button nbops-mod-small" onClick={() => setConfirming(false)}>
              Keep
            </button>
          </>
        ) : (
          <button
            className="nbops-button nbops-mod-small"
            disabled={fromYaml}
            title={
              fromYaml
                ? 'Defined in nbops.yaml: delete it from the schedules: section of the file'
                : `Remove ${s.name}`
            }
            onClick={() => setConfirming(true)}
          >
            Remove
          </button>
        )}
      </div>
      {note ? <div className="nbops-ScheduleList-note">{note}</div> : null}
      {open ? (
        <ScheduleHistory
          model={props.model}
          name={s.name}
          since={since}
          onSettled={props.onChanged}
        />
      ) : null}
    </li>
  );
}

export function SchedulesView(props: { model: NbopsModel; active: boolean }): JSX.Element {
  const [data, setData] = React.useState<ScheduleList | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [actionError, setActionError] = React.useState<string | null>(null);
  const [adding, setAdding] = React.useState(false);

  const load = React.useCallback(async () => {
    try {
      setData(await scheduleApi.list());
      setError(null);
    } catch (e) {
      setError(message(e));
    }
  }, []);

  React.useEffect(() => {
    void load();
  }, []);

  // next fire times move and the daemon comes and goes: look again while the tab is shown
  React.useEffect(() => {
    if (!props.active) {
      return;
    }
    const timer = window.setInterval(() => void load(), REFRESH_MS);
    const onRefresh = (): void => void load();
    props.model.refreshRequested.connect(onRefresh);
    return () => {
      window.clearInterval(timer);
      props.model.refreshRequested.disconnect(onRefresh);
    };
  }, [props.active]);

  if (error) {
    return <ErrorBox message={error} onRetry={() => void load()} />;
  }
  if (!data) {
    return <div className="nbops-loading">Loading schedules…</div>;
  }
  return (
    <div className="nbops-SchedulesView">
      <DaemonBar daemon={data.daemon} />
      <div className="nbops-Toolbar">
        <span className="nbops-Toolbar-count">
          {data.schedules.length} schedule{data.schedules.length === 1 ? '' : 's'} · times in{' '}
          {Intl.DateTimeFormat().resolvedOptions().timeZone}
        </span>
        <button
          className="nbops-button nbops-mod-accept nbops-mod-small"
          aria-expanded={adding}
          disabled={data.problem !== null}
          onClick={() => setAdding(a => !a)}
        >
          New schedule
        </button>
      </div>
      {adding ? (
        <ScheduleForm
          onCancel={() => setAdding(false)}
          onCreated={() => {
            setAdding(false);
            void load();
          }}
        />
      ) : null}
      {actionError ? (
        <div className="nbops-error" role="alert">
          <span>{actionError}</span>
          <button className="nbops-button nbops-mod-small" onClick={() => setActionError(null)}>
            Dismiss
          </button>
        </div>
      ) : null}
      {data.problem ? (
        <div className="nbops-empty" data-empty="no-schedules">
          <p className="nbops-empty-title">No schedules</p>
          <p>{data.problem}</p>
        </div>
      ) : data.schedules.length === 0 ? (
        <div className="nbops-empty" data-empty="no-schedules">
          <p className="nbops-empty-title">No schedules yet</p>
          <p>
            Add one with <strong>New schedule</strong>, with <code>nbops schedule add</code>, or
            under <code>schedules:</code> in <code>nbops.yaml</code>.
          </p>
        </div>
      ) : (
        <ul className="nbops-StageList nbops-ScheduleList">
          {data.schedules.map(s => (
            <ScheduleItem
              key={s.name}
              model={props.model}
              schedule={s}
              onChanged={() => void load()}
              onError={setActionError}
            />
          ))}
        </ul>
      )}
    </div>
  );
}
