/**
 * State shared by the sidebar, the Compare panel and the commands: the chosen experiment,
 * the selected runs, the settings, and "something changed, refresh" notifications.
 */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ISignal, Signal } from '@lumino/signaling';

import { DEFAULT_SETTINGS, NbopsSettings, readSettings } from './settings';

export class NbopsModel {
  private _settings: NbopsSettings = { ...DEFAULT_SETTINGS };
  private _registry: ISettingRegistry.ISettings | null = null;
  private _selection: string[] = [];
  private _experiment: string | null = null;
  private _selectionChanged = new Signal<this, string[]>(this);
  private _settingsChanged = new Signal<this, NbopsSettings>(this);
  private _refreshRequested = new Signal<this, { highlight?: string }>(this);
  private _compareRequested = new Signal<this, string[]>(this);
  private _runRequested = new Signal<this, string>(this);
  private _jobs = 0;

  get settings(): NbopsSettings {
    return this._settings;
  }

  get settingsChanged(): ISignal<this, NbopsSettings> {
    return this._settingsChanged;
  }

  /** Connect to the settings registry; later changes are signalled. */
  attachSettings(registry: ISettingRegistry.ISettings): void {
    this._registry = registry;
    const update = (): void => {
      this._settings = readSettings(registry);
      this._settingsChanged.emit(this._settings);
    };
    registry.changed.connect(update);
    update();
  }

  /** Persist one setting (e.g. the columns picked in the table) when a registry is attached. */
  async setSetting<K extends keyof NbopsSettings>(key: K, value: NbopsSettings[K]): Promise<void> {
    // shown at once; the registry's own change signal follows when it is saved
    this._settings = { ...this._settings, [key]: value };
    this._settingsChanged.emit(this._settings);
    if (this._registry) {
      await this._registry.set(key, value as never);
    }
  }

  get experiment(): string | null {
    return this._experiment;
  }

  set experiment(id: string | null) {
    if (id !== this._experiment) {
      this._experiment = id;
      this.select([]);
    }
  }

  get selection(): string[] {
    return this._selection;
  }

  get selectionChanged(): ISignal<this, string[]> {
    return this._selectionChanged;
  }

  select(runIds: string[]): void {
    const same =
      runIds.length === this._selection.length && runIds.every((r, i) => r === this._selection[i]);
    if (!same) {
      this._selection = [...runIds];
      this._selectionChanged.emit(this._selection);
    }
  }

  toggle(runId: string): void {
    const has = this._selection.includes(runId);
    this.select(has ? this._selection.filter(r => r !== runId) : [...this._selection, runId]);
  }

  /** Ask the run table to reload (optionally scrolling a new run into view). */
  get refreshRequested(): ISignal<this, { highlight?: string }> {
    return this._refreshRequested;
  }

  requestRefresh(highlight?: string): void {
    this._refreshRequested.emit({ highlight });
  }

  /** Ask the plugin to open the Compare panel for these runs. */
  get compareRequested(): ISignal<this, string[]> {
    return this._compareRequested;
  }

  requestCompare(runIds: string[] = this._selection): void {
    this._compareRequested.emit(runIds);
  }

  /** Ask the plugin to open one run's panel (its details, lineage and verification). */
  get runRequested(): ISignal<this, string> {
    return this._runRequested;
  }

  requestRun(runId: string): void {
    this._runRequested.emit(runId);
  }

  /** Re-runs and pipeline runs in flight: the run table refreshes while there are any. */
  get jobsRunning(): number {
    return this._jobs;
  }

  jobStarted(): void {
    this._jobs += 1;
    this.requestRefresh();
  }

  jobEnded(newRunId?: string): void {
    this._jobs = Math.max(0, this._jobs - 1);
    this.requestRefresh(newRunId);
  }
}
