import { createReadStream } from 'node:fs';
import { parse, type CsvError, type Parser } from 'csv-parse';
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
  // csv-parse's `info` option would give each record's line, but copies an info object per record (a fifth of
  // the parse time): lines are counted here instead, from each record's own newlines, blank lines included.
  const parser: Parser = parse({
    bom: true,
    relax_column_count: true,
    max_record_size: MAX_CSV_RECORD_BYTES,
    skip_records_with_error: true,
    on_skip: (error: CsvError | undefined) => {
      // Pushed into the record stream, so it arrives after the records before it and before those after it.
      const line = (error as { lines?: number } | undefined)?.lines ?? 0;
      parser.push(new Skipped(line, shortReason(error?.message ?? 'unreadable record')));
      return undefined;
    },
  });
  const input = createReadStream(file);
  input.on('error', (error) => parser.destroy(error));
  input.pipe(parser);

  let header: string[] | undefined;
  let yielded = 0;
  let nextLine = 1;
  let lastSkipped = 0;
  try {
    for await (const item of parser as AsyncIterable<string[] | Skipped>) {
      if (item instanceof Skipped) {
        // csv-parse may report one bad record once per bad field: one malformed row is enough.
        if (item.line > 0 && item.line === lastSkipped) continue;
        lastSkipped = item.line;
        yield new MalformedRow(`${file}:${item.line || '?'}`, item.reason);
        if (item.line > 0) nextLine = item.line + 1;
        if (++yielded === options.maxRows) return;
        continue;
      }
      const record = item;
      const line = nextLine;
      nextLine = line + 1 + newlinesIn(record);
      if (record.length === 1 && record[0] === '') continue; // a blank line
      if (header === undefined) {
        header = checkedHeader(file, record);
        continue;
      }
      const where = `${file}:${line}`;
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
  if (header === undefined) throw new DatasetError(file, 'empty: no header row');
};

/** A record csv-parse skipped (an unclosed quote, an overlong record), at the line it was on. */
class Skipped {
  constructor(
    readonly line: number,
    readonly reason: string,
  ) {}
}

/** Newlines inside the record's quoted cells: the lines it spans past its first. */
function newlinesIn(record: string[]): number {
  let newlines = 0;
  for (const cell of record) {
    for (let i = cell.indexOf('\n'); i !== -1; i = cell.indexOf('\n', i + 1)) newlines += 1;
  }
  return newlines;
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
