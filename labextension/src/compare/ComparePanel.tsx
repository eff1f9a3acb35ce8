/**
 * The Compare panel (main area): the runs, params that differ, metrics with the best marked,
 * overlaid metric histories, the notebooks' cell diff and a re-run form.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { api } from '../api';
import { runLabel } from '../format';
import { nbopsIcon } from '../icon';
import { CompareLineage } from '../lineage/LineageSection';
import type { NbopsModel } from '../model';
import { ApiError } from '../request';
import type { CompareResponse } from '../types';
import { MetricsTable, ParamsTable, RunChips } from './CompareTables';
import { ChartSeries, MetricChart } from './MetricChart';
import { NotebookDiff } from './NotebookDiff';
import { ParamScatter } from './ParamScatter';
import { RerunForm } from './RerunForm';

function Charts(props: { data: CompareResponse }): JSX.Element {
  const { runs, histories } = props.data;
  const keys = Object.keys(histories)
    .filter(k => Object.values(histories[k]).some(points => points.length > 1))
    .sort();
  const seriesByKey = React.useMemo(() => {
    const out: Record<string, ChartSeries[]> = {};
    for (const key of keys) {
      out[key] = runs
        .map((r, i) => ({ label: runLabel(r), colorIndex: i, points: histories[key][r.run_id] ?? [] }))
        .filter(s => s.points.length > 0);
    }
    return out;
  }, [props.data]);
  return (
    <section className="nbops-Section nbops-Charts">
      <h3>
        Metric histories <span className="nbops-count">{keys.length} with steps</span>
      </h3>
      {keys.length ? (
        <div className="nbops-Chart-grid">
          {keys.map(k => (
            <MetricChart key={k} metric={k} series={seriesByKey[k]} />
          ))}
        </div>
      ) : (
        <p className="nbops-note">
          No metric has a history: log one per step (<code>nbops.log_metric("loss", v, step=i)</code>)
          to see curves here.
        </p>
      )}
    </section>
  );
}

function Compare(props: { model: NbopsModel; runIds: string[] }): JSX.Element {
  const { model, runIds } = props;
  const [data, setData] = React.useState<CompareResponse | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [tick, setTick] = React.useState(0);
  const key = runIds.join(',');

  React.useEffect(() => {
    const onRefresh = (): void => setTick(t => t + 1);
    model.refreshRequested.connect(onRefresh);
    return () => {
      model.refreshRequested.disconnect(onRefresh);
    };
  }, []);

  React.useEffect(() => {
    if (runIds.length < 2) {
      return;
    }
    let cancelled = false;
    setError(null);
    api
      .compare(runIds)
      .then(d => !cancelled && setData(d))
      .catch(e => !cancelled && setError(e instanceof ApiError ? e.message : String(e)));
    return () => {
      cancelled = true;
    };
  }, [key, tick]);

  if (runIds.length < 2) {
    return (
      <div className="nbops-empty">
        <p className="nbops-empty-title">Select two or more runs</p>
        <p>Tick runs in the nbops sidebar to compare their params, metrics and notebooks.</p>
      </div>
    );
  }
  if (error) {
    return (
      <div className="nbops-error" role="alert">
        {error}
      </div>
    );
  }
  if (!data) {
    return <div className="nbops-loading">Comparing {runIds.length} runs…</div>;
  }
  return (
    <div className="nbops-Compare-body">
      <RunChips runs={data.runs} />
      <div className={`nbops-Compare-columns${data.runs.length > 2 ? ' nbops-mod-stacked' : ''}`}>
        <ParamsTable data={data} />
        <MetricsTable data={data} />
      </div>
      <Charts data={data} />
      <ParamScatter data={data} />
      <NotebookDiff runs={data.runs} defaultView={model.settings.diffView} />
      <CompareLineage model={model} runs={data.runs} />
      <RerunForm
        model={model}
        runs={data.runs}
        onNewRun={id => model.select([...model.selection.filter(r => r !== id), id])}
      />
    </div>
  );
}

export class CompareWidget extends ReactWidget {
  private _runIds: string[] = [];

  constructor(private readonly _model: NbopsModel) {
    super();
    this.addClass('nbops-Compare');
  }

  get runIds(): string[] {
    return this._runIds;
  }

  set runIds(ids: string[]) {
    this._runIds = [...ids];
    this.update();
  }

  protected render(): JSX.Element {
    return <Compare model={this._model} runIds={this._runIds} />;
  }
}

export const compareIcon = nbopsIcon;
