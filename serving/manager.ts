import { Batcher } from './batcher';
import type { BatchingOptions, ModelConfig } from './config';
import { ServableHandle } from './handle';
import { loadServable, type LoadOptions, type Servable } from './loader';
import type { Logger } from './log';
import type { ServingMetrics } from './metrics';
import type { AspiredVersion, ModelSnapshot } from './source';
import type { DenseTensor } from './tensors';

/**
 * The manager: applies the source's aspired versions with an availability-preserving policy —
 * load the new version and make it AVAILABLE first, then unload the versions no longer aspired.
 * It never unloads a model's last AVAILABLE version because a newer one failed or the folder
 * emptied: a broken publish cannot take a healthy model down. Each version moves through TF
 * Serving's states START → LOADING → AVAILABLE → UNLOADING → END; a failed load ends in END
 * with its error and is retried only when its files change (or on an explicit reload).
 */

export type VersionState = 'START' | 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END';

export interface VersionStatus {
  version: number;
  state: VersionState;
  error?: string;
}

interface VersionRecord {
  version: number;
  path: string;
  fingerprint: string;
  state: VersionState;
  error?: string;
  handle?: ServableHandle;
}

interface ModelRecord {
  config: ModelConfig;
  versions: Map<number, VersionRecord>;
}

export interface ManagerOptions {
  load: LoadOptions;
  batching: BatchingOptions;
  metrics: ServingMetrics;
  log: Logger;
  /** Replaces the file loader (tests inject failures or in-memory models). */
  loadServable?: (path: string, options: LoadOptions) => Promise<Servable>;
  /** A retired version was forgotten (see RETIRED_VERSIONS_KEPT): drop what else is kept per version. */
  forgetVersion?: (model: string, version: number) => void;
}

/**
 * Unloaded versions per model whose metric series (and feedback windows) are kept: the newest few, so a
 * scrape or a rollout's last reading after an unload still sees the version's final counts, and a rollback
 * to one of them continues its counters. Older ones are forgotten; else every hot swap would leave a few
 * dozen series behind for good, and a server that swaps hourly would grow without end.
 */
export const RETIRED_VERSIONS_KEPT = 4;

export class VersionManager {
  private readonly models = new Map<string, ModelRecord>();
  private readonly unloading = new Set<Promise<void>>();
  /** Per model, its unloaded versions whose series are still kept, oldest first. */
  private readonly retired = new Map<string, number[]>();

  constructor(private readonly options: ManagerOptions) {}

  /** Applies one poll of the source: every configured model with its aspired versions. */
  async apply(snapshots: ModelSnapshot[]): Promise<void> {
    const configured = new Set(snapshots.map((s) => s.config.name));
    for (const name of [...this.models.keys()]) if (!configured.has(name)) this.removeModel(name);
    for (const snapshot of snapshots) await this.applyModel(snapshot);
  }

  private async applyModel({ config, versions }: ModelSnapshot): Promise<void> {
    let record = this.models.get(config.name);
    if (!record) {
      record = { config, versions: new Map() };
      this.models.set(config.name, record);
    }
    record.config = config;
    if (versions === null) return;
    const aspired = new Map(versions.map((v) => [v.version, v]));
    // Newest first: the version most likely to be asked for becomes AVAILABLE soonest.
    for (const wanted of [...aspired.values()].sort((a, b) => b.version - a.version)) {
      const existing = record.versions.get(wanted.version);
      if (existing?.state === 'AVAILABLE' || existing?.state === 'LOADING') continue;
      if (existing?.state === 'END' && existing.error !== undefined && existing.fingerprint === wanted.fingerprint)
        continue;
      if (existing?.state === 'UNLOADING') continue; // it comes back on a later poll, once unloaded
      await this.load(config.name, record, wanted);
    }
    const anyAspiredAvailable = [...aspired.keys()].some((v) => record.versions.get(v)?.state === 'AVAILABLE');
    for (const entry of [...record.versions.values()]) {
      if (aspired.has(entry.version)) continue;
      if (entry.state === 'AVAILABLE' && anyAspiredAvailable) this.unload(config.name, record, entry);
      else if (entry.state === 'END') record.versions.delete(entry.version);
    }
  }

  private async load(model: string, record: ModelRecord, wanted: AspiredVersion): Promise<void> {
    const entry: VersionRecord = {
      version: wanted.version,
      path: wanted.path,
      fingerprint: wanted.fingerprint,
      state: 'START',
    };
    record.versions.set(wanted.version, entry);
    entry.state = 'LOADING';
    const started = performance.now();
    const { metrics, log, batching } = this.options;
    try {
      const servable = await (this.options.loadServable ?? loadServable)(wanted.path, this.options.load);
      const labels = { model, version: String(wanted.version) };
      const run = (inputs: DenseTensor[]) => {
        const callStarted = performance.now();
        try {
          return servable.run(inputs);
        } finally {
          metrics.modelCall.observe(labels, (performance.now() - callStarted) / 1000);
        }
      };
      const batcher = new Batcher(run, batching, {
        batch: (rows) => metrics.batchSize.observe(labels, rows),
        queued: (seconds) => metrics.queueTime.observe(labels, seconds),
      });
      entry.handle = new ServableHandle(model, wanted.version, servable, batcher);
      entry.state = 'AVAILABLE';
      // Back from retirement (a rollback, a re-published folder): its series are live again.
      const retired = this.retired.get(model);
      if (retired?.includes(wanted.version)) retired.splice(retired.indexOf(wanted.version), 1);
      const seconds = (performance.now() - started) / 1000;
      metrics.loadTime.observe({ model }, seconds);
      metrics.available.set(labels, 1);
      this.updateGauges(model);
      log.info(
        `model ${model} version ${wanted.version}: AVAILABLE (loaded in ${(seconds * 1000).toFixed(0)} ms; ` +
          (servable.execution.mode === 'graph' ? 'graph execution' : `eager execution: ${servable.execution.reason}`) +
          ')',
      );
    } catch (error) {
      entry.state = 'END';
      entry.error = (error as Error).message;
      metrics.loadFailures.inc({ model });
      log.error(`model ${model} version ${wanted.version}: failed to load: ${entry.error}`);
    }
  }

  private unload(model: string, record: ModelRecord, entry: VersionRecord): void {
    const handle = entry.handle;
    entry.state = 'UNLOADING';
    entry.handle = undefined;
    this.options.metrics.available.set({ model, version: String(entry.version) }, 0);
    this.updateGauges(model);
    this.options.log.info(`model ${model} version ${entry.version}: UNLOADING`);
    const done = (handle ? handle.close() : Promise.resolve())
      .catch((error: Error) =>
        this.options.log.error(`model ${model} version ${entry.version}: unload failed: ${error.message}`),
      )
      .then(() => {
        entry.state = 'END';
        // A clean unload leaves nothing to report; the record goes unless the version came back.
        if (record.versions.get(entry.version) === entry) record.versions.delete(entry.version);
        this.options.log.info(`model ${model} version ${entry.version}: END (unloaded)`);
        this.retire(model, entry.version);
      });
    this.unloading.add(done);
    void done.finally(() => this.unloading.delete(done));
  }

  /** Keeps the series of the newest RETIRED_VERSIONS_KEPT unloaded versions of a model; forgets older ones. */
  private retire(model: string, version: number): void {
    const retired = this.retired.get(model) ?? [];
    this.retired.set(model, retired);
    if (retired.includes(version)) retired.splice(retired.indexOf(version), 1);
    retired.push(version);
    while (retired.length > RETIRED_VERSIONS_KEPT) {
      const old = retired.shift()!;
      // Loading or serving again (the model left the configuration and came back): its series are live.
      const state = this.models.get(model)?.versions.get(old)?.state;
      if (state !== undefined && state !== 'END') continue;
      this.options.forgetVersion?.(model, old);
      this.options.metrics
        .forgetVersion(model, old)
        .catch((error: Error) =>
          this.options.log.error(`model ${model} version ${old}: cannot drop its metrics: ${error.message}`),
        );
    }
  }

  /** Unloads every version of a model that left the configuration. */
  removeModel(name: string): void {
    const record = this.models.get(name);
    if (!record) return;
    this.models.delete(name);
    for (const entry of record.versions.values()) if (entry.state === 'AVAILABLE') this.unload(name, record, entry);
    this.options.metrics.loadedVersions.set({ model: name }, 0);
  }

  /** Forgets a model's failed loads so the next poll tries them again. */
  forgetFailures(name: string): void {
    const record = this.models.get(name);
    if (!record) return;
    for (const entry of [...record.versions.values()])
      if (entry.state === 'END' && entry.error !== undefined) record.versions.delete(entry.version);
  }

  private updateGauges(model: string): void {
    this.options.metrics.loadedVersions.set({ model }, this.availableVersions(model).length);
  }

  hasModel(name: string): boolean {
    return this.models.has(name);
  }

  modelNames(): string[] {
    return [...this.models.keys()].sort();
  }

  config(name: string): ModelConfig | undefined {
    return this.models.get(name)?.config;
  }

  /** AVAILABLE versions, ascending. */
  availableVersions(name: string): number[] {
    const record = this.models.get(name);
    if (!record) return [];
    return [...record.versions.values()]
      .filter((e) => e.state === 'AVAILABLE')
      .map((e) => e.version)
      .sort((a, b) => a - b);
  }

  /** The handle of an AVAILABLE version, acquired (release it), or undefined. */
  acquire(name: string, version: number): ServableHandle | undefined {
    const handle = this.models.get(name)?.versions.get(version)?.handle;
    return handle?.tryAcquire() ? handle : undefined;
  }

  /** A version's handle without acquiring it (metadata only). */
  peek(name: string, version: number): ServableHandle | undefined {
    return this.models.get(name)?.versions.get(version)?.handle;
  }

  status(name: string): VersionStatus[] {
    const record = this.models.get(name);
    if (!record) return [];
    return [...record.versions.values()]
      .sort((a, b) => b.version - a.version)
      .map((e) => ({ version: e.version, state: e.state, ...(e.error !== undefined ? { error: e.error } : {}) }));
  }

  /** True while any model is still loading a version it aspires to. */
  loading(): boolean {
    return [...this.models.values()].some((m) =>
      [...m.versions.values()].some((e) => e.state === 'LOADING' || e.state === 'START'),
    );
  }

  /** Unloads everything and waits until every version drained. */
  async close(): Promise<void> {
    for (const name of [...this.models.keys()]) this.removeModel(name);
    await Promise.all([...this.unloading]);
  }
}
