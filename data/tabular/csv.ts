import { createReadStream } from 'node:fs';
import { parse, type CsvError } from 'csv-parse';
import { DatasetError } from '../errors';
import { requireFile, shortReason } from './files';
import { MalformedRow, type RowReader, type SourceRow } from './rows';

/** A CSV record (one row, quoted newlines included) longer than this is malformed, not buffered further. */
export const MAX_CSV_RECORD_BYTES = 1 << 20;
/** More columns than this in the header is not a table Gantry trains on. */
export const MAX_CSV_COLUMNS = 10_000;

/** Cells that spell "no value" in CSV exports (pandas' defaults, less the exotic ones): read as null. */
const MISSING_TOKENS = new Set(['', 'NA', 'N/A', 'NaN', 'nan', 'null', 'NULL', 'None']);

/**
 * CSV with a header row, streamed through csv-parse: each row is a SourceRow of strings (missing tokens → null)
 * named `file:line`. A row with fewer or more cells than the header, or one csv-parse cannot read (an unclosed
 * quote, a record over MAX_CSV_RECORD_BYTES), is yielded as a MalformedRow and reading goes on.
 */
export const readCsvRows: RowReader = async function* (file, options = {}) {
  await requireFile(file);
  const skipped: MalformedRow[] = [];
  const parser = parse({
    bom: true,
    info: true,
    relax_column_count: true,
    skip_empty_lines: true,
    max_record_size: MAX_CSV_RECORD_BYTES,
    skip_records_with_error: true,
    on_skip: (error: CsvError | undefined) => {
      const line = (error as { lines?: number } | undefined)?.lines;
      skipped.push(new MalformedRow(`${file}:${line ?? '?'}`, shortReason(error?.message ?? 'unreadable record')));
      return undefined;
    },
  });
  const input = createReadStream(file);
  input.on('error', (error) => parser.destroy(error));
  input.pipe(parser);

  let header: string[] | undefined;
  let yielded = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      while (skipped.length > 0) {
        yield skipped.shift()!;
        if (++yielded === options.maxRows) return;
      }
      if (header === undefined) {
        header = checkedHeader(file, record);
        continue;
      }
      const where = `${file}:${firstLine(record, info.lines)}`;
      if (record.length !== header.length) {
        yield new MalformedRow(where, `has ${record.length} fields, the header has ${header.length}`);
      } else {
        const values: Record<string, unknown> = {};
        for (let c = 0; c < header.length; c++) {
          const cell = record[c]!;
          values[header[c]!] = MISSING_TOKENS.has(cell.trim()) ? null : cell;
        }
        yield { values, where } satisfies SourceRow;
      }
      if (++yielded === options.maxRows) return;
    }
  } catch (error) {
    if (error instanceof DatasetError) throw error;
    throw new DatasetError(file, `cannot read CSV: ${shortReason((error as Error).message)}`);
  } finally {
    input.destroy();
  }
  for (const row of skipped) {
    yield row;
    if (++yielded === options.maxRows) return;
  }
  if (header === undefined) throw new DatasetError(file, 'empty: no header row');
};

/** The line a record starts on: csv-parse counts the line it ends on, after any newlines inside quoted cells. */
function firstLine(record: string[], lastLine: number): number {
  let newlines = 0;
  for (const cell of record) {
    for (let i = cell.indexOf('\n'); i !== -1; i = cell.indexOf('\n', i + 1)) newlines += 1;
  }
  return lastLine - newlines;
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
