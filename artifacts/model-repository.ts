import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The model repository in TensorFlow Serving's layout, `<base>/<model>/<version>/`, which the
 * model server watches. A version folder appears whole or not at all: it is assembled in
 * `<base>/.staging/` (ignored by servers, as every non-numeric name is) and renamed into place.
 */
export class ModelRepository {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  versionPath(model: string, version: number): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(model))
      throw new Error(`model name ${JSON.stringify(model)} is not a safe folder name`);
    if (!Number.isInteger(version) || version < 1)
      throw new Error(`version must be a positive integer, got ${version}`);
    return path.join(this.root, model, String(version));
  }

  /**
   * Writes `files` as version `version` of `model`. Publishing the same files again is a no-op
   * (an activity retry); different files under an existing version are refused, because a
   * version number must always mean one model.
   */
  async publish(model: string, version: number, files: Record<string, Uint8Array | string>): Promise<string> {
    const target = this.versionPath(model, version);
    if (await exists(target)) return this.confirmSame(target, files);
    const staging = path.join(this.root, '.staging', `${model}-${version}-${randomBytes(4).toString('hex')}`);
    await mkdir(staging, { recursive: true });
    try {
      for (const [name, data] of Object.entries(files)) {
        // A SavedModel's files sit in subfolders (variables/, assets/); no name may leave the version folder.
        const file = path.resolve(staging, name);
        if (!file.startsWith(staging + path.sep)) throw new Error(`file name ${JSON.stringify(name)} leaves ${target}`);
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, data);
      }
      await mkdir(path.dirname(target), { recursive: true });
      await rename(staging, target);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      // Another publisher won the race: fine if it wrote the same model.
      if ((error as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (error as NodeJS.ErrnoException).code === 'EEXIST') {
        return this.confirmSame(target, files);
      }
      throw error;
    }
    return target;
  }

  async versions(model: string): Promise<number[]> {
    const entries = await readdir(path.join(this.root, model)).catch(() => [] as string[]);
    return entries
      .filter((e) => /^\d+$/.test(e))
      .map(Number)
      .sort((a, b) => a - b);
  }

  private async confirmSame(target: string, files: Record<string, Uint8Array | string>): Promise<string> {
    for (const [name, data] of Object.entries(files)) {
      if (name === METADATA_FILE) continue; // carries timestamps; the model files decide identity
      const existing = await readFile(path.join(target, name)).catch(() => undefined);
      if (!existing || digest(existing) !== digest(data)) {
        throw new Error(
          `${target} already holds a different model (${name} differs); refusing to overwrite a published version`,
        );
      }
    }
    return target;
  }
}

/** Gantry's description of a published version, beside the tfjs files. */
export const METADATA_FILE = 'gantry.json';

function digest(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
