/** What a new user sees instead of an empty table: what to do next. */
import * as React from 'react';

export function NoRunsYet(): JSX.Element {
  return (
    <div className="nbops-empty" data-empty="no-runs">
      <p className="nbops-empty-title">No runs yet</p>
      <p>Record your first runs, then they show up here:</p>
      <ul>
        <li>
          in a terminal: <code>nbops demo</code> (an example pipeline, about a minute)
        </li>
        <li>
          in a notebook: <code>%load_ext nbops</code> then <code>%track start</code>
        </li>
        <li>
          or declare stages in <code>nbops.yaml</code> and run <code>nbops run</code>
        </li>
      </ul>
    </div>
  );
}

export function NoMatch(props: { filter: string; onClear(): void }): JSX.Element {
  return (
    <div className="nbops-empty" data-empty="no-match">
      <p className="nbops-empty-title">No run matches</p>
      <p>
        <code>{props.filter}</code>
      </p>
      <button className="nbops-button" onClick={props.onClear}>
        Clear the filter
      </button>
    </div>
  );
}

export function ErrorBox(props: { message: string; onRetry?: () => void }): JSX.Element {
  return (
    <div className="nbops-error" role="alert">
      <span>{props.message}</span>
      {props.onRetry ? (
        <button className="nbops-button nbops-mod-small" onClick={props.onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}
