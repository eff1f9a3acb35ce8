/** The left sidebar "nbops": Runs (experiments and the run table) and Pipeline tabs. */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { nbopsIcon } from '../icon';
import type { NbopsModel } from '../model';
import { PipelineView } from '../pipeline/PipelineView';
import { RunsView } from './RunsView';

type Tab = 'runs' | 'pipeline';

function SidebarBody(props: { model: NbopsModel; tab: Tab; onTab(tab: Tab): void }): JSX.Element {
  return (
    <div className="nbops-Sidebar-inner">
      <header className="nbops-Sidebar-header">
        <span className="nbops-Sidebar-title">nbops</span>
        <nav className="nbops-Tabs" role="tablist">
          {(['runs', 'pipeline'] as Tab[]).map(t => (
            <button
              key={t}
              role="tab"
              aria-selected={props.tab === t}
              className={props.tab === t ? 'nbops-mod-active' : ''}
              onClick={() => props.onTab(t)}
            >
              {t === 'runs' ? 'Runs' : 'Pipeline'}
            </button>
          ))}
        </nav>
        <button
          className="nbops-icon-button"
          title="Refresh"
          aria-label="Refresh"
          onClick={() => props.model.requestRefresh()}
        >
          ⟳
        </button>
      </header>
      <div className="nbops-Sidebar-panel" hidden={props.tab !== 'runs'}>
        <RunsView model={props.model} active={props.tab === 'runs'} />
      </div>
      {props.tab === 'pipeline' ? (
        <div className="nbops-Sidebar-panel">
          <PipelineView model={props.model} />
        </div>
      ) : null}
    </div>
  );
}

export class NbopsSidebar extends ReactWidget {
  private _tab: Tab = 'runs';

  constructor(private readonly _model: NbopsModel) {
    super();
    this.id = 'nbops-sidebar';
    this.addClass('nbops-Sidebar');
    this.title.icon = nbopsIcon;
    this.title.caption = 'nbops: runs, compare, pipeline';
  }

  get tab(): Tab {
    return this._tab;
  }

  set tab(tab: Tab) {
    this._tab = tab;
    this.update();
  }

  protected render(): JSX.Element {
    return <SidebarBody model={this._model} tab={this._tab} onTab={t => (this.tab = t)} />;
  }
}
