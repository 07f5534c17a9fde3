import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { ArtifactStore } from '../artifacts/store';

/**
 * What lets a rerun on unchanged source files skip reading, validating and fingerprinting them (issue 19: the
 * ingest of a 1,000-image slice read, checked and hashed all 70,000 Fashion-MNIST images, ~2 s, on every run).
 * After a read, the ingest records the dataset's fingerprint beside the identity of every file it read and of every
 * folder they are in (size, mtime, ctime, inode — the check git's index and make rely on). A later ingest with the
 * same source, location and options whose files and folders all still match takes the fingerprint from it; a file
 * changed, added, removed or renamed changes one of them (ctime cannot be set back by hand), and the source is read
 * again. The record is a hint: unreadable or stale, it is ignored.
 */

const FileIdentitySchema = z.object({
  path: z.string(),
  size: z.number(),
  mtimeMs: z.number(),
  ctimeMs: z.number(),
  ino: z.number(),
});
type FileIdentity = z.infer<typeof FileIdentitySchema>;

const IngestMemoSchema = z.object({
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  // A source of many files (an image folder) may list many; bounded so a corrupt record cannot stall the check.
  files: z.array(FileIdentitySchema).max(5_000_000),
  /** What reading met (sources that read item by item), reported again on a hit. */
  rows: z.unknown().optional(),
});
export type IngestMemo = z.infer<typeof IngestMemoSchema>;

/** The store key of the memo for this source, location and every option that shapes the dataset. */
export function ingestMemoKey(source: string, location: string, options: unknown): string {
  const key = createHash('sha256').update(JSON.stringify({ source, location, options })).digest('hex');
  return `ingest-memo/${key}.json`;
}

async function statOf(file: string): Promise<{ identity: FileIdentity; isFile: boolean }> {
  const s = await stat(file);
  return {
    identity: { path: file, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, ino: s.ino },
    isFile: s.isFile(),
  };
}

async function identityOf(file: string): Promise<FileIdentity> {
  return (await statOf(file)).identity;
}

/**
 * The identities of the files read and of the folders holding them (and the source's own location); null when a
 * source names a folder rather than the files it read (an image folder: an image edited in place below it changes
 * no identity listed), so such a source is always read again.
 */
export async function identitiesOf(location: string, files: readonly string[]): Promise<FileIdentity[] | null> {
  const read = new Set(files);
  const folders = new Set([location, ...files.map((f) => path.dirname(f))]);
  const all = [...new Set([...folders, ...files])];
  const identities: FileIdentity[] = [];
  // In batches: an image folder can list tens of thousands of files. One stat each gives the identity and the kind.
  for (let i = 0; i < all.length; i += 256) {
    for (const { identity, isFile } of await Promise.all(all.slice(i, i + 256).map(statOf))) {
      if (read.has(identity.path) && !isFile) return null;
      identities.push(identity);
    }
  }
  return identities;
}

/** The memo at `key` when every file and folder it lists is unchanged, else null. */
export async function readIngestMemo(store: ArtifactStore, key: string): Promise<IngestMemo | null> {
  const uri = store.uri(key);
  try {
    if (!(await store.exists(uri))) return null;
    const memo = IngestMemoSchema.parse(JSON.parse((await store.get(uri)).toString('utf8')));
    for (let i = 0; i < memo.files.length; i += 256) {
      const batch = memo.files.slice(i, i + 256);
      const now = await Promise.all(batch.map((f) => identityOf(f.path)));
      if (now.some((n, j) => JSON.stringify(n) !== JSON.stringify(batch[j]))) return null;
    }
    return memo;
  } catch {
    return null; // unreadable, or a file is gone: read the source again
  }
}

export async function writeIngestMemo(store: ArtifactStore, key: string, memo: IngestMemo): Promise<void> {
  await store.put(key, JSON.stringify(memo));
}
