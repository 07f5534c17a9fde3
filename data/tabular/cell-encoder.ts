import {
  categoryOf,
  describe,
  parseBoolean,
  parseNumber,
  RecordError,
  type PreprocessingColumn,
  type TabularPreprocessing,
} from '../preprocessing';
import { CellValues, numberAt } from './cell-values';
import { MISSING } from './csv';
import type { CsvCells } from './csv-tokenizer';

/** Distinct values remembered per categorical or boolean column; past it a cell is looked up by its string. */
const MAX_REMEMBERED = 1 << 16;

/**
 * RecordEncoder.encode (data/preprocessing.ts) for a row of CSV cells read in place: the same slots, values and
 * errors, with each categorical or boolean column's distinct texts mapped to their slot once (CellValues codes).
 */
export class CellEncoder {
  readonly featureSize: number;
  private readonly columns: readonly PreprocessingColumn[];
  /** Per column: its first slot, and what a missing value imputes (the slot value, or the one-hot index). */
  private readonly slots: Int32Array;
  private readonly fills: Float64Array;
  private readonly values: (CellValues | undefined)[];
  private readonly indexes: (Map<string, number> | undefined)[];

  constructor(preprocessing: TabularPreprocessing) {
    this.columns = preprocessing.columns;
    this.featureSize = preprocessing.featureSize;
    this.slots = new Int32Array(this.columns.length);
    this.fills = new Float64Array(this.columns.length);
    this.values = this.columns.map((column) =>
      column.kind === 'numeric' ? undefined : new CellValues(MAX_REMEMBERED),
    );
    this.indexes = this.columns.map((column) =>
      column.kind === 'categorical' ? new Map(column.vocabulary.map((value, i) => [value, i])) : undefined,
    );
    let slot = 0;
    this.columns.forEach((column, c) => {
      this.slots[c] = slot;
      this.fills[c] = this.code(c, column.fill);
      slot += column.kind === 'categorical' ? column.vocabulary.length + 1 : 1;
    });
    if (slot !== this.featureSize) {
      throw new RangeError(`preprocessing says ${this.featureSize} slots, its columns make ${slot}`);
    }
  }

  /**
   * Encodes the row whose cells start at field `base` (column c at `base + indexes[c]`; -1: absent) into `out` at
   * `offset`. False when a missing value under `drop` leaves the row without an encoding; throws RecordError as
   * RecordEncoder.encode does.
   */
  encode(cells: CsvCells, base: number, indexes: ArrayLike<number>, out: Float32Array, offset: number): boolean {
    out.fill(0, offset, offset + this.featureSize);
    const flags = cells.flags;
    let kept = true;
    for (let c = 0; c < this.columns.length; c++) {
      const column = this.columns[c]!;
      const at = indexes[c]!;
      const f = base + at;
      let code: number;
      if (at < 0 || (flags[f]! & MISSING) !== 0) {
        if (column.missing === 'fail') throw new RecordError(column.name, 'is missing');
        if (column.missing === 'drop') kept = false;
        code = this.fills[c]!;
      } else if (column.kind === 'numeric') {
        const n = numberAt(cells, f);
        if (n === undefined) throw new RecordError(column.name, `expected a number, got ${describe(cells.value(f))}`);
        code = (n - column.mean) / column.std;
      } else {
        const values = this.values[c]!;
        let id = values.find(cells, f);
        if (id < 0) {
          id = values.insert(cells, f);
          if (id >= 0) values.codes[id] = this.code(c, values.strings[id]!);
        }
        code = id >= 0 ? values.codes[id]! : this.code(c, cells.value(f));
        if (code === -1) {
          throw new RecordError(column.name, `expected a boolean, got ${describe(cells.value(f))}`);
        }
      }
      if (column.kind === 'categorical') out[offset + this.slots[c]! + code] = 1;
      else out[offset + this.slots[c]!] = code;
    }
    return kept;
  }

  /**
   * What `value` of column c encodes to: a numeric column's slot value, a boolean one's 0 or 1 (-1: not a boolean),
   * a categorical one's vocabulary index (its length: out of vocabulary).
   */
  private code(c: number, value: unknown): number {
    const column = this.columns[c]!;
    switch (column.kind) {
      case 'numeric': {
        const n = parseNumber(value);
        if (n === undefined) throw new RecordError(column.name, `expected a number, got ${describe(value)}`);
        return (n - column.mean) / column.std;
      }
      case 'boolean':
        return parseBoolean(value) ?? -1;
      case 'categorical': {
        const category = categoryOf(value);
        if (category === undefined) throw new RecordError(column.name, `expected a category, got ${describe(value)}`);
        return this.indexes[c]!.get(category) ?? column.vocabulary.length;
      }
    }
  }
}
