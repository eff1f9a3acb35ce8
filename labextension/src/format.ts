/** Small formatting helpers for times, durations and numbers. */

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  }
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) {
    return `${m}m ${s.toString().padStart(2, '0')}s`;
  }
  const h = Math.floor(m / 60);
  return `${h}h ${(m % 60).toString().padStart(2, '0')}m`;
}

/** "14:02" today, "Mon 14:02" this week, "2026-11-03" before that. */
export function formatStart(ms: number | null | undefined, now: number = Date.now()): string {
  if (!ms) {
    return '';
  }
  const d = new Date(ms);
  const hm = `${d.getHours().toString().padStart(2, '0')}:${d
    .getMinutes()
    .toString()
    .padStart(2, '0')}`;
  const today = new Date(now);
  if (d.toDateString() === today.toDateString()) {
    return hm;
  }
  if (now - ms < 6 * 24 * 3600 * 1000) {
    return `${d.toLocaleDateString(undefined, { weekday: 'short' })} ${hm}`;
  }
  return d.toISOString().slice(0, 10);
}

export function formatRelative(ms: number | null | undefined, now: number = Date.now()): string {
  if (!ms) {
    return 'never';
  }
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) {
    return 'just now';
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ago`;
  }
  return `${Math.floor(s / 86400)} d ago`;
}

export function formatFullTime(ms: number | null | undefined): string {
  return ms ? new Date(ms).toLocaleString() : '';
}

/** Metric values: 4 significant digits, no exponent for everyday magnitudes. */
export function formatNumber(v: number | null | undefined): string {
  if (v === null || v === undefined) {
    return '';
  }
  if (!isFinite(v)) {
    return String(v);
  }
  if (Number.isInteger(v) && Math.abs(v) < 1e9) {
    return String(v);
  }
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return v.toExponential(3);
  }
  return Number(v.toPrecision(4)).toString();
}

export function shortId(runId: string): string {
  return runId.slice(0, 8);
}

/** A run's label: its name, else its short id. */
export function runLabel(run: { run_name: string | null; run_id: string }): string {
  return run.run_name || shortId(run.run_id);
}

/** Metric values in narrow table cells: 3 significant digits. */
export function formatCompact(v: number | null | undefined): string {
  if (v === null || v === undefined || !isFinite(v) || (Number.isInteger(v) && Math.abs(v) < 1e6)) {
    return formatNumber(v);
  }
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return v.toExponential(2);
  }
  return Number(v.toPrecision(3)).toString();
}

/** Param text from the form back to a typed value: numbers, booleans, None; else the text. */
export function parseParamValue(text: string): unknown {
  const t = text.trim();
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) {
    return Number(t);
  }
  if (t === 'True' || t === 'true') {
    return true;
  }
  if (t === 'False' || t === 'false') {
    return false;
  }
  if (t === 'None' || t === 'null') {
    return null;
  }
  return text;
}
