/**
 * A run's lineage (GET runs/<id>/lineage, as `nbops lineage RUN`): stage, notebook, git commit,
 * params, data fingerprints and the upstream stage runs that wrote what it read, recursively;
 * and the "reproducible" badge from the tag nbops.verified that `nbops verify RUN` sets.
 */
import * as React from 'react';

import type { Lineage, LineageRun } from '../api.generated';
import { shortId } from '../format';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import { scheduleApi } from '../schedules/api';

/** The tag nbops.verified as a badge: reproducible, not reproducible, or not verified yet. */
export function VerifiedBadge(props: {
  verified: string | null | undefined;
  runId: string;
  at?: string | null;
}): JSX.Element {
  const { verified, runId } = props;
  const when = props.at ? ` (${props.at})` : '';
  if (verified === 'true') {
    return (
      <span
        className="nbops-Verified nbops-mod-true"
        data-verified="true"
        title={`nbops verify re-executed this run and got the same outputs and metrics${when}`}
      >
        ✓ reproducible
      </span>
    );
  }
  if (verified === 'false') {
    return (
      <span
        className="nbops-Verified nbops-mod-false"
        data-verified="false"
        title={`nbops verify re-executed this run and its outputs or metrics differed${when}`}
      >
        ✗ not reproducible
      </span>
    );
  }
  return (
    <span
      className="nbops-Verified nbops-mod-unknown"
      data-verified="absent"
      title={`Not verified yet: run \`nbops verify ${runId}\` in the project folder`}
    >
      not verified
    </span>
  );
}

function Digest(props: { value: string }): JSX.Element {
  return (
    <code className="nbops-Lineage-digest" title={props.value}>
      {props.value.slice(0, 12)}
    </code>
  );
}

function hasData(run: LineageRun): boolean {
  const d = run.data;
  return [d.deps, d.tracked, d.outs].some(values => Object.keys(values).length > 0);
}

function DataRows(props: { run: LineageRun }): JSX.Element | null {
  const rows: [string, string, string][] = [];
  for (const [label, values] of [
    ['reads', props.run.data.deps],
    ['tracked', props.run.data.tracked],
    ['writes', props.run.data.outs]
  ] as const) {
    for (const [path, digest] of Object.entries(values)) {
      rows.push([label, path, digest]);
    }
  }
  if (!rows.length) {
    return null;
  }
  return (
    <table className="nbops-Table nbops-mod-compact nbops-Lineage-data">
      <tbody>
        {rows.map(([label, path, digest]) => (
          <tr key={`${label}:${path}`}>
            <th>{label}</th>
            <td>{path}</td>
            <td>
              <Digest value={digest} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RunNode(props: { model: NbopsModel; run: LineageRun; depth: number }): JSX.Element {
  const { run, model } = props;
  const params = Object.entries(run.params);
  const git = run.git;
  return (
    <div className="nbops-Lineage-node" data-lineage-run={run.run_id}>
      <div className="nbops-Lineage-head">
        <button
          className="nbops-link"
          title={`Open run ${run.run_id}`}
          onClick={() => model.requestRun(run.run_id)}
        >
          {run.sweep_point || run.name || shortId(run.run_id)}
        </button>
        <span className="nbops-Lineage-status">{run.status}</span>
        <code className="nbops-Lineage-id">{shortId(run.run_id)}</code>
      </div>
      <dl className="nbops-Lineage-facts">
        <dt>stage</dt>
        <dd>
          {run.stage ?? '—'}
          {run.pipeline_run ? (
            <span className="nbops-Lineage-dim"> · pipeline run {shortId(run.pipeline_run)}</span>
          ) : null}
        </dd>
        {run.kind ? (
          <>
            <dt>kind</dt>
            <dd className="nbops-Lineage-kind">{run.kind}</dd>
          </>
        ) : null}
        <dt>notebook</dt>
        <dd title={run.executed_notebook ?? ''}>
          <code>{run.notebook ?? '—'}</code>
        </dd>
        <dt>git commit</dt>
        <dd>
          {git.commit ? (
            <>
              <code title={git.commit}>{git.commit.slice(0, 12)}</code>
              {git.branch ? <span className="nbops-Lineage-dim"> on {git.branch}</span> : null}
              {git.dirty === 'true' ? (
                <span className="nbops-Lineage-dirty" title="uncommitted changes when it ran">
                  {' '}
                  dirty
                </span>
              ) : null}
            </>
          ) : (
            <span className="nbops-Lineage-dim">not in a git work tree</span>
          )}
        </dd>
        <dt>params</dt>
        <dd>
          {params.length ? (
            <span className="nbops-Lineage-params">
              {params.map(([k, v]) => (
                <code key={k}>
                  {k}={v}
                </code>
              ))}
            </span>
          ) : (
            <span className="nbops-Lineage-dim">none</span>
          )}
        </dd>
        {run.models.length ? (
          <>
            <dt>models</dt>
            <dd>{run.models.join(', ')}</dd>
          </>
        ) : null}
        <dt>data</dt>
        <dd>
          {hasData(run) ? (
            <DataRows run={run} />
          ) : (
            <span className="nbops-Lineage-dim">
              no fingerprints recorded (declare the stage's deps and outs in nbops.yaml)
            </span>
          )}
        </dd>
      </dl>
      {run.upstream.length ? (
        <ul className="nbops-Lineage-upstream">
          {run.upstream.map(up => (
            <li key={`${up.dep}\u0000${up.run?.run_id ?? ''}`}>
              <div className="nbops-Lineage-edge">
                ← <code>{up.dep}</code>{' '}
                {up.files?.length ? (
                  <span className="nbops-Lineage-dim">({up.files.length} files) </span>
                ) : null}
                {up.run ? 'made by' : <span className="nbops-Lineage-dim">source data</span>}
              </div>
              {up.run ? <RunNode model={model} run={up.run} depth={props.depth + 1} /> : null}
            </li>
          ))}
        </ul>
      ) : null}
      {run.note ? <div className="nbops-Lineage-note nbops-Lineage-dim">{run.note}</div> : null}
      {run.upstream_cut ? <div className="nbops-Lineage-dim">(shown above)</div> : null}
    </div>
  );
}

/** The Lineage section of a run (fetched on mount and when `runId` changes). */
export function LineageSection(props: {
  model: NbopsModel;
  runId: string;
  /** show the reproducible badge in the heading (the run panel shows it in its header) */
  badge?: boolean;
}): JSX.Element {
  const [data, setData] = React.useState<Lineage | null>(null);
  const [error, setError] = React.useState<string | null>(null);

  React.useEffect(() => {
    let cancelled = false;
    setData(null);
    setError(null);
    scheduleApi
      .lineage(props.runId)
      .then(d => !cancelled && setData(d))
      .catch(e => !cancelled && setError(e instanceof ApiError ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
  }, [props.runId]);

  return (
    <section className="nbops-Section nbops-Lineage" aria-label="Lineage">
      <h3>
        Lineage
        {data && props.badge ? (
          <VerifiedBadge verified={data.verified} runId={props.runId} at={data.verified_at} />
        ) : null}
      </h3>
      {error ? (
        <div className="nbops-error" role="alert">
          {error}
        </div>
      ) : !data ? (
        <div className="nbops-loading">Walking the lineage…</div>
      ) : (
        <RunNode model={props.model} run={data.run} depth={0} />
      )}
    </section>
  );
}

/** In the Compare panel: the lineage of one of the compared runs, picked by a segmented switch. */
export function CompareLineage(props: {
  model: NbopsModel;
  runs: { run_id: string; run_name: string | null }[];
}): JSX.Element | null {
  const [picked, setPicked] = React.useState<string | null>(null);
  if (!props.runs.length) {
    return null;
  }
  const current = props.runs.find(r => r.run_id === picked) ?? props.runs[0];
  return (
    <div className="nbops-CompareLineage">
      <div className="nbops-Segmented nbops-CompareLineage-picker" aria-label="Lineage of">
        {props.runs.map(r => (
          <button
            key={r.run_id}
            aria-pressed={r.run_id === current.run_id}
            onClick={() => setPicked(r.run_id)}
          >
            {r.run_name || shortId(r.run_id)}
          </button>
        ))}
      </div>
      <LineageSection model={props.model} runId={current.run_id} badge />
    </div>
  );
}
