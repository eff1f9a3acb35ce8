/**
 * For sweeps: each numeric param that differs against each metric, one dot per run (in the
 * run's colour), so "which lr gave the best accuracy" reads at a glance. Plain SVG.
 */
import * as React from 'react';

import { formatCompact, formatNumber, runLabel } from '../format';
import type { CompareResponse } from '../types';
import { seriesColor } from './palette';

const W = 230;
const H = 150;
const PAD = { l: 52, r: 12, t: 8, b: 28 };

interface Point {
  x: number;
  y: number;
  index: number;
  label: string;
}

function numericParams(data: CompareResponse): string[] {
  return Object.keys(data.params_differ)
    .filter(k => {
      const vs = Object.values(data.params_differ[k]).filter(v => v !== null);
      return vs.length >= 2 && vs.every(v => v !== null && isFinite(Number(v)) && v.trim() !== '');
    })
    .sort();
}

function scale(values: number[], log: boolean): (v: number) => number {
  const vs = log ? values.map(Math.log10) : values;
  let lo = Math.min(...vs);
  let hi = Math.max(...vs);
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const pad = (hi - lo) * 0.08;
  return v => ((log ? Math.log10(v) : v) - (lo - pad)) / (hi - lo + 2 * pad);
}

function ticks(values: number[]): number[] {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo === hi ? [lo] : [lo, hi];
}

function Scatter(props: { param: string; metric: string; points: Point[] }): JSX.Element {
  const xs = props.points.map(p => p.x);
  const ys = props.points.map(p => p.y);
  const logX = xs.every(x => x > 0) && Math.max(...xs) / Math.min(...xs) >= 100;
  const sx = scale(xs, logX);
  const sy = scale(ys, false);
  const px = (v: number): number => PAD.l + sx(v) * (W - PAD.l - PAD.r);
  const py = (v: number): number => H - PAD.b - sy(v) * (H - PAD.t - PAD.b);
  return (
    <figure className="nbops-Scatter" data-param={props.param} data-metric={props.metric}>
      <svg width={W} height={H} role="img" aria-label={`${props.metric} against ${props.param}`}>
        <line className="nbops-Scatter-axis" x1={PAD.l} y1={H - PAD.b} x2={W - PAD.r} y2={H - PAD.b} />
        <line className="nbops-Scatter-axis" x1={PAD.l} y1={PAD.t} x2={PAD.l} y2={H - PAD.b} />
        {ticks(xs).map(t => (
          <text key={`x${t}`} className="nbops-Scatter-tick" x={px(t)} y={H - PAD.b + 12} textAnchor="middle">
            {formatCompact(t)}
          </text>
        ))}
        {ticks(ys).map(t => (
          <text key={`y${t}`} className="nbops-Scatter-tick" x={PAD.l - 4} y={py(t) + 3} textAnchor="end">
            {formatCompact(t)}
          </text>
        ))}
        <text className="nbops-Scatter-label" x={(PAD.l + W - PAD.r) / 2} y={H - 3} textAnchor="middle">
          {props.param}
          {logX ? ' (log)' : ''}
        </text>
        {props.points.map(p => (
          <circle key={p.index} cx={px(p.x)} cy={py(p.y)} r={5} style={{ fill: seriesColor(p.index) }}>
            <title>{`${p.label}: ${props.param} = ${formatNumber(p.x)}, ${props.metric} = ${formatNumber(p.y)}`}</title>
          </circle>
        ))}
      </svg>
      <figcaption>{props.metric}</figcaption>
    </figure>
  );
}

export function ParamScatter(props: { data: CompareResponse }): JSX.Element | null {
  const { data } = props;
  const params = numericParams(data).slice(0, 2);
  const metrics = Object.keys(data.metrics).sort().slice(0, 4);
  if (data.runs.length < 3 || !params.length || !metrics.length) {
    return null;
  }
  return (
    <section className="nbops-Section nbops-Scatters">
      <h3>
        Params against metrics <span className="nbops-count">one dot per run</span>
      </h3>
      {params.map(param => (
        <div key={param} className="nbops-Scatter-row">
          {metrics.map(metric => {
            const points: Point[] = [];
            data.runs.forEach((r, index) => {
              const x = data.params_differ[param][r.run_id];
              const y = data.metrics[metric][r.run_id];
              if (x !== null && x !== undefined && y !== null && y !== undefined) {
                points.push({ x: Number(x), y, index, label: runLabel(r) });
              }
            });
            return points.length >= 2 ? (
              <Scatter key={metric} param={param} metric={metric} points={points} />
            ) : null;
          })}
        </div>
      ))}
    </section>
  );
}
