/** The run table's columns: fixed ones, then the chosen `params.*` / `metrics.*` columns. */
import { formatCompact, formatDuration, formatStart } from '../format';
import type { RunSummary } from '../types';

export interface Column {
  id: string;
  label: string;
  title: string;
  width: string;
  /** MLflow order_by field, or null when the column is sorted on the loaded rows only. */
  orderBy: string | null;
  numeric: boolean;
  text(run: RunSummary): string;
  /** The value sorted on in the browser. */
  value(run: RunSummary): number | string | null;
}

/** MLflow key quoting: backticks when the key is not a plain identifier. */
export function quoteKey(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : `\`${key.replace(/`/g, '')}\``;
}

export const FIXED_COLUMNS: Column[] = [
  {
    id: 'name',
    label: 'Run',
    title: 'Run name',
    width: 'minmax(110px, 2fr)',
    orderBy: 'attributes.run_name',
    numeric: false,
    text: r => r.run_name || r.run_id.slice(0, 8),
    value: r => r.run_name
  },
  {
    id: 'start',
    label: 'Start',
    title: 'Start time',
    width: '56px',
    orderBy: 'attributes.start_time',
    numeric: true,
    text: r => formatStart(r.start_time),
    value: r => r.start_time
  },
  {
    id: 'duration',
    label: 'Took',
    title: 'Duration (sorted among the loaded runs)',
    width: '52px',
    orderBy: null,
    numeric: true,
    text: r =>
      formatDuration(
        r.duration_s ?? (r.status === 'RUNNING' && r.start_time ? (Date.now() - r.start_time) / 1000 : null)
      ),
    value: r => r.duration_s
  }
];

export function dataColumn(spec: string): Column | null {
  const m = /^(params|metrics)\.(.+)$/.exec(spec);
  if (!m) {
    return null;
  }
  const [, kind, key] = m;
  if (kind === 'metrics') {
    return {
      id: spec,
      label: key,
      title: `metric ${key} (latest value)`,
      width: 'minmax(72px, 0.8fr)',
      orderBy: `metrics.${quoteKey(key)}`,
      numeric: true,
      text: r => formatCompact(r.metrics[key]),
      value: r => r.metrics[key] ?? null
    };
  }
  return {
    id: spec,
    label: key,
    title: `param ${key}`,
    width: 'minmax(44px, 0.6fr)',
    orderBy: `params.${quoteKey(key)}`,
    numeric: false,
    text: r => r.params[key] ?? '',
    value: r => r.params[key] ?? null
  };
}

/**
 * The columns shown when the settings choose none: two metrics, then the params whose values
 * vary among the loaded runs (those that tell runs apart), else the first params.
 */
export function defaultColumnSpecs(
  metricKeys: string[],
  paramKeys: string[],
  runs: RunSummary[] = []
): string[] {
  const varying = paramKeys.filter(
    k => new Set(runs.filter(r => k in r.params).map(r => r.params[k])).size > 1
  );
  const params = (varying.length ? varying : paramKeys).slice(0, 2);
  return [...metricKeys.slice(0, 2).map(k => `metrics.${k}`), ...params.map(k => `params.${k}`)];
}
