/** One metric's history for several runs, overlaid (uPlot: canvas, fast with many series). */
import * as React from 'react';
import uPlot from 'uplot';

import { formatNumber } from '../format';
import { chartTheme, onThemeChange, seriesColor } from './palette';

export interface ChartSeries {
  label: string;
  colorIndex: number;
  points: Array<[number, number | null]>;
}

/** Aligns the series on the union of their steps (gaps where a run has no value). */
export function alignSeries(series: ChartSeries[]): uPlot.AlignedData {
  const steps = Array.from(new Set(series.flatMap(s => s.points.map(p => p[0])))).sort(
    (a, b) => a - b
  );
  const index = new Map(steps.map((s, i) => [s, i]));
  const columns = series.map(s => {
    const ys: Array<number | null> = new Array(steps.length).fill(null);
    for (const [step, value] of s.points) {
      ys[index.get(step) as number] = value;
    }
    return ys;
  });
  return [steps, ...columns] as uPlot.AlignedData;
}

export function MetricChart(props: { metric: string; series: ChartSeries[] }): JSX.Element {
  const host = React.useRef<HTMLDivElement>(null);
  const [themeTick, setThemeTick] = React.useState(0);
  const [log, setLog] = React.useState(false);
  const positive = props.series.every(s => s.points.every(p => p[1] === null || p[1] > 0));

  React.useEffect(() => onThemeChange(() => setThemeTick(t => t + 1)), []);

  React.useEffect(() => {
    const el = host.current;
    if (!el) {
      return;
    }
    const theme = chartTheme();
    const axis = (label: string): uPlot.Axis => ({
      label,
      stroke: theme.text,
      font: theme.font,
      labelFont: theme.font,
      grid: { stroke: theme.grid, width: 1 },
      ticks: { stroke: theme.grid, width: 1 },
      values: label === 'step' ? undefined : (_u, vals) => vals.map(v => formatNumber(v))
    });
    const single = props.series.every(s => s.points.length <= 1);
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 200,
      scales: { x: { time: false }, y: log && positive ? { distr: 3 } : {} },
      axes: [axis('step'), axis('')],
      legend: { show: true, live: true },
      cursor: { points: { size: 6 } },
      series: [
        { label: 'step' },
        ...props.series.map(s => ({
          label: s.label,
          stroke: seriesColor(s.colorIndex),
          width: 2,
          spanGaps: true,
          points: { show: single || undefined, size: 6 },
          value: (_u: uPlot, v: number | null) => (v === null ? '–' : formatNumber(v))
        }))
      ]
    };
    const plot = new uPlot(opts, alignSeries(props.series), el);
    const resize = new ResizeObserver(() => {
      plot.setSize({ width: Math.max(200, el.clientWidth), height: 200 });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.series, themeTick, log]);

  return (
    <figure className="nbops-Chart" data-metric={props.metric}>
      <figcaption>
        <span>{props.metric}</span>
        {positive ? (
          <label className="nbops-Chart-log" title="Logarithmic y axis">
            <input type="checkbox" checked={log} onChange={() => setLog(l => !l)} /> log
          </label>
        ) : null}
      </figcaption>
      <div className="nbops-Chart-plot" ref={host} />
    </figure>
  );
}
