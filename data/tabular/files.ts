import { stat } from 'node:fs/promises';
import { DatasetError } from '../errors';

/** Checks that `file` is a readable regular file before a reader streams it; returns its size in bytes. */
export async function requireFile(file: string): Promise<number> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch {
    throw new DatasetError(file, 'file not found');
  }
  if (!info.isFile()) throw new DatasetError(file, 'not a file');
  return info.size;
}

/** Bounded error text: a reader's message may quote a whole hostile line. */
export function shortReason(text: string, max = 200): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}
