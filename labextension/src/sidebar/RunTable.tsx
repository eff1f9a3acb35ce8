/**
 * A virtualised run table: only the rows in view (plus a margin) are in the DOM, so tens of
 * thousands of runs scroll smoothly; reaching the end asks for the next page.
 */
import * as React from 'react';

import { formatDuration, formatFullTime } from '../format';
import type { RunSummary } from '../types';
import type { Column } from './columns';

export const ROW_HEIGHT = 28;
const OVERSCAN = 8;

export interface SortState {
  column: string;
  desc: boolean;
}

export interface RunTableProps {
  runs: RunSummary[];
  columns: Column[];
  selection: string[];
  sort: SortState;
  loading: boolean;
  hasMore: boolean;
  highlight: string | null;
  onToggle(runId: string): void;
  /** Double-click: open the run on its own. */
  onOpen(runId: string): void;
  onToggleAll(): void;
  onSort(column: string): void;
  onEndReached(): void;
}

function StatusDot({ status }: { status: RunSummary['status'] }): JSX.Element {
  return (
    <span
      className={`nbops-status nbops-status-${status.toLowerCase()}`}
      title={status}
      aria-label={status}
    />
  );
}

function tooltip(run: RunSummary): string {
  const lines = [
    `${run.run_name || '(no name)'}  ${run.run_id}`,
    `status: ${run.status}`,
    `started: ${formatFullTime(run.start_time)}`
  ];
  if (run.duration_s !== null) {
    lines.push(`duration: ${formatDuration(run.duration_s)}`);
  }
  if (run.stage) {
    lines.push(`stage: ${run.stage}`);
  }
  if (run.notebook) {
    lines.push(`notebook: ${run.notebook}`);
  }
  if (run.rerun_of) {
    lines.push(`re-run of: ${run.rerun_of}`);
  }
  lines.push('click: select · double-click: open the run');
  return lines.join('\n');
}

/** How deep each run sits under loaded parents (pipeline -> stage -> sweep point). */
function nestingDepths(runs: RunSummary[]): Map<string, number> {
  const parent = new Map(runs.map(r => [r.run_id, r.parent_run_id]));
  const out = new Map<string, number>();
  for (const r of runs) {
    let d = 0;
    let p = r.parent_run_id;
    while (p && parent.has(p) && d < 4) {
      d += 1;
      p = parent.get(p) ?? null;
    }
    out.set(r.run_id, d);
  }
  return out;
}

export function RunTable(props: RunTableProps): JSX.Element {
  const { runs, columns, selection, sort } = props;
  const scroller = React.useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = React.useState(0);
  const [height, setHeight] = React.useState(400);

  React.useEffect(() => {
    const el = scroller.current;
    if (!el) {
      return;
    }
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    setHeight(el.clientHeight);
    return () => observer.disconnect();
  }, []);

  // Ask for the next page when the last rows come into view (also when the first page is short).
  React.useEffect(() => {
    const shownTo = scrollTop + height;
    if (props.hasMore && !props.loading && shownTo > (runs.length - OVERSCAN) * ROW_HEIGHT) {
      props.onEndReached();
    }
  }, [scrollTop, height, runs.length, props.hasMore, props.loading]);

  // Bring a highlighted (new) run into view.
  React.useEffect(() => {
    const el = scroller.current;
    const index = props.highlight ? runs.findIndex(r => r.run_id === props.highlight) : -1;
    if (el && index >= 0) {
      const top = index * ROW_HEIGHT;
      if (top < el.scrollTop || top > el.scrollTop + el.clientHeight - 2 * ROW_HEIGHT) {
        el.scrollTop = Math.max(0, top - ROW_HEIGHT * 2);
      }
    }
  }, [props.highlight, runs]);

  const template = `26px 14px ${columns.map(c => c.width).join(' ')}`;
  // Narrow sidebars scroll sideways instead of squeezing columns below their minimum.
  const minWidth = 40 + columns.reduce((w, c) => w + Number(/\d+/.exec(c.width)?.[0] ?? 60), 0);
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(runs.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
  const allSelected = runs.length > 0 && runs.every(r => selection.includes(r.run_id));
  const depth = React.useMemo(() => nestingDepths(runs), [runs]);

  const rows: JSX.Element[] = [];
  for (let i = first; i < last; i++) {
    const run = runs[i];
    const selected = selection.includes(run.run_id);
    const classes = ['nbops-RunTable-row'];
    if (selected) {
      classes.push('nbops-mod-selected');
    }
    if (run.run_id === props.highlight) {
      classes.push('nbops-mod-highlight');
    }
    rows.push(
      <div
        key={run.run_id}
        className={classes.join(' ')}
        role="row"
        aria-selected={selected}
        data-run-id={run.run_id}
        title={tooltip(run)}
        style={{ top: i * ROW_HEIGHT, height: ROW_HEIGHT, gridTemplateColumns: template, minWidth }}
        onClick={() => props.onToggle(run.run_id)}
        onDoubleClick={() => props.onOpen(run.run_id)}
      >
        <span className="nbops-RunTable-check">
          <input
            type="checkbox"
            checked={selected}
            aria-label={`select ${run.run_name || run.run_id}`}
            onClick={e => e.stopPropagation()}
            onChange={() => props.onToggle(run.run_id)}
          />
        </span>
        <StatusDot status={run.status} />
        {columns.map(c => (
          <span
            key={c.id}
            className={`nbops-RunTable-cell${c.numeric ? ' nbops-mod-numeric' : ''}`}
            data-column={c.id}
            style={c.id === 'name' && depth.get(run.run_id) ? { paddingLeft: 6 + 10 * (depth.get(run.run_id) ?? 0) } : undefined}
          >
            {c.id === 'name' && run.rerun_of ? <span className="nbops-rerun-mark">↻ </span> : null}
            {c.id === 'name' && run.stage && !(run.run_name ?? '').startsWith(run.stage) ? (
              <span className="nbops-stage-chip">{run.stage}</span>
            ) : null}
            {c.text(run)}
          </span>
        ))}
      </div>
    );
  }

  const header = (
    <div className="nbops-RunTable-header" role="row" style={{ gridTemplateColumns: template, minWidth }}>
      <span className="nbops-RunTable-check">
        <input
          type="checkbox"
          checked={allSelected}
          aria-label="select all loaded runs"
          onChange={() => props.onToggleAll()}
        />
      </span>
      <span title="status" />
      {columns.map(c => (
        <button
          key={c.id}
          className={`nbops-RunTable-sort${c.numeric ? ' nbops-mod-numeric' : ''}${
            sort.column === c.id ? ' nbops-mod-sorted' : ''
          }`}
          title={`${c.title}: click to sort`}
          data-column={c.id}
          onClick={() => props.onSort(c.id)}
        >
          {c.label}
          {sort.column === c.id ? (sort.desc ? ' ▾' : ' ▴') : ''}
        </button>
      ))}
    </div>
  );

  return (
    <div
      className="nbops-RunTable"
      role="table"
      aria-rowcount={runs.length}
      ref={scroller}
      onScroll={e => setScrollTop((e.target as HTMLDivElement).scrollTop)}
    >
      {header}
      <div
        className="nbops-RunTable-canvas"
        style={{ minWidth, height: runs.length * ROW_HEIGHT + (props.loading ? ROW_HEIGHT : 0) }}
      >
        {rows}
        {props.loading ? (
          <div
            className="nbops-RunTable-loading"
            style={{ top: runs.length * ROW_HEIGHT, height: ROW_HEIGHT }}
          >
            Loading runs…
          </div>
        ) : null}
      </div>
    </div>
  );
}
