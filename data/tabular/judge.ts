import type { RowReport } from '../ingest';
import { DatasetError } from '../errors';
import { categoryOf, describe, isMissing, parseBoolean, parseNumber, type MissingPolicy } from '../preprocessing';
import type { SplitName } from '../split';
import { splitOfRow } from './assign';
import { numberAt } from './cell-values';
import { type CsvTable, MISSING } from './csv';
import { MalformedRow, type SourceRow } from './rows';
import type { TabularSettings } from './settings';

/**
 * The row's own value of `column`: a JSON row that lacks a column named like an Object.prototype member
 * (`constructor`, `toString`) must read as missing, not as the inherited function.
 */
export function cell(values: Record<string, unknown>, column: string): unknown {
  const value = values[column];
  // Only Object.prototype's members (functions, __proto__'s object) can be inherited: a string, number, boolean or
  // null is the row's own, without the hasOwn lookup (this runs once per cell, several times per pass).
  if (value === null || (typeof value !== 'function' && typeof value !== 'object')) return value;
  return Object.hasOwn(values, column) ? value : undefined;
}

/** A feature column as the row judge sees it: its missing policy and the type the spec declares, if any. */
export interface JudgedColumn {
  name: string;
  missing: MissingPolicy;
  declared?: 'numeric' | 'categorical' | 'boolean';
}

export type RowFate =
  | { kind: 'kept'; split: SplitName; row: SourceRow }
  /** A missing label, or a missing value in a `drop` column. */
  | { kind: 'dropped' }
  /** Past data.limits: read but not used. */
  | { kind: 'excluded' }
  | { kind: 'malformed' };

const MAX_EXAMPLES = 20;

export interface SplitLimits {
  /** Rows of train + validation together. */
  train?: number;
  test?: number;
}

/**
 * Decides what happens to each row the reader yields, the same way in both ingest passes: malformed (a reader's
 * MalformedRow, or a value the spec's declared type or task cannot read) → fail or skip per `onMalformed`; a missing
 * label or a missing value under `drop` → dropped; a missing value under `fail` → DatasetError naming the row and
 * column; otherwise the row's split by the seeded hash of its index, until the split's limit is reached.
 */
export class RowJudge {
  readonly report: RowReport = { read: 0, malformed: 0, dropped: 0, examples: [] };
  private pool = 0;
  private tests = 0;

  constructor(
    private readonly settings: TabularSettings,
    private readonly split: { seed: number; validationFraction: number; limits: SplitLimits },
    /** Feature columns; pass 1 appends them as they first appear. */
    readonly columns: JudgedColumn[],
  ) {}

  judge(item: SourceRow | MalformedRow): RowFate {
    const index = this.report.read;
    this.report.read += 1;
    if (item instanceof MalformedRow) return this.malformed(item);
    const { values, where } = item;
    const label = cell(values, this.settings.label);
    if (isMissing(label)) {
      this.report.dropped += 1;
      return { kind: 'dropped' };
    }
    const labelProblem = this.labelProblem(label);
    if (labelProblem) return this.malformed(new MalformedRow(where, labelProblem));
    let drop = false;
    for (const column of this.columns) {
      const value = cell(values, column.name);
      if (isMissing(value)) {
        if (column.missing === 'fail') throw missingError(where, column.name);
        if (column.missing === 'drop') drop = true;
      } else if (column.declared) {
        const problem = typeProblem(column.declared, value);
        if (problem)
          return this.malformed(new MalformedRow(where, `column ${JSON.stringify(column.name)}: ${problem}`));
      }
    }
    if (drop) {
      this.report.dropped += 1;
      return { kind: 'dropped' };
    }
    const split = this.place(index);
    return split === undefined ? { kind: 'excluded' } : { kind: 'kept', split, row: item };
  }

  /**
   * `judge` of item i of a CSV chunk, without a SourceRow: `label` is the label's column in the header (-1: none)
   * and `indexes[k]` the column of `columns[k]` (-1: none). The split of a kept row; undefined for any other fate.
   */
  judgeCells(table: CsvTable, i: number, label: number, indexes: ArrayLike<number>): SplitName | undefined {
    const index = this.report.read;
    this.report.read += 1;
    const reason = table.reasons[i];
    if (reason !== undefined) {
      this.malformed(new MalformedRow(table.where(i), reason));
      return undefined;
    }
    const { cells } = table;
    const flags = cells.flags;
    const base = table.field(i, 0);
    if (label < 0 || (flags[base + label]! & MISSING) !== 0) {
      this.report.dropped += 1;
      return undefined;
    }
    // A string is always a category: only a regression's label can be unreadable.
    if (this.settings.task === 'regression' && numberAt(cells, base + label) === undefined) {
      this.malformed(new MalformedRow(table.where(i), this.labelProblem(cells.value(base + label))!));
      return undefined;
    }
    let drop = false;
    for (let k = 0; k < this.columns.length; k++) {
      const column = this.columns[k]!;
      const at = indexes[k]!;
      if (at < 0 || (flags[base + at]! & MISSING) !== 0) {
        if (column.missing === 'fail') throw missingError(table.where(i), column.name);
        if (column.missing === 'drop') drop = true;
      } else if (column.declared && column.declared !== 'categorical') {
        const problem = typeProblem(column.declared, cells.value(base + at));
        if (problem) {
          this.malformed(new MalformedRow(table.where(i), `column ${JSON.stringify(column.name)}: ${problem}`));
          return undefined;
        }
      }
    }
    if (drop) {
      this.report.dropped += 1;
      return undefined;
    }
    return this.place(index);
  }

  /** The split of the row at `index` by the seeded hash; undefined when that split's limit is reached. */
  private place(index: number): SplitName | undefined {
    const split = splitOfRow(index, this.split.seed, this.settings.testFraction, this.split.validationFraction);
    if (split === 'test') {
      if (this.split.limits.test !== undefined && this.tests >= this.split.limits.test) return undefined;
      this.tests += 1;
    } else {
      if (this.split.limits.train !== undefined && this.pool >= this.split.limits.train) return undefined;
      this.pool += 1;
    }
    return split;
  }

  private labelProblem(label: unknown): string | undefined {
    if (this.settings.task === 'regression' && parseNumber(label) === undefined) {
      return `label ${JSON.stringify(this.settings.label)}: expected a number for a regression, got ${describe(label)}`;
    }
    if (categoryOf(label) === undefined && parseNumber(label) === undefined) {
      return `label ${JSON.stringify(this.settings.label)}: expected a value, got ${describe(label)}`;
    }
    return undefined;
  }

  private malformed(row: MalformedRow): RowFate {
    if (this.settings.onMalformed === 'fail') {
      throw new DatasetError(
        row.where,
        `${row.reason} (data.onMalformed is 'fail'; 'skip' skips and counts such rows)`,
      );
    }
    this.report.malformed += 1;
    if (this.report.examples.length < MAX_EXAMPLES) this.report.examples.push(`${row.where}: ${row.reason}`);
    return { kind: 'malformed' };
  }
}

function missingError(where: string, column: string): DatasetError {
  return new DatasetError(
    where,
    `column ${JSON.stringify(column)} has no value and its missing policy is 'fail' ` +
      `(data.columns[${JSON.stringify(column)}].missing or data.missing)`,
  );
}

function typeProblem(type: 'numeric' | 'categorical' | 'boolean', value: unknown): string | undefined {
  switch (type) {
    case 'numeric':
      return parseNumber(value) === undefined ? `expected a number, got ${describe(value)}` : undefined;
    case 'boolean':
      return parseBoolean(value) === undefined ? `expected a boolean, got ${describe(value)}` : undefined;
    case 'categorical':
      return categoryOf(value) === undefined ? `expected a category, got ${describe(value)}` : undefined;
  }
}

/** The judged column for `name` under the settings, or undefined when the spec says to ignore it. */
export function judgedColumn(settings: TabularSettings, name: string): JudgedColumn | undefined {
  const setting = settings.columns[name];
  if (setting?.type === 'ignore') return undefined;
  return {
    name,
    missing: setting?.missing ?? settings.missing,
    ...(setting?.type ? { declared: setting.type } : {}),
  };
}
