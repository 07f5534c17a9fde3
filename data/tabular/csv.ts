import { createReadStream } from 'node:fs';
import { DatasetError } from '../errors';
import { requireFile, shortReason } from './files';
import { CsvTokenizer, type CsvBatch } from './csv-tokenizer';
import { type BatchedRowReader, MalformedRow, type RowBatch, type RowReadOptions, type SourceRow } from './rows';

/** A CSV record (one row, quoted newlines included) longer than this is malformed, not buffered further. */
export const MAX_CSV_RECORD_BYTES = 1 << 20;
/** Characters read from the file at a time. */
const CHUNK_BYTES = 1 << 16;
/** More columns than this in the header is not a table Gantry trains on. */
export const MAX_CSV_COLUMNS = 10_000;

/** Cells that spell "no value" in CSV exports (pandas' defaults, less the exotic ones): read as null. */
// isMissingToken spells these out for speed: keep the two in step.
const MISSING_TOKENS = new Set(['', 'NA', 'N/A', 'NaN', 'nan', 'null', 'NULL', 'None']);

/**
 * CSV with a header row, streamed through CsvTokenizer: each row is a SourceRow of strings (missing tokens → null)
 * named `file:line`. A row with fewer or more cells than the header, or one the tokenizer cannot read (a stray or
 * unclosed quote, a record over MAX_CSV_RECORD_BYTES characters), is yielded as a MalformedRow and reading goes on.
 * Ingest reads it a chunk of rows at a time (`batches`).
 */
export const readCsvRows: BatchedRowReader = Object.assign(
  async function* (file: string, options: RowReadOptions = {}): AsyncIterable<SourceRow | MalformedRow> {
    for await (const batch of readCsvBatches(file, options)) yield* batch.rows;
  },
  { batches: readCsvBatches },
);

async function* readCsvBatches(file: string, options: RowReadOptions = {}): AsyncIterable<RowBatch> {
  await requireFile(file);
  const input = createReadStream(file, { encoding: 'utf8', highWaterMark: CHUNK_BYTES });
  const tokenizer = new CsvTokenizer(MAX_CSV_RECORD_BYTES);
  const batch: CsvBatch = { lines: [], items: [] };
  let header: string[] | undefined;
  let yielded = 0;
  let done = false;
  try {
    const chunks = input[Symbol.asyncIterator]() as AsyncIterator<string>;
    while (!done) {
      const next = await chunks.next();
      if (next.done) {
        tokenizer.end(batch);
        done = true;
      } else tokenizer.push(next.value, batch);
      const { lines, items } = batch;
      const rows: (SourceRow | MalformedRow)[] = [];
      for (let i = 0; i < items.length && yielded !== options.maxRows; i++) {
        const item = items[i]!;
        const where = `${file}:${lines[i]}`;
        if (typeof item === 'string') {
          rows.push(new MalformedRow(where, item));
        } else {
          if (item.length === 1 && item[0] === '') continue; // a blank line
          if (header === undefined) {
            header = checkedHeader(file, item);
            continue;
          }
          if (item.length !== header.length) {
            rows.push(new MalformedRow(where, `has ${item.length} fields, the header has ${header.length}`));
          } else {
            const values: Record<string, unknown> = {};
            for (let c = 0; c < header.length; c++) {
              const cell = item[c]!;
              values[header[c]!] = isMissingToken(cell) ? null : cell;
            }
            rows.push({ values, where });
          }
        }
        yielded += 1;
      }
      lines.length = 0;
      items.length = 0;
      if (rows.length > 0) yield header ? { rows, columns: header } : { rows };
      if (yielded === options.maxRows) return;
    }
  } catch (error) {
    if (error instanceof DatasetError) throw error;
    throw new DatasetError(file, `cannot read CSV: ${shortReason((error as Error).message)}`);
  } finally {
    input.destroy();
  }
  if (header === undefined) throw new DatasetError(file, 'empty: no header row');
}

/** Whether a cell spells "no value" (MISSING_TOKENS), without a Set lookup or a trim for ordinary cells. */
export function isMissingToken(cell: string): boolean {
  const n = cell.length;
  if (n === 0) return true;
  const first = cell.charCodeAt(0);
  const last = cell.charCodeAt(n - 1);
  if (!(first > 0x20 && first < 0x7f && last > 0x20 && last < 0x7f)) return MISSING_TOKENS.has(cell.trim());
  switch (n) {
    case 2:
      return cell === 'NA';
    case 3:
      return cell === 'N/A' || cell === 'NaN' || cell === 'nan';
    case 4:
      return cell === 'null' || cell === 'NULL' || cell === 'None';
    default:
      return false;
  }
}

function checkedHeader(file: string, record: string[]): string[] {
  if (record.length > MAX_CSV_COLUMNS) {
    throw new DatasetError(`${file}:1`, `header has ${record.length} columns, more than ${MAX_CSV_COLUMNS}`);
  }
  const names = record.map((name) => name.trim());
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (name === '') throw new DatasetError(`${file}:1`, `header column ${i + 1} has no name`);
    if (seen.has(name)) throw new DatasetError(`${file}:1`, `header names column ${JSON.stringify(name)} twice`);
    seen.add(name);
  });
  return names;
}
