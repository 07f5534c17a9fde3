import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { DatasetError } from '../errors';
import { requireFile, shortReason } from './files';
import { CsvCells, CsvTokenizer, ESCAPED, MARK } from './csv-tokenizer';
import {
  type BatchedRowReader,
  MalformedRow,
  type RowBatch,
  type RowReadOptions,
  type SourceRow,
  type TableReadOptions,
} from './rows';

/** A CSV record (one row, quoted newlines included) longer than this is malformed, not buffered further. */
export const MAX_CSV_RECORD_BYTES = 1 << 20;
/** Bytes read from the file at a time: few awaits per pass, and little text (and offsets into it) held at once. */
const CHUNK_BYTES = 1 << 18;
/** More columns than this in the header is not a table Gantry trains on. */
export const MAX_CSV_COLUMNS = 10_000;

/** Cells that spell "no value" in CSV exports (pandas' defaults, less the exotic ones): read as null. */
// isMissingToken spells these out for speed: keep the two in step.
const MISSING_TOKENS = new Set(['', 'NA', 'N/A', 'NaN', 'nan', 'null', 'NULL', 'None']);

/**
 * CSV with a header row, streamed through CsvTokenizer: each row is a SourceRow of strings (missing tokens → null)
 * named `file:line`. A row with fewer or more cells than the header, or one the tokenizer cannot read (a stray or
 * unclosed quote, a record over MAX_CSV_RECORD_BYTES characters), is yielded as a MalformedRow and reading goes on.
 * Ingest reads it a chunk of rows at a time, as offsets into the text without a string per cell (`tables`).
 */
export const readCsvRows: BatchedRowReader & { tables: typeof readCsvTables } = Object.assign(
  async function* (file: string, options: RowReadOptions = {}): AsyncIterable<SourceRow | MalformedRow> {
    for await (const batch of readCsvBatches(file, options)) yield* batch.rows;
  },
  { batches: readCsvBatches, tables: readCsvTables },
);

async function* readCsvBatches(file: string, options: RowReadOptions = {}): AsyncIterable<RowBatch> {
  for await (const table of readCsvTables(file, options)) {
    const { cells, columns } = table;
    const rows: (SourceRow | MalformedRow)[] = [];
    for (let i = 0; i < table.count; i++) {
      const reason = table.reasons[i];
      if (reason !== undefined || !columns) {
        rows.push(new MalformedRow(table.where(i), reason ?? ''));
        continue;
      }
      const values: Record<string, unknown> = {};
      const first = table.field(i, 0);
      for (let c = 0; c < columns.length; c++) {
        values[columns[c]!] = (cells.flags[first + c]! & MISSING) !== 0 ? null : cells.value(first + c);
      }
      rows.push({ values, where: table.where(i) });
    }
    yield columns ? { rows, columns } : { rows };
  }
}

/** A field's mark: the cell spells a missing value (isMissingToken). */
export const MISSING = MARK;

/**
 * One chunk of a CSV's rows in file order, as offsets into the chunk's text: item i is malformed when `reasons[i]`
 * is set, else a row whose cell of column c is field `field(i, c)` of `cells` (MISSING in its flags when the cell
 * spells a missing value). Valid until the reader yields the next chunk (it reuses the arrays).
 */
export class CsvTable {
  /** The header's names; undefined while only malformed records came before it. */
  columns: readonly string[] | undefined;
  cells = new CsvCells();
  count = 0;
  /** Each item's record in `cells`. */
  records = new Int32Array(1024);
  reasons: (string | undefined)[] = [];

  constructor(readonly file: string) {}

  where(i: number): string {
    return `${this.file}:${this.cells.lines[this.records[i]!]}`;
  }

  /** The field of row i's cell of column c. */
  field(i: number, c: number): number {
    return this.cells.first[this.records[i]!]! + c;
  }

  add(record: number, reason?: string): void {
    if (this.count === this.records.length) {
      const bigger = new Int32Array(this.count * 2);
      bigger.set(this.records);
      this.records = bigger;
    }
    this.reasons[this.count] = reason;
    this.records[this.count++] = record;
  }
}

/** The file's text, decoded chunk by chunk (a character split between chunks kept whole); `onBytes` sees the bytes. */
async function* textOf(input: AsyncIterable<Buffer>, onBytes?: (bytes: Buffer) => void): AsyncIterable<string> {
  const decoder = new StringDecoder('utf8');
  for await (const bytes of input) {
    onBytes?.(bytes);
    const text = decoder.write(bytes);
    if (text !== '') yield text;
  }
  const rest = decoder.end();
  if (rest !== '') yield rest;
}

async function* readCsvTables(file: string, options: TableReadOptions = {}): AsyncIterable<CsvTable> {
  await requireFile(file);
  const input = createReadStream(file, { highWaterMark: CHUNK_BYTES });
  const tokenizer = new CsvTokenizer(MAX_CSV_RECORD_BYTES);
  const table = new CsvTable(file);
  const { cells } = table;
  let header: string[] | undefined;
  let yielded = 0;
  let done = false;
  try {
    const chunks = textOf(input as AsyncIterable<Buffer>, options.onBytes)[Symbol.asyncIterator]();
    while (!done) {
      const next = await chunks.next();
      if (next.done) {
        tokenizer.endCells(cells);
        done = true;
      } else tokenizer.pushCells(next.value, cells);
      table.count = 0;
      table.reasons.length = 0;
      const { first, text, starts, ends, flags } = cells;
      // The missing marks, before the records: only a suspect field can spell a missing value.
      for (let k = 0; k < cells.suspectCount; k++) {
        const f = cells.suspects[k]!;
        if (missingAt(text, starts[f]!, ends[f]!, flags[f]!, cells, f)) flags[f]! |= MISSING;
      }
      for (let r = 0; r < cells.records && yielded !== options.maxRows; r++) {
        const reason = cells.reasons[r];
        if (reason !== undefined) {
          table.add(r, reason);
        } else {
          const from = first[r]!;
          const fields = first[r + 1]! - from;
          if (fields === 1 && starts[from] === ends[from]) continue; // a blank line
          if (header === undefined) {
            const names: string[] = [];
            for (let f = from; f < from + fields; f++) names.push(cells.value(f));
            header = checkedHeader(file, names);
            table.columns = header;
            continue;
          }
          if (fields !== header.length) {
            table.add(r, `has ${fields} fields, the header has ${header.length}`);
          } else {
            table.add(r);
          }
        }
        yielded += 1;
      }
      if (table.count > 0) yield table;
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

const N = 0x4e;
const LOWER_N = 0x6e;

/** isMissingToken of field f (text from `start` to `end`) without making its string for ordinary cells. */
function missingAt(text: string, start: number, end: number, flags: number, cells: CsvCells, f: number): boolean {
  const n = end - start;
  if (n === 0) return true;
  const first = text.charCodeAt(start);
  const last = text.charCodeAt(end - 1);
  if (!(first > 0x20 && first < 0x7f && last > 0x20 && last < 0x7f)) return isMissingToken(cells.value(f));
  // A token has no quote in it, so a cell with doubled quotes is none of them.
  if (n > 4 || (first !== N && first !== LOWER_N) || (flags & ESCAPED) !== 0) return false;
  switch (n) {
    case 2:
      return text.startsWith('NA', start);
    case 3:
      return text.startsWith('N/A', start) || text.startsWith('NaN', start) || text.startsWith('nan', start);
    case 4:
      return text.startsWith('null', start) || text.startsWith('NULL', start) || text.startsWith('None', start);
    default:
      return false;
  }
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
