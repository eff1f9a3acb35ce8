/** The "New schedule" form: name, cron, stages (of nbops.yaml), catch-up, time zone. */
import * as React from 'react';

import { api } from '../api';
import type { CreateSchedule, ScheduleInfo } from '../api.generated';
import { ApiError } from '../request';
import { scheduleApi } from './api';

const CATCHUP_HELP: Record<NonNullable<CreateSchedule['catchup']>, string> = {
  latest: 'after downtime, run once for the missed times',
  none: 'after downtime, skip the missed times',
  all: 'after downtime, run each missed time in order'
};

const EXAMPLES = '0 2 * * * (02:00 daily) · */15 * * * * · @hourly';

export function ScheduleForm(props: {
  onCreated(schedule: ScheduleInfo): void;
  onCancel(): void;
}): JSX.Element {
  const [name, setName] = React.useState('');
  const [cron, setCron] = React.useState('');
  const [stages, setStages] = React.useState<string[]>([]);
  const [known, setKnown] = React.useState<string[] | null>(null);
  const [catchup, setCatchup] = React.useState<NonNullable<CreateSchedule['catchup']>>('latest');
  const [timezone, setTimezone] = React.useState('');
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);

  React.useEffect(() => {
    let cancelled = false;
    api
      .pipeline()
      .then(p => !cancelled && setKnown(p.stages.map(s => s.name)))
      .catch(() => !cancelled && setKnown([]));
    return () => {
      cancelled = true;
    };
  }, []);

  const toggle = (stage: string): void =>
    setStages(s => (s.includes(stage) ? s.filter(x => x !== stage) : [...s, stage]));

  const submit = async (e: React.FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const made = await scheduleApi.create({
        name: name.trim(),
        cron: cron.trim(),
        stages,
        catchup,
        timezone: timezone.trim() || null
      });
      props.onCreated(made);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="nbops-ScheduleForm" aria-label="New schedule" onSubmit={e => void submit(e)}>
      <label>
        <span>Name</span>
        <input
          className="nbops-input"
          name="name"
          value={name}
          placeholder="nightly-train"
          required
          autoFocus
          onChange={e => setName(e.target.value)}
        />
      </label>
      <label>
        <span>Cron</span>
        <input
          className="nbops-input"
          name="cron"
          value={cron}
          placeholder="0 2 * * *"
          title={EXAMPLES}
          required
          onChange={e => setCron(e.target.value)}
        />
      </label>
      <div className="nbops-ScheduleForm-hint">{EXAMPLES}</div>
      <fieldset className="nbops-ScheduleForm-stages">
        <legend>Stages</legend>
        {known === null ? <span className="nbops-ScheduleForm-hint">Loading stages…</span> : null}
        {known?.map(stage => (
          <label key={stage} className="nbops-check-label">
            <input
              type="checkbox"
              checked={stages.includes(stage)}
              onChange={() => toggle(stage)}
            />
            {stage}
          </label>
        ))}
        <span className="nbops-ScheduleForm-hint">
          {stages.length ? '' : 'none ticked: every stage of nbops.yaml'}
        </span>
      </fieldset>
      <label>
        <span>Catch-up</span>
        <select
          className="nbops-select"
          name="catchup"
          value={catchup}
          title={CATCHUP_HELP[catchup]}
          onChange={e => setCatchup(e.target.value as typeof catchup)}
        >
          {(['latest', 'none', 'all'] as const).map(c => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
      </label>
      <div className="nbops-ScheduleForm-hint">{CATCHUP_HELP[catchup]}</div>
      <label>
        <span>Time zone</span>
        <input
          className="nbops-input"
          name="timezone"
          value={timezone}
          placeholder="the server's local zone (e.g. Europe/Berlin)"
          onChange={e => setTimezone(e.target.value)}
        />
      </label>
      {error ? (
        <div className="nbops-error nbops-ScheduleForm-error" role="alert">
          {error}
        </div>
      ) : null}
      <div className="nbops-ScheduleForm-actions">
        <button type="button" className="nbops-button nbops-mod-small" onClick={props.onCancel}>
          Cancel
        </button>
        <button
          type="submit"
          className="nbops-button nbops-mod-accept nbops-mod-small"
          disabled={busy || !name.trim() || !cron.trim()}
        >
          {busy ? 'Adding…' : 'Add schedule'}
        </button>
      </div>
    </form>
  );
}
