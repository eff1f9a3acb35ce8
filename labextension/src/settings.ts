/** The extension's settings (schema/plugin.json), with their defaults. */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';

export type DiffView = 'side-by-side' | 'unified';

export interface NbopsSettings {
  columns: string[];
  pageSize: number;
  refreshInterval: number;
  autoOpenCompare: boolean;
  diffView: DiffView;
}

export const DEFAULT_SETTINGS: NbopsSettings = {
  columns: [],
  pageSize: 100,
  refreshInterval: 5,
  autoOpenCompare: true,
  diffView: 'side-by-side'
};

export function readSettings(settings: ISettingRegistry.ISettings): NbopsSettings {
  const c = settings.composite as Partial<NbopsSettings>;
  return {
    columns: Array.isArray(c.columns) ? c.columns.filter(x => typeof x === 'string') : [],
    pageSize: Math.min(1000, Math.max(1, Number(c.pageSize ?? DEFAULT_SETTINGS.pageSize))),
    refreshInterval: Math.max(0, Number(c.refreshInterval ?? DEFAULT_SETTINGS.refreshInterval)),
    autoOpenCompare: c.autoOpenCompare ?? DEFAULT_SETTINGS.autoOpenCompare,
    diffView: c.diffView === 'unified' ? 'unified' : 'side-by-side'
  };
}
