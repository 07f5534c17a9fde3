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
