import type { CsvTable } from './csv';

/**
 * The one interface every tabular reader (CSV, JSON Lines, JSON arrays, Parquet, Arrow, a user's
 * own source) gives the tabular ingest: rows as the file holds them, one at a time, so a file
 * larger than memory streams through in constant memory.
 */
export interface SourceRow {
  /** Column name → raw value as the file holds it (strings from CSV; JSON values; Parquet/Arrow scalars). */
  values: Record<string, unknown>;
  /** Where the row came from, for error messages: `file:line` (text formats) or `file#row` (columnar ones). */
  where: string;
}

export interface RowReadOptions {
  /** Stop after this many rows (quick runs, tests); undefined reads them all. */
  maxRows?: number;
}

/**
 * Reads the rows of one file (or a folder of files of one format) at `path`. A row it cannot make sense of is
 * yielded as a MalformedRow (not thrown), so ingest applies the spec's policy (fail, or skip and count) and reading
 * goes on; an unreadable file is thrown as a DatasetError.
 */
export type RowReader = (path: string, options?: RowReadOptions) => AsyncIterable<SourceRow | MalformedRow>;

/** A row the reader could not make sense of (a short CSV row, a line that is not JSON): `where` names it. */
export class MalformedRow extends Error {
  constructor(
    readonly where: string,
    readonly reason: string,
  ) {
    super(`${where}: ${reason}`);
    this.name = 'MalformedRow';
  }
}

/** Rows read together. `columns`, when given, are exactly the keys of the values of every SourceRow in the batch. */
export interface RowBatch {
  rows: (SourceRow | MalformedRow)[];
  columns?: readonly string[];
}

/** A RowReader that can also hand over its rows a batch at a time: one await per batch instead of one per row. */
export interface BatchedRowReader extends RowReader {
  batches(path: string, options?: RowReadOptions): AsyncIterable<RowBatch>;
}

/** A reader that also hands over chunks of rows as CSV cells in place (csv.ts): ingest reads those. */
export interface TableReader extends RowReader {
  tables(path: string, options?: TableReadOptions): AsyncIterable<CsvTable>;
}

export interface TableReadOptions extends RowReadOptions {
  /** Sees every byte of the file as it is read, in order: its digest without reading it a second time. */
  onBytes?: (bytes: Buffer) => void;
}

const ADAPTED_BATCH_ROWS = 1024;

/**
 * The rows of any reader in batches: a BatchedRowReader's own, or another reader's rows gathered (rows read before a
 * reader's error are handed over before the error, so the error order of a row-at-a-time read is kept).
 */
export async function* rowBatches(reader: RowReader, path: string): AsyncIterable<RowBatch> {
  const batches = (reader as Partial<BatchedRowReader>).batches;
  if (batches) {
    yield* batches.call(reader, path);
    return;
  }
  let rows: (SourceRow | MalformedRow)[] = [];
  try {
    for await (const row of reader(path)) {
      rows.push(row);
      if (rows.length === ADAPTED_BATCH_ROWS) {
        yield { rows };
        rows = [];
      }
    }
  } catch (error) {
    if (rows.length > 0) yield { rows };
    throw error;
  }
  if (rows.length > 0) yield { rows };
}
