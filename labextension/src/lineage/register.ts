/**
 * Wires the run panel and the Schedules tab into the app: `model.requestRun(id)` opens (or
 * shows) the run's panel in the main area; palette commands open the Schedules tab or a run.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { ICommandPalette } from '@jupyterlab/apputils';
import { MainAreaWidget } from '@jupyterlab/apputils';

import { CATEGORY } from '../commands';
import { shortId } from '../format';
import { nbopsIcon } from '../icon';
import type { NbopsModel } from '../model';
import type { NbopsSidebar } from '../sidebar/Sidebar';
import { RunWidget } from './RunPanel';

export const ScheduleCommandIDs = {
  openSchedules: 'nbops:open-schedules',
  openRun: 'nbops:open-run'
} as const;

export function registerRunsAndSchedules(
  app: JupyterFrontEnd,
  model: NbopsModel,
  sidebar: NbopsSidebar,
  palette: ICommandPalette | null
): void {
  const open = new Map<string, MainAreaWidget<RunWidget>>();

  const openRun = (runId: string): void => {
    let panel = open.get(runId);
    if (!panel || panel.isDisposed) {
      const content = new RunWidget(model, runId);
      panel = new MainAreaWidget({ content });
      panel.id = `nbops-run-${runId}`;
      panel.title.icon = nbopsIcon;
      panel.title.label = `Run ${shortId(runId)}`;
      panel.title.caption = `nbops run ${runId}`;
      panel.title.closable = true;
      panel.addClass('nbops-RunPanel-outer');
      open.set(runId, panel);
      panel.disposed.connect(() => open.delete(runId));
    }
    if (!panel.isAttached) {
      // next to an open run panel as a tab, else in a split beside what is open
      const sibling = [...open.values()].find(p => p !== panel && p.isAttached);
      app.shell.add(
        panel,
        'main',
        sibling ? { ref: sibling.id, mode: 'tab-after' } : { mode: 'split-right' }
      );
    }
    app.shell.activateById(panel.id);
  };

  model.runRequested.connect((_, runId) => openRun(runId));

  app.commands.addCommand(ScheduleCommandIDs.openSchedules, {
    label: 'nbops: Open Schedules',
    caption: 'Show the schedules of this project and whether `nbops scheduler` runs',
    execute: () => {
      sidebar.tab = 'schedules';
      app.shell.activateById(sidebar.id);
    }
  });

  app.commands.addCommand(ScheduleCommandIDs.openRun, {
    label: 'nbops: Open Run',
    caption: 'Open a run (its params, metrics, lineage and verification) by run id',
    execute: args => {
      const runId = typeof args.runId === 'string' ? args.runId : '';
      if (runId) {
        openRun(runId);
      }
    }
  });

  if (palette) {
    palette.addItem({ command: ScheduleCommandIDs.openSchedules, category: CATEGORY });
  }
}
