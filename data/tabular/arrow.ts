import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { DataType, RecordBatchReader, type Field, type RecordBatch } from 'apache-arrow';
import { DatasetError } from '../errors';
import { columnarFiles, isoDate, plainValue } from './columnar';
import type { MalformedRow, RowReader, SourceRow } from './rows';

/** The names a folder's Arrow IPC files carry (file format and stream format alike). */
const ARROW_EXTENSIONS = ['.arrow', '.arrows', '.feather', '.ipc'] as const;

/** The IPC file format starts with this; the stream format does not. */
const FILE_MAGIC = Buffer.from('ARROW1');

function unreadable(file: string, error: unknown): DatasetError {
  if (error instanceof DatasetError) return error;
  return new DatasetError(file, `not a readable Arrow IPC file or stream: ${(error as Error).message}`);
}

/** Arrow gives timestamps and dates as epoch milliseconds; the tabular ingest wants ISO text, as from Parquet. */
function cellConverter(field: Field): (value: unknown) => unknown {
  if (DataType.isTimestamp(field.type) || DataType.isDate(field.type)) {
    return (value) => (value === null || value === undefined ? null : isoDate(Number(value)));
  }
  return (value) => plainValue(value);
}

/**
 * Opens one file for batch-by-batch reading. The IPC file format is opened through a file handle, so
 * apache-arrow seeks to each batch from the footer (from a plain stream it would buffer the whole file); the
 * stream format is read from a file stream as it arrives.
 */
async function openReader(file: string): Promise<{ reader: RecordBatchReader; close: () => Promise<void> }> {
  const handle = await open(file);
  let kept = false;
  try {
    const head = Buffer.alloc(FILE_MAGIC.length);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (bytesRead === FILE_MAGIC.length && head.equals(FILE_MAGIC)) {
      const reader = await RecordBatchReader.from(handle);
      kept = true;
      return { reader, close: () => handle.close() };
    }
  } finally {
    if (!kept) await handle.close();
  }
  const stream = createReadStream(file);
  try {
    return { reader: await RecordBatchReader.from(stream), close: async () => void stream.destroy() };
  } catch (error) {
    stream.destroy();
    throw error;
  }
}

/**
 * The batches of an opened reader. A file's are read by index from its footer's list: apache-arrow's iterator over
 * a file whose footer lists no batches never settles (fuzz seed 3007 in test/data/fuzz.test.ts), so it is not used
 * for files; a stream has no footer and is read by its iterator.
 */
function batchesOf(reader: RecordBatchReader): AsyncIterator<RecordBatch> {
  if (!reader.isFile()) return reader[Symbol.asyncIterator]();
  let index = 0;
  let opened = false;
  return {
    async next(): Promise<IteratorResult<RecordBatch>> {
      // Opening reads the footer, which lists the batches.
      if (!opened) await reader.open();
      opened = true;
      if (index >= reader.numRecordBatches) return { done: true, value: undefined };
      const batch = await reader.readRecordBatch(index++);
      return batch ? { done: false, value: batch } : { done: true, value: undefined };
    },
  };
}

/**
 * Reads Apache Arrow IPC (file or stream format, e.g. Feather v2) through apache-arrow's RecordBatchReader, one
 * record batch at a time. With `maxRows` it stops inside the batch that holds the last wanted row and closes the
 * file. `where` is `file#row`, the row's zero-based index in its file.
 */
export const readArrowRows: RowReader = async function* readArrowRows(
  location: string,
  options = {},
): AsyncGenerator<SourceRow | MalformedRow> {
  let remaining = options.maxRows ?? Number.POSITIVE_INFINITY;
  for (const file of await columnarFiles(location, ARROW_EXTENSIONS, 'Arrow')) {
    if (remaining <= 0) return;
    let opened: Awaited<ReturnType<typeof openReader>>;
    try {
      opened = await openReader(file);
    } catch (error) {
      throw unreadable(file, error);
    }
    const { reader, close } = opened;
    try {
      let row = 0;
      const batches = batchesOf(reader);
      while (remaining > 0) {
        let next: IteratorResult<RecordBatch>;
        try {
          next = await batches.next();
        } catch (error) {
          throw unreadable(file, error);
        }
        if (next.done) break;
        const batch = next.value;
        const fields = batch.schema.fields;
        const columns = fields.map((field, j) => ({
          name: field.name,
          vector: batch.getChildAt(j),
          convert: cellConverter(field),
        }));
        const take = Math.min(batch.numRows, remaining);
        for (let i = 0; i < take; i++) {
          const values: Record<string, unknown> = {};
          for (const column of columns) values[column.name] = column.convert(column.vector?.get(i) ?? null);
          yield { values, where: `${file}#${row + i}` };
        }
        row += batch.numRows;
        remaining -= take;
      }
    } finally {
      await Promise.resolve(reader.cancel()).catch(() => {});
      await close().catch(() => {});
    }
  }
};
