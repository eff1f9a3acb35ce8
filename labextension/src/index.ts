/**
 * nbops for JupyterLab: a left sidebar with experiments and runs, a Compare panel in the main
 * area, a pipeline view, palette commands and settings.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { CommandIDs, registerCommands } from './commands';
import { CompareWidget } from './compare/ComparePanel';
import { nbopsIcon } from './icon';
import { registerRunsAndSchedules } from './lineage/register';
import { NbopsModel } from './model';
import { NbopsSidebar } from './sidebar/Sidebar';

const PLUGIN_ID = 'nbops:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Review, compare and re-run the notebook runs nbops records in MLflow.',
  autoStart: true,
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const model = new NbopsModel();
    const sidebar = new NbopsSidebar(model);
    app.shell.add(sidebar, 'left', { rank: 350 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }

    let compare: MainAreaWidget<CompareWidget> | null = null;
    const openCompare = (runIds: string[], activate: boolean): void => {
      if (!compare || compare.isDisposed) {
        const content = new CompareWidget(model);
        compare = new MainAreaWidget({ content });
        compare.id = 'nbops-compare';
        compare.title.icon = nbopsIcon;
        compare.title.closable = true;
        compare.addClass('nbops-ComparePanel');
      }
      compare.content.runIds = runIds;
      compare.title.label = `Compare ${runIds.length} runs`;
      if (!compare.isAttached) {
        app.shell.add(compare, 'main');
      }
      if (activate) {
        app.shell.activateById(compare.id);
      }
    };

    model.compareRequested.connect((_, runIds) => openCompare(runIds, true));

    // Ticking a second run opens Compare; later ticks update it (debounced while clicking).
    let pending: number | undefined;
    model.selectionChanged.connect((_, runIds) => {
      window.clearTimeout(pending);
      pending = window.setTimeout(() => {
        const open = compare !== null && !compare.isDisposed && compare.isAttached;
        if (runIds.length >= 2 && (open || model.settings.autoOpenCompare)) {
          openCompare(runIds, !open);
        } else if (open && compare) {
          compare.content.runIds = runIds;
          compare.title.label = runIds.length ? `Compare ${runIds.length} runs` : 'Compare';
        }
      }, 250);
    });

    registerCommands(app, model, sidebar, palette);
    registerRunsAndSchedules(app, model, sidebar, palette);

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => model.attachSettings(settings))
        .catch(reason => console.error('nbops: cannot load settings', reason));
    }
    console.debug(`nbops: activated (${CommandIDs.openSidebar})`);
  }
};

export default plugin;
