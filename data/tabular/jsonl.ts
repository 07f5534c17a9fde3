import { createReadStream } from 'node:fs';
import { DatasetError } from '../errors';
import { requireFile, shortReason } from './files';
import { MalformedRow, type RowReader } from './rows';

/** A JSON Lines line longer than this is malformed: it is skipped up to its newline, never buffered whole. */
export const MAX_JSONL_LINE_BYTES = 1 << 20;

/**
 * JSON Lines: one JSON object per line, named `file:line`. Blank lines are skipped; a line that is not JSON, not an
 * object, or longer than MAX_JSONL_LINE_BYTES is a MalformedRow.
 */
export const readJsonlRows: RowReader = async function* (file, options = {}) {
  await requireFile(file);
  let line = 0;
  let yielded = 0;
  for await (const item of lines(file)) {
    line += 1;
    const where = `${file}:${line}`;
    if (item === TOO_LONG) {
      yield new MalformedRow(where, `line is longer than ${MAX_JSONL_LINE_BYTES} bytes`);
    } else {
      const text = item.trim();
      if (text === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        value = new MalformedRow(where, `not JSON: ${shortReason((error as Error).message)}`);
      }
      if (value instanceof MalformedRow) yield value;
      else if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        yield new MalformedRow(where, 'is not a JSON object');
      } else yield { values: value as Record<string, unknown>, where };
    }
    if (++yielded === options.maxRows) return;
  }
};

const TOO_LONG = Symbol('too long');

/** The file's lines as text (without the newline), each bounded: an overlong one comes out as TOO_LONG. */
async function* lines(file: string): AsyncGenerator<string | typeof TOO_LONG> {
  const input = createReadStream(file);
  let parts: Buffer[] = [];
  let length = 0;
  let overlong = false;
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let start = 0;
      for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
        if (!overlong && length + newline - start <= MAX_JSONL_LINE_BYTES) parts.push(chunk.subarray(start, newline));
        else overlong = true;
        yield overlong ? TOO_LONG : Buffer.concat(parts).toString('utf8');
        parts = [];
        length = 0;
        overlong = false;
        start = newline + 1;
      }
      const rest = chunk.length - start;
      if (overlong || length + rest > MAX_JSONL_LINE_BYTES) {
        overlong = true;
        parts = [];
      } else if (rest > 0) {
        parts.push(chunk.subarray(start));
        length += rest;
      }
    }
  } catch (error) {
    throw new DatasetError(file, `cannot read: ${shortReason((error as Error).message)}`);
  } finally {
    input.destroy();
  }
  if (overlong) yield TOO_LONG;
  else if (length > 0) yield Buffer.concat(parts).toString('utf8');
}
