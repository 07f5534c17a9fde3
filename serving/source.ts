import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { ModelConfig } from './config';
import type { Logger } from './log';
import { folderFingerprint } from './loader';
import { aspiredVersions } from './version-policy';

/**
 * The source: polls each model's base path and reports the versions it aspires to serve (after
 * the version policy), each with a fingerprint of its files so the manager can tell a changed
 * folder from one it already tried. Version folders are children named by a positive integer;
 * everything else (`.staging/`, notes, a half-copied `tmp-3/`) is ignored, as TF Serving does.
 */

export interface AspiredVersion {
  version: number;
  path: string;
  fingerprint: string;
}

export interface ModelSnapshot {
  config: ModelConfig;
  /** null when the base path could not be read this time: the manager then changes nothing. */
  versions: AspiredVersion[] | null;
  error?: string;
}

export async function versionsOnDisk(basePath: string): Promise<number[]> {
  const entries = await readdir(basePath, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && /^\d+$/.test(e.name))
    .map((e) => Number(e.name))
    .filter((v) => Number.isSafeInteger(v) && v > 0);
}

async function snapshotOf(config: ModelConfig): Promise<ModelSnapshot> {
  try {
    const wanted = aspiredVersions(config.model_version_policy, await versionsOnDisk(config.base_path));
    const versions: AspiredVersion[] = [];
    for (const version of wanted) {
      const dir = path.join(config.base_path, String(version));
      // A folder can vanish between readdir and here; it is simply not aspired this time.
      const fingerprint = await folderFingerprint(dir).catch(() => undefined);
      if (fingerprint !== undefined) versions.push({ version, path: dir, fingerprint });
    }
    return { config, versions };
  } catch (error) {
    return { config, versions: null, error: (error as Error).message };
  }
}

export class RepositorySource {
  private chain: Promise<void> = Promise.resolve();
  private pending: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly models: () => Promise<ModelConfig[]>,
    private readonly sink: (snapshots: ModelSnapshot[]) => Promise<void>,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * One poll after the one running now (polls never overlap, so the manager sees snapshots in
   * order); callers that ask while one is already waiting share it.
   */
  poll(): Promise<void> {
    if (this.pending) return this.pending;
    const next = this.chain.then(async () => {
      this.pending = undefined;
      if (this.stopped) return;
      const configs = await this.models();
      const snapshots = await Promise.all(configs.map(snapshotOf));
      for (const s of snapshots)
        if (s.error) this.log.warn(`model ${s.config.name}: cannot read ${s.config.base_path}: ${s.error}`);
      await this.sink(snapshots);
    });
    this.pending = next;
    this.chain = next.catch((error: Error) => this.log.error(`poll failed: ${error.message}`));
    return next;
  }

  /** Polls now, then every intervalMs after each poll ends. */
  async start(): Promise<void> {
    await this.poll().catch(() => undefined);
    const tick = () => {
      if (this.stopped) return;
      this.timer = setTimeout(
        () =>
          void this.poll()
            .catch(() => undefined)
            .finally(tick),
        this.intervalMs,
      );
      this.timer.unref();
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.chain;
  }
}
