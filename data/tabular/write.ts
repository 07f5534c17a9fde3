import type { ArtifactStore } from '../../artifacts/store';
import { DatasetError } from '../errors';
import type { RowReport } from '../ingest';
import { categoryOf, parseNumber, RecordEncoder, RecordError, type TabularPreprocessing } from '../preprocessing';
import { datasetPrefix, type ShardRef, type SplitRef } from '../shards';
import { SPLIT_NAMES, type SplitName } from '../split';
import { cell, judgedColumn, RowJudge, type SplitLimits } from './judge';
import { CellEncoder } from './cell-encoder';
import { CellValues, numberAt } from './cell-values';
import type { CsvCells } from './csv-tokenizer';
import { type MalformedRow, type RowReader, rowBatches, type SourceRow, type TableReader } from './rows';
import type { TabularSettings } from './settings';

/**
 * Rows of one split, encoded, written a shard at a time as they arrive: float32 features (`images-00000.f32`,
 * count × featureSize, little-endian) and labels (`labels-00000.u8` class indices, or `labels-00000.f32` values).
 * A full shard is stored while the next one fills (two buffers): at most two shards per split are in memory, and
 * encoding does not wait on the store but for a shard still being stored when the next one is full.
 */
class ShardWriter {
  readonly shards: ShardRef[] = [];
  private features: Float32Array;
  private labels: Uint8Array | Float32Array;
  /** The buffers of the shard being stored, for the shard after the one now filling. */
  private spare: { features: Float32Array; labels: Uint8Array | Float32Array } | undefined;
  /** The store's writing of the previous shard. */
  private storing: Promise<void> | undefined;
  private started = 0;
  private filled = 0;
  count = 0;

  constructor(
    private readonly store: ArtifactStore,
    private readonly prefix: string,
    private readonly featureSize: number,
    private readonly task: 'classification' | 'regression',
    private readonly shardSize: number,
  ) {
    this.features = new Float32Array(shardSize * featureSize);
    this.labels = task === 'classification' ? new Uint8Array(shardSize) : new Float32Array(shardSize);
  }

  /** The slot for the next row's features (encode into it, then call `commit`). */
  get nextOffset(): number {
    return this.filled * this.featureSize;
  }

  get buffer(): Float32Array {
    return this.features;
  }

  /** Takes the encoded row; true when the shard is full and must be flushed before the next row. */
  commit(label: number): boolean {
    this.labels[this.filled] = label;
    this.filled += 1;
    this.count += 1;
    return this.filled === this.shardSize;
  }

  /**
   * Starts storing the filled shard and returns once the one before it is stored (its ShardRef in `shards`), with an
   * empty shard to fill. `finish` waits for the last one.
   */
  async flush(): Promise<void> {
    if (this.filled === 0) return;
    await this.finish();
    const name = String(this.started++).padStart(5, '0');
    const features = this.features.subarray(0, this.filled * this.featureSize);
    const labels = this.labels.subarray(0, this.filled);
    const count = this.filled;
    const labelExt = this.task === 'classification' ? 'u8' : 'f32';
    const storing = (async () => {
      const imagesUri = await this.store.put(`${this.prefix}/images-${name}.f32`, bytesOf(features));
      const labelsUri = await this.store.put(`${this.prefix}/labels-${name}.${labelExt}`, bytesOf(labels));
      this.shards.push({ imagesUri, labelsUri, count });
    })();
    // Awaited by the next flush or `finish`; until then a failure must not count as unhandled.
    storing.catch(() => {});
    this.storing = storing;
    const filling = this.spare ?? {
      features: new Float32Array(this.features.length),
      labels: this.task === 'classification' ? new Uint8Array(this.shardSize) : new Float32Array(this.shardSize),
    };
    this.spare = { features: this.features, labels: this.labels };
    this.features = filling.features;
    this.labels = filling.labels;
    this.filled = 0;
  }

  /** Waits until every flushed shard is stored; throws the store's error, if any. */
  async finish(): Promise<void> {
    const storing = this.storing;
    this.storing = undefined;
    await storing;
  }
}

function bytesOf(array: Float32Array | Uint8Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

export interface WriteInput {
  reader: RowReader;
  path: string;
  settings: TabularSettings;
  split: { seed: number; validationFraction: number; limits: SplitLimits };
  preprocessing: TabularPreprocessing;
  fingerprint: string;
  shardSize: number;
  /** Rows pass 1 read: a different count now means the source changed between the passes. */
  expectedRows: number;
  onShard?: (split: SplitName, shards: number) => void;
}

export interface WriteResult {
  splits: Record<SplitName, SplitRef>;
  report: RowReport;
}

/**
 * Pass 2: streams the rows again, judges each exactly as pass 1 did, encodes the kept ones with the training
 * split's preprocessing and writes them into their split's shards as it goes.
 */
export async function writeTabularShards(store: ArtifactStore, input: WriteInput): Promise<WriteResult> {
  const { preprocessing, settings } = input;
  const label = preprocessing.label;
  const columns = preprocessing.columns.flatMap((column) => judgedColumn(settings, column.name) ?? []);
  const judge = new RowJudge({ ...settings, task: label.task }, input.split, columns);
  const encoder = new RecordEncoder(preprocessing);
  const classIndex = label.task === 'classification' ? new Map(label.classes.map((name, i) => [name, i])) : undefined;
  const writers = Object.fromEntries(
    SPLIT_NAMES.map((name) => [
      name,
      new ShardWriter(
        store,
        `${datasetPrefix(input.fingerprint)}/${name}`,
        preprocessing.featureSize,
        label.task,
        input.shardSize,
      ),
    ]),
  ) as Record<SplitName, ShardWriter>;

  // One getter for every row (not a closure per row): it reads the row being encoded.
  let current: Record<string, unknown> = {};
  const get = (name: string) => cell(current, name);

  const tables = (input.reader as Partial<TableReader>).tables;
  if (tables) {
    // CSV: each kept row's cells encoded in place from its chunk (CellEncoder), the label's text mapped once.
    const cellEncoder = new CellEncoder(preprocessing);
    const labels = new CellValues(1 << 16);
    let header: readonly string[] | undefined;
    let labelAt = -1;
    let judged = new Int32Array(0);
    let encoded = new Int32Array(0);
    for await (const table of tables.call(input.reader, input.path)) {
      const { columns, cells } = table;
      if (columns && columns !== header) {
        header = columns;
        labelAt = columns.indexOf(label.name);
        judged = Int32Array.from(judge.columns, (column) => columns.indexOf(column.name));
        encoded = Int32Array.from(preprocessing.columns, (column) => columns.indexOf(column.name));
      }
      for (let i = 0; i < table.count; i++) {
        const split = judge.judgeCells(table, i, labelAt, judged);
        if (split === undefined) continue;
        const base = table.field(i, 0);
        const writer = writers[split];
        const target = labelOf(cells, base + labelAt);
        if (target === undefined) {
          throw new DatasetError(
            table.where(i),
            `label ${JSON.stringify(label.name)} value changed since the first pass`,
          );
        }
        try {
          if (!cellEncoder.encode(cells, base, encoded, writer.buffer, writer.nextOffset)) {
            judge.report.dropped += 1;
            continue;
          }
        } catch (error) {
          if (!(error instanceof RecordError)) throw error;
          throw new DatasetError(table.where(i), `cannot encode: ${error.message}`);
        }
        if (writer.commit(target)) {
          await writer.flush();
          input.onShard?.(split, writer.shards.length);
        }
      }
    }
    /** The label of a kept row: its class index (the text's, worked out once), or its number. */
    function labelOf(cells: CsvCells, f: number): number | undefined {
      if (!classIndex) return numberAt(cells, f);
      let id = labels.find(cells, f);
      if (id < 0) {
        id = labels.insert(cells, f);
        if (id >= 0) labels.codes[id] = classIndex.get(labels.strings[id]!) ?? -1;
      }
      const index = id >= 0 ? labels.codes[id]! : (classIndex.get(cells.value(f)) ?? -1);
      return index < 0 ? undefined : index;
    }
  } else {
    for await (const batch of rowBatches(input.reader, input.path)) {
      for (const item of batch.rows) {
        // Synchronous per row; an await only when a shard is full.
        const full = writeRow(item);
        if (full) {
          await writers[full].flush();
          input.onShard?.(full, writers[full].shards.length);
        }
      }
    }
  }
  /** Judges, encodes and adds one row; names the split whose shard it filled, if any. */
  function writeRow(item: SourceRow | MalformedRow): SplitName | undefined {
    const fate = judge.judge(item);
    if (fate.kind !== 'kept') return undefined;
    const { values, where } = fate.row;
    const writer = writers[fate.split];
    const raw = cell(values, label.name);
    const target = classIndex ? classIndex.get(categoryOf(raw) ?? '') : parseNumber(raw);
    if (target === undefined) {
      throw new DatasetError(where, `label ${JSON.stringify(label.name)} value changed since the first pass`);
    }
    try {
      current = values;
      const outcome = encoder.encode(get, writer.buffer, writer.nextOffset);
      if (!outcome.kept) {
        judge.report.dropped += 1; // a drop column first seen after this row in pass 1
        return undefined;
      }
    } catch (error) {
      if (!(error instanceof RecordError)) throw error;
      throw new DatasetError(where, `cannot encode: ${error.message}`);
    }
    return writer.commit(target) ? fate.split : undefined;
  }
  if (judge.report.read !== input.expectedRows) {
    throw new DatasetError(
      input.path,
      `changed while being read: ${input.expectedRows} rows in the first pass, ${judge.report.read} in the second`,
    );
  }
  const splits = {} as Record<SplitName, SplitRef>;
  for (const name of SPLIT_NAMES) {
    await writers[name].flush();
    await writers[name].finish();
    splits[name] = { count: writers[name].count, shards: writers[name].shards };
  }
  return { splits, report: judge.report };
}
