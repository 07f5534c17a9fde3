import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../errors';

/**
 * What the columnar readers (Parquet, Arrow) share: which files a path names, and how a typed cell becomes the plain
 * JS value the tabular ingest expects from every source (numbers, strings, booleans, null).
 */

/**
 * The files a columnar source reads: the file itself, or the files with one of `extensions` directly in a folder,
 * in name order (a dataset written as `part-0000.parquet`, `part-0001.parquet`, ...).
 */
export async function columnarFiles(
  location: string,
  extensions: readonly string[],
  format: string,
): Promise<string[]> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(location);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DatasetError(location, code === 'ENOENT' ? 'file not found' : `cannot read: ${(error as Error).message}`);
  }
  if (info.isFile()) return [location];
  if (!info.isDirectory()) throw new DatasetError(location, 'neither a file nor a folder');
  const names = (await readdir(location))
    .filter((name) => !name.startsWith('.') && extensions.some((ext) => name.toLowerCase().endsWith(ext)))
    .sort();
  if (names.length === 0) {
    throw new DatasetError(location, `folder holds no ${format} files (looked for ${extensions.join(', ')})`);
  }
  return names.map((name) => path.join(location, name));
}

/** An integer too large for a double stays exact as a decimal string rather than silently rounding. */
function plainBigInt(value: bigint): number | string {
  const asNumber = Number(value);
  return Number.isSafeInteger(asNumber) ? asNumber : value.toString();
}

/** A Date as ISO text; an invalid one (out of JS's range) as null, like any other missing value. */
export function isoDate(value: Date | number): string | null {
  const date = typeof value === 'number' ? new Date(value) : value;
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * Makes a cell plain JSON-able JS: BigInt → number (decimal string when it is not a safe integer), Date → ISO
 * string, NaN → null (the missing value of float columns written by pandas), binary → base64, nested lists and
 * structs recursively. Depth is bounded so a hostile nesting cannot blow the stack.
 */
export function plainValue(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'bigint':
      return plainBigInt(value);
    case 'number':
      return Number.isNaN(value) ? null : value;
    case 'string':
    case 'boolean':
      return value;
    case 'object':
      break;
    default:
      return String(value);
  }
  if (depth > 32) throw new RangeError('values nested more than 32 levels deep');
  if (value instanceof Date) return isoDate(value);
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (ArrayBuffer.isView(value) || Array.isArray(value)) {
    return Array.from(value as ArrayLike<unknown>, (item) => plainValue(item, depth + 1));
  }
  // Arrow's Vector and StructRow/MapRow know their own JSON form; anything else is a plain object.
  const json = (value as { toJSON?: () => unknown }).toJSON;
  const source = typeof json === 'function' ? json.call(value) : value;
  if (Array.isArray(source)) return source.map((item) => plainValue(item, depth + 1));
  if (typeof source !== 'object' || source === null) return plainValue(source, depth + 1);
  return Object.fromEntries(Object.entries(source).map(([key, item]) => [key, plainValue(item, depth + 1)]));
}
