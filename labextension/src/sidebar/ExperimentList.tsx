/** The experiments of the store, newest activity first; one is chosen at a time. */
import * as React from 'react';

import { formatRelative } from '../format';
import type { Experiment } from '../types';

export function ExperimentList(props: {
  experiments: Experiment[];
  selected: string | null;
  onSelect(id: string): void;
}): JSX.Element {
  return (
    <ul className="nbops-ExperimentList" role="listbox" aria-label="experiments">
      {props.experiments.map(e => (
        <li
          key={e.experiment_id}
          role="option"
          aria-selected={e.experiment_id === props.selected}
          data-experiment-id={e.experiment_id}
          className={e.experiment_id === props.selected ? 'nbops-mod-selected' : ''}
          title={`experiment ${e.name} (id ${e.experiment_id})`}
          onClick={() => props.onSelect(e.experiment_id)}
        >
          <span className="nbops-ExperimentList-name">{e.name}</span>
          <span className="nbops-ExperimentList-count">{e.run_count}</span>
          <span className="nbops-ExperimentList-time">{formatRelative(e.last_run_time)}</span>
        </li>
      ))}
    </ul>
  );
}

/** Newest activity first; experiments without runs last. */
export function sortExperiments(experiments: Experiment[]): Experiment[] {
  // MLflow's empty "Default" experiment is noise once there are others
  const shown = experiments.filter(
    e => !(e.name === 'Default' && e.run_count === 0 && experiments.length > 1)
  );
  return shown.sort(
    (a, b) => (b.last_run_time ?? 0) - (a.last_run_time ?? 0) || a.name.localeCompare(b.name)
  );
}
