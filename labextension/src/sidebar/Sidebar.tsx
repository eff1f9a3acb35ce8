/** The left sidebar "nbops": Runs (experiments and the run table) and Pipeline tabs. */
import { ReactWidget } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import { SplitPanel, Widget } from '@lumino/widgets';
import * as React from 'react';

import { nbopsIcon } from '../icon';
import type { NbopsModel } from '../model';
import { PipelineView } from '../pipeline/PipelineView';
import { SchedulesView } from '../schedules/SchedulesView';
import { RunsView } from './RunsView';

type Tab = 'runs' | 'pipeline' | 'schedules';

function SidebarBody(props: { model: NbopsModel; tab: Tab; onTab(tab: Tab): void }): JSX.Element {
  return (
    <div className="nbops-Sidebar-inner">
      <header className="nbops-Sidebar-header">
        <span className="nbops-Sidebar-title">nbops</span>
        <nav className="nbops-Tabs" role="tablist">
          {(['runs', 'pipeline', 'schedules'] as Tab[]).map(t => (
            <button
              key={t}
              role="tab"
              aria-selected={props.tab === t}
              className={props.tab === t ? 'nbops-mod-active' : ''}
              onClick={() => props.onTab(t)}
            >
              {t === 'runs' ? 'Runs' : t === 'pipeline' ? 'Pipeline' : 'Schedules'}
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
      {props.tab === 'schedules' ? (
        <div className="nbops-Sidebar-panel">
          <SchedulesView model={props.model} active />
        </div>
      ) : null}
    </div>
  );
}

/**
 * Widen the side panel holding `widget` to `target` px once (JupyterLab opens side panels
 * at ~250 px, too narrow for a run table); later the user's own resizing is kept.
 */
function widenSidePanel(widget: Widget, target: number): void {
  let split: Widget | null = widget.parent;
  while (split && !(split instanceof SplitPanel)) {
    split = split.parent;
  }
  if (!split) {
    return;
  }
  const panel = split as SplitPanel;
  const total = panel.node.clientWidth;
  const sizes = panel.relativeSizes();
  const index = panel.widgets.findIndex(child => child.node.contains(widget.node));
  if (index < 0 || total < target * 2.5) {
    return;
  }
  const current = sizes[index] * total;
  if (current >= target) {
    return;
  }
  const largest = sizes.indexOf(Math.max(...sizes));
  const delta = (target - current) / total;
  sizes[index] += delta;
  sizes[largest] -= delta;
  panel.setRelativeSizes(sizes);
}

export class NbopsSidebar extends ReactWidget {
  private _tab: Tab = 'runs';
  private _widened = false;

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

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this._widened) {
      this._widened = true;
      requestAnimationFrame(() => widenSidePanel(this, 460));
    }
  }

  protected render(): JSX.Element {
    return <SidebarBody model={this._model} tab={this._tab} onTab={t => (this.tab = t)} />;
  }
}
