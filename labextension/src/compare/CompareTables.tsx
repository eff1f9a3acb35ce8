/** The compared runs (chips), the params that differ (same ones folded) and the metrics table. */
import * as React from 'react';

import { formatDuration, formatNumber, formatStart, runLabel, shortId } from '../format';
import type { CompareResponse, RunSummary } from '../types';
import { seriesColor } from './palette';

export function RunChips(props: { runs: RunSummary[] }): JSX.Element {
  return (
    <div className="nbops-RunChips">
      {props.runs.map((r, i) => (
        <span key={r.run_id} className="nbops-RunChip" data-run-id={r.run_id} title={r.run_id}>
          <span className="nbops-swatch" style={{ background: seriesColor(i) }} />
          <span className={`nbops-status nbops-status-${r.status.toLowerCase()}`} title={r.status} />
          <strong>{runLabel(r)}</strong>
          <span className="nbops-RunChip-meta">
            {shortId(r.run_id)} · {formatStart(r.start_time)}
            {r.duration_s !== null ? ` · ${formatDuration(r.duration_s)}` : ''}
            {r.stage ? ` · stage ${r.stage}` : ''}
            {r.rerun_of ? ` · re-run of ${shortId(r.rerun_of)}` : ''}
          </span>
        </span>
      ))}
    </div>
  );
}

function RunHeads(props: { runs: RunSummary[]; first: string }): JSX.Element {
  return (
    <tr>
      <th>{props.first}</th>
      {props.runs.map((r, i) => (
        <th key={r.run_id} title={r.run_id}>
          <span className="nbops-swatch" style={{ background: seriesColor(i) }} />
          {runLabel(r)}
        </th>
      ))}
    </tr>
  );
}

export function ParamsTable(props: { data: CompareResponse }): JSX.Element {
  const { runs, params_differ, params_same } = props.data;
  const differ = Object.keys(params_differ).sort();
  const same = Object.keys(params_same).sort();
  const baseline = runs[0]?.run_id;
  return (
    <section className="nbops-Section nbops-Params">
      <h3>
        Params <span className="nbops-count">{differ.length} differ</span>
      </h3>
      {differ.length ? (
        <div className="nbops-TableScroll">
          <table className="nbops-Table">
            <thead>
              <RunHeads runs={runs} first="param" />
            </thead>
            <tbody>
              {differ.map(key => {
                const values = params_differ[key];
                return (
                  <tr key={key} className="nbops-param-differ" data-param={key}>
                    <th scope="row">{key}</th>
                    {runs.map(r => {
                      const v = values[r.run_id];
                      const changed = r.run_id !== baseline && v !== values[baseline];
                      return (
                        <td
                          key={r.run_id}
                          className={changed ? 'nbops-mod-changed' : ''}
                          title={changed ? `differs from ${runLabel(runs[0])}` : ''}
                        >
                          {v === null || v === undefined ? <span className="nbops-missing">—</span> : v}
                        </td>
                      );
                    })}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : (
        <p className="nbops-note">All params are the same.</p>
      )}
      {same.length ? (
        <details className="nbops-Same">
          <summary>
            {same.length} identical param{same.length === 1 ? '' : 's'}
          </summary>
          <table className="nbops-Table nbops-mod-compact">
            <tbody>
              {same.map(key => (
                <tr key={key} data-param={key}>
                  <th scope="row">{key}</th>
                  <td>{params_same[key]}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      ) : null}
    </section>
  );
}

export function MetricsTable(props: { data: CompareResponse }): JSX.Element {
  const { runs, metrics, best } = props.data;
  const keys = Object.keys(metrics).sort();
  const baseline = runs[0]?.run_id;
  return (
    <section className="nbops-Section nbops-Metrics">
      <h3>
        Metrics <span className="nbops-count">latest values · ★ best · Δ vs {runs[0] ? runLabel(runs[0]) : ''}</span>
      </h3>
      {keys.length ? (
        <div className="nbops-TableScroll">
          <table className="nbops-Table">
            <thead>
              <RunHeads runs={runs} first="metric" />
            </thead>
            <tbody>
              {keys.map(key => {
                const values = metrics[key];
                const base = values[baseline];
                return (
                  <tr key={key} data-metric={key}>
                    <th scope="row">{key}</th>
                    {runs.map(r => {
                      const v = values[r.run_id];
                      const isBest = best[key] === r.run_id;
                      const delta =
                        r.run_id !== baseline && v !== null && v !== undefined && base !== null && base !== undefined
                          ? v - base
                          : null;
                      return (
                        <td
                          key={r.run_id}
                          className={`nbops-mod-numeric${isBest ? ' nbops-best' : ''}`}
                          title={isBest ? 'best value' : ''}
                        >
                          {v === null || v === undefined ? (
                            <span className="nbops-missing">—</span>
                          ) : (
                            <>
                              {isBest ? <span className="nbops-star">★ </span> : null}
                              {formatNumber(v)}
                              {delta !== null && delta !== 0 ? (
                                <span className={`nbops-delta ${delta > 0 ? 'nbops-up' : 'nbops-down'}`}>
                                  {delta > 0 ? '+' : ''}
                                  {formatNumber(delta)}
                                </span>
                              ) : null}
                            </>
                          )}
                        </td>
                      );
                    })}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : (
        <p className="nbops-note">These runs logged no metrics.</p>
      )}
    </section>
  );
}
