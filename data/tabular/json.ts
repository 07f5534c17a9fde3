import { readFile } from 'node:fs/promises';
import { DatasetError } from '../errors';
import { requireFile, shortReason } from './files';
import { MalformedRow, type RowReader } from './rows';

/**
 * A JSON array is parsed whole (JSON.parse has no streaming mode), so its size is bounded: past this, the file must
 * be JSON Lines or CSV, which stream in constant memory.
 */
export const MAX_JSON_ARRAY_BYTES = 512 * 1024 * 1024;

/** A JSON array of objects (vega-datasets' layout); element i is named `file#i+1`; a non-object is malformed. */
export const readJsonArrayRows: RowReader = async function* (file, options = {}) {
  const size = await requireFile(file);
  if (size > MAX_JSON_ARRAY_BYTES) {
    throw new DatasetError(
      file,
      `is ${size} bytes; a JSON array is read whole and may be at most ${MAX_JSON_ARRAY_BYTES} bytes ` +
        '(write JSON Lines or CSV, which stream)',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new DatasetError(file, `not JSON: ${shortReason((error as Error).message)}`);
  }
  if (!Array.isArray(parsed)) throw new DatasetError(file, 'is not a JSON array of objects');
  const count = Math.min(parsed.length, options.maxRows ?? parsed.length);
  for (let i = 0; i < count; i++) {
    const value: unknown = parsed[i];
    const where = `${file}#${i + 1}`;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield new MalformedRow(where, 'is not a JSON object');
    } else yield { values: value as Record<string, unknown>, where };
  }
};
