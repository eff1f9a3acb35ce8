/** The palette commands of nbops, registered in one place. */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { ICommandPalette } from '@jupyterlab/apputils';

import type { NbopsModel } from './model';
import type { NbopsSidebar } from './sidebar/Sidebar';

export const CommandIDs = {
  openSidebar: 'nbops:open-sidebar',
  refresh: 'nbops:refresh',
  compareSelected: 'nbops:compare-selected',
  openPipeline: 'nbops:open-pipeline'
} as const;

export const CATEGORY = 'nbops';

export function registerCommands(
  app: JupyterFrontEnd,
  model: NbopsModel,
  sidebar: NbopsSidebar,
  palette: ICommandPalette | null
): void {
  const { commands, shell } = app;

  commands.addCommand(CommandIDs.openSidebar, {
    label: 'nbops: Open Runs Sidebar',
    caption: 'Show the experiments and runs nbops recorded',
    execute: () => {
      sidebar.tab = 'runs';
      shell.activateById(sidebar.id);
    }
  });

  commands.addCommand(CommandIDs.openPipeline, {
    label: 'nbops: Open Pipeline',
    caption: "Show the stages of the project's nbops.yaml",
    execute: () => {
      sidebar.tab = 'pipeline';
      shell.activateById(sidebar.id);
    }
  });

  commands.addCommand(CommandIDs.refresh, {
    label: 'nbops: Refresh Runs',
    caption: 'Reload experiments and runs from the store',
    execute: () => model.requestRefresh()
  });

  commands.addCommand(CommandIDs.compareSelected, {
    label: () =>
      model.selection.length >= 2
        ? `nbops: Compare ${model.selection.length} Selected Runs`
        : 'nbops: Compare Selected Runs',
    caption: 'Open the Compare panel for the runs ticked in the sidebar',
    isEnabled: () => model.selection.length >= 2,
    execute: () => model.requestCompare()
  });

  model.selectionChanged.connect(() => commands.notifyCommandChanged(CommandIDs.compareSelected));

  if (palette) {
    for (const command of Object.values(CommandIDs)) {
      palette.addItem({ command, category: CATEGORY });
    }
  }
}
