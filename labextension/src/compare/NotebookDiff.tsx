/** The executed notebooks' cell diff of two runs (GET diff?a&b), side by side or unified. */
import * as React from 'react';

import { api } from '../api';
import { runLabel } from '../format';
import { ApiError } from '../request';
import type { DiffView } from '../settings';
import type { DiffCell, DiffChunk, DiffResponse, RunSummary } from '../types';

/** Text of one side: equal chunks plus the side's own (deleted for A, inserted for B). */
function Side(props: { chunks: DiffChunk[]; side: 'a' | 'b' }): JSX.Element {
  const own = props.side === 'a' ? 'delete' : 'insert';
  return (
    <pre className="nbops-Diff-source">
      {props.chunks
        .filter(c => c.op === 'equal' || c.op === own)
        .map((c, i) =>
          c.op === 'equal' ? (
            <span key={i}>{c.text}</span>
          ) : c.op === 'insert' ? (
            <ins key={i}>{c.text}</ins>
          ) : (
            <del key={i}>{c.text}</del>
          )
        )}
    </pre>
  );
}

function Unified(props: { chunks: DiffChunk[] }): JSX.Element {
  return (
    <pre className="nbops-Diff-source">
      {props.chunks.map((c, i) =>
        c.op === 'equal' ? (
          <span key={i}>{c.text}</span>
        ) : c.op === 'insert' ? (
          <ins key={i}>{c.text}</ins>
        ) : (
          <del key={i}>{c.text}</del>
        )
      )}
    </pre>
  );
}

function chunksOf(cell: DiffCell): DiffChunk[] {
  if (cell.source_diff.length) {
    return cell.source_diff;
  }
  if (cell.status === 'added') {
    return [{ op: 'insert', text: cell.source_b ?? '' }];
  }
  if (cell.status === 'removed') {
    return [{ op: 'delete', text: cell.source_a ?? '' }];
  }
  return [{ op: 'equal', text: cell.source_a ?? cell.source_b ?? '' }];
}

function Outputs(props: { cell: DiffCell; view: DiffView }): JSX.Element | null {
  const { outputs_a: a, outputs_b: b } = props.cell;
  if (!a && !b) {
    return null;
  }
  if (a === b) {
    return (
      <details className="nbops-Diff-outputs">
        <summary>outputs (same)</summary>
        <pre>{a}</pre>
      </details>
    );
  }
  return (
    <div className={`nbops-Diff-outputs nbops-mod-changed nbops-Diff-${props.view}`}>
      <div className="nbops-Diff-outputs-label">outputs changed</div>
      <div className="nbops-Diff-pair">
        <pre className="nbops-Diff-out-a">{a ?? ''}</pre>
        <pre className="nbops-Diff-out-b">{b ?? ''}</pre>
      </div>
    </div>
  );
}

function CellView(props: { cell: DiffCell; index: number; view: DiffView }): JSX.Element {
  const { cell, view } = props;
  const chunks = chunksOf(cell);
  const sourceSame = cell.status === 'modified' && chunks.every(c => c.op === 'equal');
  const sideBySide = view === 'side-by-side' && cell.status === 'modified' && !sourceSame;
  return (
    <div className={`nbops-Diff-cell nbops-Diff-${cell.status}`} data-status={cell.status}>
      <div className="nbops-Diff-cellhead">
        <span className="nbops-Diff-badge">{cell.status}</span>
        <span className="nbops-Diff-type">
          {cell.cell_type} cell {props.index + 1}
          {sourceSame ? ' · same source, outputs differ' : ''}
        </span>
      </div>
      {sourceSame ? (
        <details className="nbops-Diff-same-source">
          <summary>source ({(cell.source_a ?? '').split('\n').length} lines, unchanged)</summary>
          <Unified chunks={chunks} />
        </details>
      ) : sideBySide ? (
        <div className="nbops-Diff-pair">
          <Side chunks={chunks} side="a" />
          <Side chunks={chunks} side="b" />
        </div>
      ) : (
        <Unified chunks={chunks} />
      )}
      <Outputs cell={cell} view={view} />
    </div>
  );
}

/** Runs of unchanged cells folded into one expandable line. */
function Folded(props: { cells: DiffCell[]; start: number; view: DiffView }): JSX.Element {
  return (
    <details className="nbops-Diff-fold">
      <summary>
        {props.cells.length} unchanged cell{props.cells.length === 1 ? '' : 's'}
      </summary>
      {props.cells.map((c, i) => (
        <CellView key={i} cell={c} index={props.start + i} view={props.view} />
      ))}
    </details>
  );
}

export function NotebookDiff(props: { runs: RunSummary[]; defaultView: DiffView }): JSX.Element {
  const { runs } = props;
  const [a, setA] = React.useState(runs[0]?.run_id ?? '');
  const [b, setB] = React.useState(runs[1]?.run_id ?? '');
  const [view, setView] = React.useState<DiffView>(props.defaultView);
  const [diff, setDiff] = React.useState<DiffResponse | null>(null);
  const [error, setError] = React.useState<string | null>(null);

  React.useEffect(() => {
    if (!runs.some(r => r.run_id === a)) {
      setA(runs[0]?.run_id ?? '');
    }
    if (!runs.some(r => r.run_id === b)) {
      setB(runs[1]?.run_id ?? '');
    }
  }, [runs]);

  React.useEffect(() => {
    if (!a || !b) {
      return;
    }
    let cancelled = false;
    setDiff(null);
    setError(null);
    api
      .diff(a, b)
      .then(d => !cancelled && setDiff(d))
      .catch(e => !cancelled && setError(e instanceof ApiError ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
  }, [a, b]);

  const picker = (value: string, set: (v: string) => void, label: string): JSX.Element => (
    <select className="nbops-select" aria-label={label} value={value} onChange={e => set(e.target.value)}>
      {runs.map(r => (
        <option key={r.run_id} value={r.run_id}>
          {runLabel(r)}
        </option>
      ))}
    </select>
  );

  const counts = { modified: 0, added: 0, removed: 0, unchanged: 0 };
  diff?.cells.forEach(c => (counts[c.status] += 1));

  const blocks: JSX.Element[] = [];
  if (diff) {
    let i = 0;
    while (i < diff.cells.length) {
      if (diff.cells[i].status === 'unchanged') {
        const start = i;
        while (i < diff.cells.length && diff.cells[i].status === 'unchanged') {
          i++;
        }
        blocks.push(<Folded key={`f${start}`} cells={diff.cells.slice(start, i)} start={start} view={view} />);
      } else {
        blocks.push(<CellView key={i} cell={diff.cells[i]} index={i} view={view} />);
        i++;
      }
    }
  }

  return (
    <section className="nbops-Section nbops-Diff">
      <h3>Notebook diff</h3>
      <div className="nbops-Diff-controls">
        {picker(a, setA, 'notebook A')}
        <span>→</span>
        {picker(b, setB, 'notebook B')}
        <div className="nbops-Segmented" role="group" aria-label="diff layout">
          {(['side-by-side', 'unified'] as DiffView[]).map(v => (
            <button key={v} aria-pressed={view === v} onClick={() => setView(v)}>
              {v}
            </button>
          ))}
        </div>
        {diff ? (
          <span className="nbops-count">
            {counts.modified} modified · {counts.added} added · {counts.removed} removed ·{' '}
            {counts.unchanged} unchanged
          </span>
        ) : null}
      </div>
      {error ? <p className="nbops-note">{error}</p> : null}
      {!diff && !error ? <p className="nbops-note">Diffing the executed notebooks…</p> : null}
      {diff && a === b ? <p className="nbops-note">Pick two different runs.</p> : null}
      {diff ? <div className="nbops-Diff-cells">{blocks}</div> : null}
    </section>
  );
}
