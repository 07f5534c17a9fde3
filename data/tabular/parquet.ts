import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { DatasetError } from '../errors';
import { columnarFiles, plainValue } from './columnar';
import type { MalformedRow, RowReader, SourceRow } from './rows';

/** The names a folder's Parquet parts carry. */
const PARQUET_EXTENSIONS = ['.parquet', '.parq', '.pq'] as const;

function unreadable(file: string, error: unknown): DatasetError {
  if (error instanceof DatasetError) return error;
  return new DatasetError(file, `not a readable Parquet file: ${(error as Error).message}`);
}

/**
 * Reads Apache Parquet through hyparquet (with hyparquet-compressors for Snappy, Gzip, Zstd, Brotli, LZ4), one row
 * group at a time: only the footer and the current row group's column chunks are in memory, so a file larger than
 * memory streams through. With `maxRows` it stops after the row group that holds the last wanted row, reading
 * only that group's first rows. `where` is `file#row`, the row's zero-based index in its file.
 */
export const readParquetRows: RowReader = async function* readParquetRows(
  location: string,
  options = {},
): AsyncGenerator<SourceRow | MalformedRow> {
  let remaining = options.maxRows ?? Number.POSITIVE_INFINITY;
  for (const file of await columnarFiles(location, PARQUET_EXTENSIONS, 'Parquet')) {
    if (remaining <= 0) return;
    let metadata: FileMetaData;
    let buffer: Awaited<ReturnType<typeof asyncBufferFromFile>>;
    try {
      buffer = await asyncBufferFromFile(file);
      metadata = await parquetMetadataAsync(buffer);
    } catch (error) {
      throw unreadable(file, error);
    }
    let groupStart = 0;
    for (const group of metadata.row_groups) {
      if (remaining <= 0) return;
      const groupRows = Number(group.num_rows);
      const rowEnd = groupStart + Math.min(groupRows, remaining);
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, rowStart: groupStart, rowEnd, compressors });
      } catch (error) {
        throw unreadable(file, error);
      }
      if (rows.length !== rowEnd - groupStart) {
        throw new DatasetError(
          file,
          `row group at row ${groupStart} gave ${rows.length} rows, its metadata promises ${rowEnd - groupStart}`,
        );
      }
      for (let i = 0; i < rows.length; i++) {
        const values: Record<string, unknown> = {};
        for (const [column, value] of Object.entries(rows[i]!)) values[column] = plainValue(value);
        yield { values, where: `${file}#${groupStart + i}` };
      }
      remaining -= rows.length;
      groupStart += groupRows;
    }
  }
};
