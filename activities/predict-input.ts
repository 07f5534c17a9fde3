import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { DatasetError } from '../data/errors';
import { decodeImageBytes, ImageDecodeError } from '../data/image-decode';
import { readIdxFile } from '../data/idx';
import { RecordError, splitEncoded, type ImagePreprocessing } from '../data/preprocessing';
import { readArrowRows } from '../data/tabular/arrow';
import { MISSING, readCsvRows } from '../data/tabular/csv';
import { readJsonArrayRows } from '../data/tabular/json';
import { readJsonlRows } from '../data/tabular/jsonl';
import { readParquetRows } from '../data/tabular/parquet';
import { MalformedRow, rowBatches, type RowReader } from '../data/tabular/rows';
import { columnarFiles, plainValue } from '../data/tabular/columnar';
import type { Servable } from '../serving/loader';
import { rowSize } from '../serving/signature';
import type { DenseTensor } from '../serving/tensors';
import type { BadRow, PredictInputKind, ShardRange } from '../workflows/batch-predict-api';

/**
 * The rows of a batch prediction's input, the way the version takes them: the input's kind (IDX images, a folder of
 * PNG/JPEG images, CSV, JSON Lines, a JSON array, Parquet, Arrow — the data sources' own readers), its row count for
 * the plan, and one shard's rows [start, end) as batches of the model's input tensors, with the preprocessing saved
 * with the version applied as the model server applies it (serving/records.ts, serving/images.ts): a record is
 * encoded by its RecordEncoder, an image decoded by data/image-decode.ts, IDX pixels fed as they are (0..255).
 * A row that cannot be encoded is a bad row, named by its place in the input (`file:line`, `file#row`, the image's
 * file) — never a thrown error, so the caller applies the job's policy.
 */

const PARQUET_EXTENSIONS = ['.parquet', '.parq', '.pq'];
const ARROW_EXTENSIONS = ['.arrow', '.feather', '.ipc'];
const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'];
/** Images listed in a folder at most (each is a row): a folder larger than this is not read. */
export const MAX_IMAGE_FILES = 10_000_000;
/** An image file larger than this is a bad row, not read. */
const MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024;
/** Images decoded at once (libvips has threads of its own). */
const DECODE_CONCURRENCY = 4;
const MAX_DEPTH = 8;

const TABULAR_READERS: Record<'csv' | 'jsonl' | 'json' | 'parquet' | 'arrow', RowReader> = {
  csv: readCsvRows,
  jsonl: readJsonlRows,
  json: readJsonArrayRows,
  parquet: readParquetRows,
  arrow: readArrowRows,
};

const hasExtension = (name: string, extensions: readonly string[]) =>
  extensions.some((ext) => name.toLowerCase().endsWith(ext));

/** What `location` holds, by its name (a file) or by what is in it (a folder). */
export async function inputKindOf(location: string): Promise<PredictInputKind> {
  const info = await stat(location).catch(() => undefined);
  if (!info) throw new DatasetError(location, 'not found');
  const name = path.basename(location).toLowerCase().replace(/\.gz$/, '');
  if (info.isFile()) {
    if (name.endsWith('.csv')) return 'csv';
    if (name.endsWith('.jsonl') || name.endsWith('.ndjson')) return 'jsonl';
    if (name.endsWith('.json')) return 'json';
    if (hasExtension(name, PARQUET_EXTENSIONS)) return 'parquet';
    if (hasExtension(name, ARROW_EXTENSIONS)) return 'arrow';
    if (/idx3-ubyte$|\.idx3?$/.test(name)) return 'idx';
    throw new DatasetError(
      location,
      'unknown input format: name a .csv, .jsonl, .json, .parquet, .arrow or IDX image file ' +
        '(…-idx3-ubyte[.gz]), or a folder of images or of Parquet/Arrow parts',
    );
  }
  if (!info.isDirectory()) throw new DatasetError(location, 'neither a file nor a folder');
  const names = await readdir(location);
  if (names.some((n) => hasExtension(n, PARQUET_EXTENSIONS))) return 'parquet';
  if (names.some((n) => hasExtension(n, ARROW_EXTENSIONS))) return 'arrow';
  return 'images';
}

/** Every PNG/JPEG under `dir` (subfolders included), in path order: row i is the i-th of them. */
async function imageFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (folder: string, depth: number): Promise<void> => {
    const entries = (await readdir(folder, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const file = path.join(folder, entry.name);
      if (entry.isDirectory()) {
        if (depth >= MAX_DEPTH) throw new DatasetError(file, `folders nest deeper than ${MAX_DEPTH} levels`);
        await walk(file, depth + 1);
      } else if (entry.isFile() && hasExtension(entry.name, IMAGE_EXTENSIONS)) {
        files.push(file);
        if (files.length > MAX_IMAGE_FILES) throw new DatasetError(dir, `holds over ${MAX_IMAGE_FILES} images`);
      }
    }
  };
  await walk(dir, 0);
  return files;
}

/** Rows of the input: items of the IDX file, images of the folder, rows (bad ones included) of a table. */
export async function countInputRows(kind: PredictInputKind, location: string): Promise<number> {
  switch (kind) {
    case 'idx':
      // Read whole: a file cut short fails here, before any shard runs.
      return (await readIdxFile(location, 'images')).dims[0] ?? 0;
    case 'images':
      return (await imageFiles(location)).length;
    case 'csv': {
      let rows = 0;
      for await (const table of readCsvRows.tables(location)) rows += table.count;
      return rows;
    }
    case 'parquet': {
      let rows = 0;
      for (const file of await columnarFiles(location, PARQUET_EXTENSIONS, 'Parquet')) {
        try {
          rows += Number((await parquetMetadataAsync(await asyncBufferFromFile(file))).num_rows);
        } catch (error) {
          throw new DatasetError(file, `not a readable Parquet file: ${(error as Error).message}`);
        }
      }
      return rows;
    }
    default: {
      let rows = 0;
      for await (const batch of rowBatches(TABULAR_READERS[kind], location)) rows += batch.rows.length;
      return rows;
    }
  }
}

/** Rows read from a Parquet file at a time: hyparquet decodes only the pages of the rows asked for. */
const PARQUET_CHUNK_ROWS = 16_384;

/**
 * Rows [start, end) of a Parquet file or folder of parts, read by row range (hyparquet's rowStart/rowEnd), so a
 * shard far into the input does not decode the rows before it. `where` is `file#row`, as the Parquet source names
 * rows.
 */
export async function* parquetRange(
  location: string,
  range: { start: number; end: number },
): AsyncGenerator<{ values: Record<string, unknown>; where: string }> {
  let offset = 0;
  for (const file of await columnarFiles(location, PARQUET_EXTENSIONS, 'Parquet')) {
    if (offset >= range.end) return;
    let buffer: Awaited<ReturnType<typeof asyncBufferFromFile>>;
    let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
    try {
      buffer = await asyncBufferFromFile(file);
      metadata = await parquetMetadataAsync(buffer);
    } catch (error) {
      throw new DatasetError(file, `not a readable Parquet file: ${(error as Error).message}`);
    }
    const rows = Number(metadata.num_rows);
    const from = Math.max(range.start - offset, 0);
    const to = Math.min(range.end - offset, rows);
    for (let chunk = from; chunk < to; chunk += PARQUET_CHUNK_ROWS) {
      const rowEnd = Math.min(to, chunk + PARQUET_CHUNK_ROWS);
      let objects: Record<string, unknown>[];
      try {
        objects = await parquetReadObjects({ file: buffer, metadata, rowStart: chunk, rowEnd, compressors });
      } catch (error) {
        throw new DatasetError(file, `not a readable Parquet file: ${(error as Error).message}`);
      }
      if (objects.length !== rowEnd - chunk)
        throw new DatasetError(file, `rows ${chunk}-${rowEnd} gave ${objects.length} rows`);
      for (let i = 0; i < objects.length; i++) {
        const values: Record<string, unknown> = {};
        for (const [column, value] of Object.entries(objects[i]!)) values[column] = plainValue(value);
        yield { values, where: `${file}#${chunk + i}` };
      }
    }
    offset += rows;
  }
}

/** A batch of one shard's rows, ready for the model. */
export interface InputBatch {
  /** The input row index of each predicted row (in order; bad rows left out). */
  rows: number[];
  /** The model's inputs for those rows (signature order); empty when every row of the batch was bad. */
  inputs: DenseTensor[];
  bad: (BadRow & { row: number })[];
}

/** How the version takes pixels: its image preprocessing when it has one, else its one input's shape. */
function pixelShape(servable: Servable): { size: number; decode?: ImagePreprocessing } {
  const { signature } = servable;
  if (signature.images) return { size: rowSize(signature.images.input), decode: signature.images.preprocessing };
  const [input] = signature.inputs;
  if (signature.inputs.length !== 1 || !input || input.dtype !== 'float32')
    throw new DatasetError(
      'model',
      `takes ${signature.inputs.map((s) => `${s.key} ${s.dtype} [${s.shape.join(', ')}]`).join('; ')}, not one ` +
        'float32 image input',
    );
  return { size: rowSize(input) };
}

function imageTensor(servable: Servable, data: Float32Array, rows: number): DenseTensor[] {
  const input = servable.signature.images?.input ?? servable.signature.inputs[0]!;
  return [{ dtype: 'float32', shape: [rows, ...input.shape.slice(1)], data }];
}

/** One IDX file's pixels, kept while shards of the same file follow each other on this worker. */
let idxCache: { key: string; dims: number[]; data: Uint8Array } | undefined;

async function idxImages(file: string): Promise<{ dims: number[]; data: Uint8Array }> {
  const info = await stat(file);
  const key = `${file}:${info.size}:${info.mtimeMs}`;
  if (idxCache?.key !== key) idxCache = { key, ...(await readIdxFile(file, 'images')) };
  return idxCache;
}

async function* idxBatches(
  servable: Servable,
  file: string,
  range: ShardRange,
  batchRows: number,
): AsyncGenerator<InputBatch> {
  const { dims, data } = await idxImages(file);
  const itemSize = dims.slice(1).reduce((a, b) => a * b, 1);
  const { size, decode } = pixelShape(servable);
  if (itemSize !== size || (decode && decode.channels !== 1))
    throw new DatasetError(
      file,
      `holds ${dims.slice(1).join('x')} greyscale images; the model takes ` +
        (decode ? `${decode.height}x${decode.width}x${decode.channels}` : `${size} values a row`),
    );
  if (range.end > (dims[0] ?? 0)) throw new DatasetError(file, `has ${dims[0]} images, the plan says ${range.end}`);
  for (let start = range.start; start < range.end; start += batchRows) {
    const end = Math.min(range.end, start + batchRows);
    const pixels = Float32Array.from(data.subarray(start * size, end * size));
    yield {
      rows: Array.from({ length: end - start }, (_, i) => start + i),
      inputs: imageTensor(servable, pixels, end - start),
      bad: [],
    };
  }
}

async function* imageFolderBatches(
  servable: Servable,
  dir: string,
  range: ShardRange,
  batchRows: number,
): AsyncGenerator<InputBatch> {
  const { size, decode } = pixelShape(servable);
  if (!decode)
    throw new DatasetError(dir, 'the version has no image preprocessing.json: it does not say what size to decode to');
  const files = (await imageFiles(dir)).slice(range.start, range.end);
  for (let offset = 0; offset < files.length; offset += batchRows) {
    const chunk = files.slice(offset, offset + batchRows);
    const decoded = new Array<Buffer | BadRow>(chunk.length);
    let next = 0;
    const worker = async () => {
      while (next < chunk.length) {
        const i = next++;
        const file = chunk[i]!;
        try {
          const info = await stat(file);
          if (info.size > MAX_IMAGE_FILE_BYTES) throw new ImageDecodeError(`${info.size} bytes, over the limit`);
          decoded[i] = await decodeImageBytes(await readFile(file), decode);
        } catch (error) {
          decoded[i] = { where: file, reason: `not a readable PNG or JPEG: ${(error as Error).message}` };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, chunk.length) }, worker));
    const rows: number[] = [];
    const bad: InputBatch['bad'] = [];
    const data = new Float32Array(chunk.length * size);
    decoded.forEach((item, i) => {
      const row = range.start + offset + i;
      if (Buffer.isBuffer(item)) {
        data.set(item, rows.length * size);
        rows.push(row);
      } else bad.push({ row, ...item });
    });
    yield {
      rows,
      inputs: rows.length ? imageTensor(servable, data.subarray(0, rows.length * size), rows.length) : [],
      bad,
    };
  }
}

async function* tabularBatches(
  servable: Servable,
  kind: 'csv' | 'jsonl' | 'json' | 'parquet' | 'arrow',
  location: string,
  range: ShardRange,
  batchRows: number,
): AsyncGenerator<InputBatch> {
  const records = servable.signature.records;
  if (!records)
    throw new DatasetError(
      location,
      'is a table, but the version has no tabular preprocessing.json: it does not say how a row becomes its input',
    );
  const { encoder } = records;
  const size = encoder.featureSize;
  const droppedBy = new Set(records.preprocessing.columns.filter((c) => c.missing === 'drop').map((c) => c.name));
  let data = new Float32Array(batchRows * size);
  let rows: number[] = [];
  let bad: InputBatch['bad'] = [];
  const flush = (): InputBatch => {
    const n = rows.length;
    const encoded = data.subarray(0, n * size);
    let inputs: DenseTensor[] = [];
    if (n > 0 && records.split) {
      const parts = splitEncoded(records.split.layout, encoded, n);
      const widths = new Map(records.split.layout.inputs.map((i) => [i.name, i.width]));
      inputs = records.split.order.map((name) => ({
        dtype: 'float32',
        shape: [n, widths.get(name)!],
        data: parts.get(name)!,
      }));
    } else if (n > 0) inputs = [{ dtype: 'float32', shape: [n, size], data: encoded }];
    const batch = { rows, inputs, bad };
    data = new Float32Array(batchRows * size);
    rows = [];
    bad = [];
    return batch;
  };
  let index = 0;
  const take = (r: number, where: string, get: (column: string) => unknown): void => {
    try {
      const outcome = encoder.encode(get, data, rows.length * size);
      if (outcome.kept) rows.push(r);
      else {
        const columns = outcome.imputed.filter((c) => droppedBy.has(c)).map((c) => JSON.stringify(c));
        const reason = `column ${columns.join(', ')} is missing and its missing-value policy is "drop"`;
        bad.push({ row: r, where, reason });
      }
    } catch (error) {
      if (!(error instanceof RecordError)) throw error;
      const policy = error.reason === 'is missing' ? ' (its missing-value policy is "fail")' : '';
      bad.push({ row: r, where, reason: `column ${JSON.stringify(error.column)} ${error.reason}${policy}` });
    }
  };
  if (kind === 'csv') {
    // CSV: chunks of cells in place (the reader's `tables`), so the rows before the shard cost the tokenizer only
    // and a row's values are read straight from its cells.
    let header: readonly string[] | undefined;
    let columnOf = new Map<string, number>();
    for await (const table of readCsvRows.tables(location)) {
      if (index + table.count <= range.start) {
        index += table.count;
        continue;
      }
      if (table.columns !== header) {
        header = table.columns;
        columnOf = new Map((header ?? []).map((name, c) => [name, c]));
      }
      const { cells } = table;
      for (let i = 0; i < table.count && index < range.end; i++) {
        const r = index++;
        if (r < range.start) continue;
        const reason = table.reasons[i];
        if (reason !== undefined || !header) bad.push({ row: r, where: table.where(i), reason: reason ?? '' });
        else {
          const first = table.field(i, 0);
          take(r, table.where(i), (column) => {
            const c = columnOf.get(column);
            if (c === undefined || (cells.flags[first + c]! & MISSING) !== 0) return null;
            return cells.value(first + c);
          });
        }
        if (rows.length + bad.length >= batchRows) yield flush();
      }
      if (index >= range.end) break;
    }
  } else if (kind === 'parquet') {
    index = range.start;
    for await (const row of parquetRange(location, range)) {
      const r = index++;
      take(r, row.where, (column) => row.values[column]);
      if (rows.length + bad.length >= batchRows) yield flush();
    }
  } else {
    for await (const batch of rowBatches(TABULAR_READERS[kind], location)) {
      if (index + batch.rows.length <= range.start) {
        index += batch.rows.length;
        continue;
      }
      for (const row of batch.rows) {
        if (index >= range.end) break;
        const r = index++;
        if (r < range.start) continue;
        if (row instanceof MalformedRow) bad.push({ row: r, where: row.where, reason: row.reason });
        else take(r, row.where, (column) => row.values[column]);
        if (rows.length + bad.length >= batchRows) yield flush();
      }
      if (index >= range.end) break;
    }
  }
  if (rows.length + bad.length > 0) yield flush();
  if (index < range.end) throw new DatasetError(location, `ended after ${index} rows; the plan counted ${range.end}`);
}

/** One shard's rows in batches of at most `batchRows` (predicted and bad rows together). */
export function shardBatches(
  servable: Servable,
  kind: PredictInputKind,
  location: string,
  range: ShardRange,
  batchRows: number,
): AsyncGenerator<InputBatch> {
  switch (kind) {
    case 'idx':
      return idxBatches(servable, location, range, batchRows);
    case 'images':
      return imageFolderBatches(servable, location, range, batchRows);
    default:
      return tabularBatches(servable, kind, location, range, batchRows);
  }
}
