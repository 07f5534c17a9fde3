import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../errors';

/** Files hashed under one folder source; past this the folder is refused rather than listed without bound. */
const MAX_FILES = 100_000;

/**
 * sha256 over the bytes of `location`: a file's, or every file under a folder (names relative to it, sorted, with
 * their bytes), streamed so memory stays constant.
 */
export async function digestLocation(location: string): Promise<string> {
  const hash = createHash('sha256');
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(location);
  } catch {
    throw new DatasetError(location, 'not found');
  }
  const files = info.isDirectory() ? await listFiles(location) : [location];
  for (const file of files) {
    if (info.isDirectory()) hash.update(`${path.relative(location, file)}\n`);
    for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) hash.update(chunk);
  }
  return hash.digest('hex');
}

async function listFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) {
        files.push(full);
        if (files.length > MAX_FILES) throw new DatasetError(dir, `holds more than ${MAX_FILES} files`);
      }
    }
  };
  await walk(dir);
  return files;
}
