import { createHash } from 'node:crypto';
import { DatasetError } from '../errors';
import type { RowReport } from '../ingest';
import { SPLIT_NAMES, type SplitName } from '../split';
import { booleanWord, ColumnAccumulator } from './accumulator';
import { CellValues, numberAt } from './cell-values';
import { MISSING } from './csv';
import type { CsvCells } from './csv-tokenizer';
import { cell, judgedColumn, RowJudge, type SplitLimits } from './judge';
import { type RowReader, rowBatches, type TableReader } from './rows';
import { MAX_TRACKED_CATEGORIES, type TabularSettings } from './settings';

/** One split's view of the data after pass 1. */
export interface SplitScan {
  rows: number;
  label: ColumnAccumulator;
  /** Feature columns (not the label, not ignored) by name. */
  columns: Map<string, ColumnAccumulator>;
}

export interface ScanResult {
  /** Every column other than the label, in the order first seen (ignored ones included). */
  columnOrder: string[];
  /** Whether the label column appeared in any row. */
  labelSeen: boolean;
  splits: Record<SplitName, SplitScan>;
  report: RowReport;
  /** sha256 over each row's values as JSON, for sources without files to hash (a user's stream). */
  rowsDigest?: string;
  /** sha256 over the file's bytes, when `digestFile` asked for it and the reader could (CSV: `tables`). */
  fileDigest?: string;
}

export interface ScanInput {
  reader: RowReader;
  path: string;
  settings: TabularSettings;
  split: { seed: number; validationFraction: number; limits: SplitLimits };
  digestRows: boolean;
  /** Also hash the file's bytes as they are read (digestLocation's digest of a file), where the reader can. */
  digestFile?: boolean;
  /** Called every `progressEvery` rows. */
  onRows?: (read: number) => void;
}

const PROGRESS_EVERY = 100_000;
/** A row with more columns than this is refused rather than growing the accumulators without bound. */
const MAX_COLUMNS = 10_000;

/**
 * Pass 1: streams every row once and keeps only accumulators (memory bounded by the column count and the category
 * cap, not the row count): the columns as they appear, each split's per-column statistics and label values, and the
 * row report. Types are decided from it afterwards (schema.ts), so nothing here depends on the types.
 */
export async function scanRows(input: ScanInput): Promise<ScanResult> {
  const { settings } = input;
  const judge = new RowJudge(settings, input.split, []);
  const splits = Object.fromEntries(
    SPLIT_NAMES.map((name) => [name, { rows: 0, label: new ColumnAccumulator(), columns: new Map() }]),
  ) as Record<SplitName, SplitScan>;
  const columnOrder: string[] = [];
  const known = new Set<string>([settings.label]);
  let labelSeen = false;
  const hash = input.digestRows ? createHash('sha256') : undefined;

  // The accumulators as arrays beside each split's map: iterated once per row.
  const names: string[] = [];
  const accumulators = Object.fromEntries(SPLIT_NAMES.map((name) => [name, [] as ColumnAccumulator[]])) as Record<
    SplitName,
    ColumnAccumulator[]
  >;
  const see = (name: string, where: string) => {
    if (known.has(name)) {
      if (name === settings.label) labelSeen = true;
      return;
    }
    if (known.size >= MAX_COLUMNS) throw new DatasetError(where, `has more than ${MAX_COLUMNS} columns`);
    known.add(name);
    columnOrder.push(name);
    const column = judgedColumn(settings, name);
    if (!column) return;
    judge.columns.push(column);
    names.push(name);
    // Rows kept before this column first appeared lacked it: they count as missing values.
    for (const split of SPLIT_NAMES) {
      const accumulator = new ColumnAccumulator();
      accumulator.addMissing(splits[split].rows);
      splits[split].columns.set(name, accumulator);
      accumulators[split].push(accumulator);
    }
  };

  const tables = (input.reader as Partial<TableReader>).tables;
  if (tables && !hash) {
    // CSV: each cell read in place from its chunk (CellValues per column, shared by the splits' accumulators).
    const labelValues = new CellValues(3 * MAX_TRACKED_CATEGORIES);
    const values: CellValues[] = [];
    let header: readonly string[] | undefined;
    let label = -1;
    let indexes = new Int32Array(0);
    const bytes = input.digestFile ? createHash('sha256') : undefined;
    const onBytes = bytes ? (chunk: Buffer) => bytes.update(chunk) : undefined;
    for await (const table of tables.call(input.reader, input.path, onBytes ? { onBytes } : {})) {
      const { columns, cells } = table;
      if (columns && !table.reasons.every((reason) => reason !== undefined)) {
        if (header !== columns) {
          for (const name of columns) see(name, input.path);
          header = columns;
          label = columns.indexOf(settings.label);
          indexes = Int32Array.from(names, (name) => columns.indexOf(name));
          while (values.length < names.length) values.push(new CellValues(3 * MAX_TRACKED_CATEGORIES));
        }
      }
      for (let i = 0; i < table.count; i++) {
        const split = judge.judgeCells(table, i, label, indexes);
        if (split !== undefined) {
          const scan = splits[split];
          scan.rows += 1;
          const base = table.field(i, 0);
          addCell(scan.label, labelValues, cells, base + label);
          const columns = accumulators[split];
          for (let c = 0; c < columns.length; c++) addCell(columns[c]!, values[c]!, cells, base + indexes[c]!);
        }
        if (input.onRows && judge.report.read % PROGRESS_EVERY === 0) input.onRows(judge.report.read);
      }
    }
    for (const split of SPLIT_NAMES) {
      splits[split].label.settle(labelValues);
      accumulators[split].forEach((accumulator, c) => accumulator.settle(values[c]!));
    }
    return {
      columnOrder,
      labelSeen,
      splits,
      report: judge.report,
      ...(bytes ? { fileDigest: bytes.digest('hex') } : {}),
    };
  }

  for await (const batch of rowBatches(input.reader, input.path)) {
    // A batch that names its columns has them in every row: they are looked at once, not per row.
    if (batch.columns && batch.rows.some((item) => !(item instanceof Error))) {
      for (const name of batch.columns) see(name, input.path);
    }
    for (const item of batch.rows) {
      if (hash) hash.update(item instanceof Error ? `!${item.where}\n` : `${JSON.stringify(item.values)}\n`);
      if (!batch.columns && !(item instanceof Error)) {
        for (const name in item.values) see(name, item.where);
      }
      const fate = judge.judge(item);
      if (fate.kind === 'kept') {
        const split = splits[fate.split];
        split.rows += 1;
        const values = fate.row.values;
        split.label.add(cell(values, settings.label));
        const columns = accumulators[fate.split];
        for (let c = 0; c < columns.length; c++) columns[c]!.add(cell(values, names[c]!));
      }
      if (input.onRows && judge.report.read % PROGRESS_EVERY === 0) input.onRows(judge.report.read);
    }
  }
  return {
    columnOrder,
    labelSeen,
    splits,
    report: judge.report,
    ...(hash ? { rowsDigest: hash.digest('hex') } : {}),
  };
}

/** `accumulator.add` of field f of `cells` (a kept row's cell: f is in its row), looked up in `values`. */
function addCell(accumulator: ColumnAccumulator, values: CellValues, cells: CsvCells, f: number): void {
  if ((cells.flags[f]! & MISSING) !== 0) {
    accumulator.addMissingCell();
    return;
  }
  const counts = accumulator.countsCategories;
  let id = -1;
  if (counts || accumulator.notBoolean === 0) {
    id = values.find(cells, f);
    if (id < 0 && counts && accumulator.hasRoom) id = values.insert(cells, f);
  }
  if (id >= 0) {
    accumulator.addCell(values.numbers[id]!, values.booleans[id]!, id);
    return;
  }
  const n = numberAt(cells, f) ?? Number.NaN;
  accumulator.addCell(n, accumulator.notBoolean === 0 ? (booleanWord(cells.value(f)) ?? -1) : -1, -1);
}
