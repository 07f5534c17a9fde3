import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { SchemaElement } from 'hyparquet';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import type { OutputLayout } from './predict-output';

/**
 * `--format parquet`: the join of a job's shards into one Parquet file. The shards write JSON Lines parts (the same
 * rows as a JSON Lines job's, so a shard is computed once whatever the output format); this reads them back shard by
 * shard and writes each as a row group, so memory holds one row group however large the input. Columns are CSV's:
 * `row` (INT64), `predictions_0..k` (FLOAT, null where the model gave a non-finite value, as JSON Lines writes it),
 * `class` (STRING, classifiers only), `version` (INT32). hyparquet-writer writes no timestamp or random id (its
 * `created_by` is a constant), so the same parts make the same bytes on every run.
 */

/** Rows a row group may hold: a shard of more rows is split, so a huge --shard-rows does not grow memory. */
export const MAX_ROW_GROUP_ROWS = 65_536;

/** The longest line the shards write for `layout`: a value is at most 16 characters (`-1.23456789e-38,`). */
function maxLineChars(layout: OutputLayout): number {
  const longestClass = Math.max(0, ...(layout.classes ?? []).map((c) => JSON.stringify(c).length));
  return 1024 + 16 * layout.width + longestClass;
}

export function parquetSchema(layout: OutputLayout): SchemaElement[] {
  const predictions = Array.from(
    { length: layout.width },
    (_, i): SchemaElement => ({ name: `predictions_${i}`, type: 'FLOAT', repetition_type: 'OPTIONAL' }),
  );
  const columns: SchemaElement[] = [
    { name: 'row', type: 'INT64', repetition_type: 'REQUIRED' },
    ...predictions,
    ...(layout.classes
      ? [{ name: 'class', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } as const]
      : []),
    { name: 'version', type: 'INT32', repetition_type: 'REQUIRED' },
  ];
  return [{ name: 'root', num_children: columns.length }, ...columns];
}

/** hyparquet-writer's byte writer, its bytes handed to `out` after every row group (and at the end). */
class FileHandleWriter extends ByteWriter {
  constructor(private readonly out: FileHandle) {
    super(1 << 20);
  }

  flush(): Promise<void> {
    // A copy: the buffer is reused for the next row group while the write may still be pending.
    const bytes = this.getBytes().slice();
    this.index = 0;
    return this.out.write(bytes).then(() => undefined);
  }

  override finish(): Promise<void> {
    return this.flush();
  }
}

interface PartRow {
  row: number;
  predictions: (number | null)[];
  class?: string;
  version: number;
}

/** Parses and checks a line of a shard part: a part is a file on disk, so it is read as hostile as any input. */
function parsePartLine(line: string, where: string, layout: OutputLayout): PartRow {
  const max = maxLineChars(layout);
  if (line.length > max) throw new Error(`${where}: a line of over ${max} characters is not a prediction row`);
  let value: PartRow;
  try {
    value = JSON.parse(line) as PartRow;
  } catch (error) {
    throw new Error(`${where}: not JSON (${(error as Error).message})`);
  }
  const ok =
    Number.isSafeInteger(value?.row) &&
    value.row >= 0 &&
    Number.isInteger(value.version) &&
    Array.isArray(value.predictions) &&
    value.predictions.length === layout.width &&
    value.predictions.every((p) => p === null || typeof p === 'number') &&
    (layout.classes ? typeof value.class === 'string' : value.class === undefined);
  if (!ok) throw new Error(`${where}: not a prediction row of ${layout.width} values`);
  return value;
}

/** The JSON Lines parts `parts` (in order) written to `out` as Parquet; one row group a part, at most. */
export async function writeParquetPredictions(out: FileHandle, layout: OutputLayout, parts: string[]): Promise<void> {
  const writer = new ParquetWriter({ writer: new FileHandleWriter(out), schema: parquetSchema(layout) });
  let group: PartRow[] = [];
  const flush = async () => {
    if (group.length === 0) return;
    const rows = group;
    group = [];
    const columnData = [
      { name: 'row', data: rows.map((r) => BigInt(r.row)) },
      ...Array.from({ length: layout.width }, (_, k) => ({
        name: `predictions_${k}`,
        data: rows.map((r) => r.predictions[k]!),
      })),
      ...(layout.classes ? [{ name: 'class', data: rows.map((r) => r.class!) }] : []),
      { name: 'version', data: rows.map((r) => r.version) },
    ];
    await writer.write({ columnData, rowGroupSize: rows.length });
  };
  for (const part of parts) {
    const lines = createInterface({ input: createReadStream(part, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
    let lineNumber = 0;
    for await (const line of lines) {
      lineNumber += 1;
      if (line === '') continue;
      group.push(parsePartLine(line, `${part}:${lineNumber}`, layout));
      if (group.length >= MAX_ROW_GROUP_ROWS) await flush();
    }
    await flush();
  }
  await writer.finish();
}
