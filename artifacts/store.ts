import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Where datasets, checkpoints, models and reports live, addressed by URI so that only the
 * address travels through Temporal. `file://` today; an object store implements the same
 * interface later.
 */
export interface ArtifactStore {
  /** The URI of `key` (a relative, slash-separated path) without touching storage. */
  uri(key: string): string;
  /** Writes all of `data` under `key` atomically (readers never see half a file); returns its URI. */
  put(key: string, data: Uint8Array | string): Promise<string>;
  get(uri: string): Promise<Buffer>;
  exists(uri: string): Promise<boolean>;
  /** Keys directly under `prefix` (files and folders), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Removes a key and everything under it; missing keys are fine. */
  remove(uri: string): Promise<void>;
}

export class FileArtifactStore implements ArtifactStore {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  uri(key: string): string {
    return pathToFileURL(this.pathOfKey(key)).href;
  }

  async put(key: string, data: Uint8Array | string): Promise<string> {
    const target = this.pathOfKey(key);
    await writeFileAtomically(target, data);
    return pathToFileURL(target).href;
  }

  async get(uri: string): Promise<Buffer> {
    return readFile(this.pathOfUri(uri));
  }

  async exists(uri: string): Promise<boolean> {
    try {
      await stat(this.pathOfUri(uri));
      return true;
    } catch {
      return false;
    }
  }

  async list(prefix: string): Promise<string[]> {
    try {
      return (await readdir(this.pathOfKey(prefix))).sort();
    } catch {
      return [];
    }
  }

  async remove(uri: string): Promise<void> {
    await rm(this.pathOfUri(uri), { recursive: true, force: true });
  }

  /** Keys are relative and may not climb out of the root. */
  private pathOfKey(key: string): string {
    const resolved = path.resolve(this.root, key);
    if (resolved !== this.root && !resolved.startsWith(this.root + path.sep)) {
      throw new Error(`artifact key ${JSON.stringify(key)} escapes the store root ${this.root}`);
    }
    return resolved;
  }

  private pathOfUri(uri: string): string {
    if (!uri.startsWith('file://')) {
      throw new Error(`unsupported artifact URI ${JSON.stringify(uri)}: this store reads file:// URIs`);
    }
    return fileURLToPath(uri);
  }
}

/** Write to a temporary sibling, then rename: a crash leaves either the old file or the new one. */
export async function writeFileAtomically(target: string, data: Uint8Array | string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const temporary = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temporary, data);
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
