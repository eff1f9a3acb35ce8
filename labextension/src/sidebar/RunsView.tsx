/**
 * Experiments, the filter box and the run table, with paging, sorting, column choice and
 * auto-refresh while runs are RUNNING or a re-run is in flight.
 */
import * as React from 'react';

import { api } from '../api';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import type { NbopsSettings } from '../settings';
import type { Experiment, RunSummary } from '../types';
import { Column, FIXED_COLUMNS, dataColumn, defaultColumnSpecs, quoteKey } from './columns';
import { ErrorBox, NoMatch, NoRunsYet } from './EmptyState';
import { ExperimentList, sortExperiments } from './ExperimentList';
import { RunTable, SortState } from './RunTable';

interface RunsState {
  runs: RunSummary[];
  next: string | null;
  total: number | null;
  paramKeys: string[];
  metricKeys: string[];
  loading: boolean;
  error: string | null;
  loaded: boolean;
}

const EMPTY_RUNS: RunsState = {
  runs: [],
  next: null,
  total: null,
  paramKeys: [],
  metricKeys: [],
  loading: false,
  error: null,
  loaded: false
};

function useSignalValue<T>(subscribe: (cb: () => void) => () => void, read: () => T): T {
  const [value, setValue] = React.useState<T>(read);
  React.useEffect(() => subscribe(() => setValue(read())), []);
  return value;
}

function message(error: unknown): string {
  return error instanceof ApiError ? error.message : String(error);
}

export function RunsView(props: { model: NbopsModel; active: boolean }): JSX.Element {
  const { model } = props;
  const settings = useSignalValue<NbopsSettings>(
    cb => {
      model.settingsChanged.connect(cb);
      return () => model.settingsChanged.disconnect(cb);
    },
    () => model.settings
  );
  const selection = useSignalValue<string[]>(
    cb => {
      model.selectionChanged.connect(cb);
      return () => model.selectionChanged.disconnect(cb);
    },
    () => model.selection
  );

  const [experiments, setExperiments] = React.useState<Experiment[] | null>(null);
  const [expError, setExpError] = React.useState<string | null>(null);
  const [experiment, setExperiment] = React.useState<string | null>(model.experiment);
  const [state, setState] = React.useState<RunsState>(EMPTY_RUNS);
  const [filter, setFilter] = React.useState('');
  const [draft, setDraft] = React.useState('');
  const [sort, setSort] = React.useState<SortState>({ column: 'start', desc: true });
  const [highlight, setHighlight] = React.useState<string | null>(null);
  const [picking, setPicking] = React.useState(false);
  const generation = React.useRef(0);
  const stateRef = React.useRef(state);
  stateRef.current = state;

  const columns: Column[] = React.useMemo(() => {
    const specs = settings.columns.length
      ? settings.columns
      : defaultColumnSpecs(state.metricKeys, state.paramKeys, state.runs.slice(0, 200));
    return [...FIXED_COLUMNS, ...specs.map(dataColumn).filter((c): c is Column => c !== null)];
  }, [settings.columns, state.metricKeys, state.paramKeys, state.loaded && state.runs.length > 0]);

  // From the sort column's id alone (not from the columns shown, which follow the loaded keys).
  const orderBy = React.useMemo(() => {
    const col = FIXED_COLUMNS.find(c => c.id === sort.column) ?? dataColumn(sort.column);
    return col?.orderBy ? `${col.orderBy} ${sort.desc ? 'DESC' : 'ASC'}` : undefined;
  }, [sort]);

  const loadExperiments = React.useCallback(async () => {
    try {
      const res = await api.experiments();
      const sorted = sortExperiments(res.experiments);
      setExperiments(sorted);
      setExpError(null);
      setExperiment(current => {
        if (current && sorted.some(e => e.experiment_id === current)) {
          return current;
        }
        const withRuns = sorted.find(e => e.run_count > 0);
        return (withRuns ?? sorted[0])?.experiment_id ?? null;
      });
    } catch (error) {
      setExpError(message(error));
    }
  }, []);

  /** Load the first page again (`keep`: as many rows as are loaded now), or the next page. */
  const loadRuns = React.useCallback(
    async (mode: 'reset' | 'more' | 'refresh') => {
      if (!experiment) {
        return;
      }
      const current = stateRef.current;
      if (mode === 'more' && (!current.next || current.loading)) {
        return;
      }
      const gen = mode === 'more' ? generation.current : ++generation.current;
      // a reset keeps the column keys, so columns do not flicker while the new page loads
      if (mode !== 'refresh') {
        // (a refresh is silent: the rows stay until the new ones replace them)
        setState(s => ({
          ...(mode === 'reset'
            ? { ...EMPTY_RUNS, paramKeys: s.paramKeys, metricKeys: s.metricKeys }
            : s),
          loading: true,
          error: null
        }));
      }
      try {
        const res = await api.runs({
          experiment,
          filter: filter || undefined,
          order_by: orderBy,
          max_results:
            mode === 'refresh'
              ? Math.min(1000, Math.max(settings.pageSize, current.runs.length))
              : settings.pageSize,
          page_token: mode === 'more' ? current.next : undefined
        });
        if (gen !== generation.current) {
          return;
        }
        setState(s => ({
          runs: mode === 'more' ? [...s.runs, ...res.runs] : res.runs,
          next: res.next_page_token,
          total: res.total,
          paramKeys: res.param_keys,
          metricKeys: res.metric_keys,
          loading: false,
          error: null,
          loaded: true
        }));
      } catch (error) {
        if (gen === generation.current) {
          setState(s => ({ ...s, loading: false, error: message(error), loaded: true }));
        }
      }
    },
    [experiment, filter, orderBy, settings.pageSize]
  );

  React.useEffect(() => {
    void loadExperiments();
  }, []);

  React.useEffect(() => {
    model.experiment = experiment;
    void loadRuns('reset');
  }, [loadRuns]);

  // Refresh requests (the refresh command, a finished re-run).
  React.useEffect(() => {
    const onRefresh = (_: unknown, args: { highlight?: string }): void => {
      if (args.highlight) {
        setHighlight(args.highlight);
      }
      void loadExperiments();
      void loadRuns('refresh');
    };
    model.refreshRequested.connect(onRefresh);
    return () => {
      model.refreshRequested.disconnect(onRefresh);
    };
  }, [loadRuns]);

  // Auto-refresh while something is running.
  const running = state.runs.some(r => r.status === 'RUNNING');
  React.useEffect(() => {
    if (!settings.refreshInterval || !props.active) {
      return;
    }
    const timer = window.setInterval(() => {
      if (stateRef.current.runs.some(r => r.status === 'RUNNING') || model.jobsRunning > 0) {
        void loadRuns('refresh');
      }
    }, settings.refreshInterval * 1000);
    return () => window.clearInterval(timer);
  }, [settings.refreshInterval, props.active, loadRuns, running]);

  const shownRuns = React.useMemo(() => {
    const col = columns.find(c => c.id === sort.column);
    if (!col || col.orderBy) {
      return state.runs;
    }
    const sign = sort.desc ? -1 : 1;
    return [...state.runs].sort((a, b) => {
      const va = col.value(a);
      const vb = col.value(b);
      if (va === null || va === undefined) {
        return 1;
      }
      if (vb === null || vb === undefined) {
        return -1;
      }
      return va < vb ? -sign : va > vb ? sign : 0;
    });
  }, [state.runs, sort, columns]);

  const onSort = (column: string): void =>
    setSort(s => (s.column === column ? { column, desc: !s.desc } : { column, desc: true }));

  const toggleAll = (): void => {
    const ids = state.runs.map(r => r.run_id);
    model.select(ids.every(id => selection.includes(id)) ? [] : ids);
  };

  const allSpecs = [
    ...state.metricKeys.map(k => `metrics.${k}`),
    ...state.paramKeys.map(k => `params.${k}`)
  ];
  const chosen = columns.filter(c => c.id.includes('.')).map(c => c.id);
  const toggleColumn = (spec: string): void => {
    const next = chosen.includes(spec) ? chosen.filter(s => s !== spec) : [...chosen, spec];
    void model.setSetting('columns', next);
  };

  if (expError) {
    return <ErrorBox message={expError} onRetry={() => void loadExperiments()} />;
  }
  if (experiments === null) {
    return <div className="nbops-loading">Loading experiments…</div>;
  }
  const totalRuns = experiments.reduce((n, e) => n + e.run_count, 0);
  if (totalRuns === 0) {
    return <NoRunsYet />;
  }

  return (
    <div className="nbops-RunsView">
      <ExperimentList
        experiments={experiments}
        selected={experiment}
        onSelect={id => {
          setFilter('');
          setDraft('');
          setExperiment(id);
        }}
      />
      <form
        className="nbops-FilterBox"
        onSubmit={e => {
          e.preventDefault();
          setFilter(draft.trim());
        }}
      >
        <input
          type="search"
          className="nbops-input"
          value={draft}
          placeholder="Filter: metrics.accuracy > 0.9 and params.C = '1.0'"
          aria-label="MLflow filter"
          list="nbops-filter-suggestions"
          title="MLflow search syntax: metrics.x > 1, params.y = 'a', tags.z LIKE '%b%', attributes.status = 'FAILED'. Enter applies."
          onChange={e => setDraft(e.target.value)}
        />
        <datalist id="nbops-filter-suggestions">
          {[
            ...state.metricKeys.map(k => `metrics.${quoteKey(k)} > `),
            ...state.paramKeys.map(k => `params.${quoteKey(k)} = ''`),
            "attributes.status = 'FAILED'",
            'tags.`nbops.rerun_of` IS NOT NULL'
          ].map(v => (
            <option key={v} value={v} />
          ))}
        </datalist>
        {filter ? (
          <button
            type="button"
            className="nbops-button nbops-mod-small"
            onClick={() => {
              setDraft('');
              setFilter('');
            }}
          >
            Clear
          </button>
        ) : null}
      </form>
      <div className="nbops-Toolbar">
        <span className="nbops-Toolbar-count">
          {state.total !== null ? `${state.total} runs` : `${state.runs.length} runs loaded`}
          {selection.length ? ` · ${selection.length} selected` : ''}
        </span>
        <button
          className="nbops-button nbops-mod-small"
          aria-expanded={picking}
          onClick={() => setPicking(p => !p)}
        >
          Columns
        </button>
        <button
          className="nbops-button nbops-mod-accept nbops-mod-small nbops-CompareButton"
          disabled={selection.length < 2}
          title={selection.length < 2 ? 'Select two or more runs to compare them' : ''}
          onClick={() => model.requestCompare()}
        >
          Compare{selection.length >= 2 ? ` ${selection.length}` : ''}
        </button>
      </div>
      {picking ? (
        <div className="nbops-ColumnPicker" role="group" aria-label="columns">
          {allSpecs.length === 0 ? <span>No params or metrics logged yet.</span> : null}
          {allSpecs.map(spec => (
            <label key={spec}>
              <input
                type="checkbox"
                checked={chosen.includes(spec)}
                onChange={() => toggleColumn(spec)}
              />
              <span className={spec.startsWith('metrics.') ? 'nbops-kind-metric' : 'nbops-kind-param'}>
                {spec.startsWith('metrics.') ? 'metric' : 'param'}
              </span>
              {spec.replace(/^(params|metrics)\./, '')}
            </label>
          ))}
        </div>
      ) : null}
      {state.error ? <ErrorBox message={state.error} onRetry={() => void loadRuns('reset')} /> : null}
      {state.loaded && !state.loading && !state.error && state.runs.length === 0 ? (
        filter ? (
          <NoMatch
            filter={filter}
            onClear={() => {
              setDraft('');
              setFilter('');
            }}
          />
        ) : (
          <NoRunsYet />
        )
      ) : (
        <RunTable
          runs={shownRuns}
          columns={columns}
          selection={selection}
          sort={sort}
          loading={state.loading}
          hasMore={state.next !== null}
          highlight={highlight}
          onToggle={id => model.toggle(id)}
          onOpen={id => model.requestRun(id)}
          onToggleAll={toggleAll}
          onSort={onSort}
          onEndReached={() => void loadRuns('more')}
        />
      )}
    </div>
  );
}
