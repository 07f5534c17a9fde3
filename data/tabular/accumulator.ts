import { categoryOf, isMissing, parseBoolean, parseNumber } from '../preprocessing';
import { MAX_TRACKED_CATEGORIES } from './settings';

/** Boolean spellings that are not also numbers: a 0/1 column stays numeric. */
const BOOLEAN_WORDS = new Set(['true', 'false', 'yes', 'no', 't', 'f', 'y', 'n']);

/**
 * Everything one streaming pass learns about one column of one split, in memory bounded by
 * MAX_TRACKED_CATEGORIES: whether every value is a number / a boolean (type inference), Welford's running mean and
 * variance with min and max of the numeric values, the missing count and the count of each category.
 */
export class ColumnAccumulator {
  count = 0;
  missing = 0;
  /** Present values that are not numbers / not booleans; 0 means every value was one. */
  notNumeric = 0;
  notBoolean = 0;
  trues = 0;
  numeric = 0;
  mean = 0;
  /** Sum of squared deviations from the running mean (Welford). */
  m2 = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;
  readonly categories = new Map<string, number>();
  /** Some values went uncounted because MAX_TRACKED_CATEGORIES were already tracked. */
  truncated = false;
  /** addCell's category counts by CellValues id, and the ids in the order first counted. */
  private idCounts = new Float64Array(0);
  private idOrder: number[] = [];

  add(value: unknown): void {
    this.count += 1;
    if (isMissing(value)) {
      this.missing += 1;
      return;
    }
    const n = parseNumber(value);
    if (n === undefined) this.notNumeric += 1;
    else {
      this.numeric += 1;
      const delta = n - this.mean;
      this.mean += delta / this.numeric;
      this.m2 += delta * (n - this.mean);
      if (n < this.min) this.min = n;
      if (n > this.max) this.max = n;
    }
    // Once a value was not a boolean word the column is not boolean: skip the check (lower-casing every cell).
    if (this.notBoolean === 0) {
      const b =
        typeof value === 'boolean' ? parseBoolean(value) : typeof value === 'string' ? booleanWord(value) : undefined;
      if (b === undefined) this.notBoolean += 1;
      else if (b === 1) this.trues += 1;
    } else this.notBoolean += 1;
    // A numeric column past the category cap (measurements with noise) has no use for more counting: its
    // categories matter only if a non-number turns it categorical later, and then its domain is incomplete anyway.
    if (this.truncated && this.notNumeric === 0) return;
    const category = categoryOf(value) ?? JSON.stringify(value) ?? String(value);
    const seen = this.categories.get(category);
    if (seen !== undefined) this.categories.set(category, seen + 1);
    else if (this.categories.size < MAX_TRACKED_CATEGORIES) this.categories.set(category, 1);
    else this.truncated = true;
  }

  /** Whether the next value's category is counted (or marks the domain incomplete): see `add`. */
  get countsCategories(): boolean {
    return !(this.truncated && this.notNumeric === 0);
  }

  /** Whether a category not yet counted would be. */
  get hasRoom(): boolean {
    return this.idOrder.length + this.categories.size < MAX_TRACKED_CATEGORIES;
  }

  /** `add(null)`. */
  addMissingCell(): void {
    this.count += 1;
    this.missing += 1;
  }

  /**
   * `add` of a CSV cell looked up in its column's CellValues (`values`): its number `n` (NaN: not one), boolean word
   * `b` (-1: not one; read only while the column may be boolean) and id (-1: not in `values`, which then holds no
   * value this accumulator counts). Categories are counted by id; `settle` makes `categories` of them.
   */
  addCell(n: number, b: number, id: number): void {
    this.count += 1;
    if (Number.isNaN(n)) this.notNumeric += 1;
    else {
      this.numeric += 1;
      const delta = n - this.mean;
      this.mean += delta / this.numeric;
      this.m2 += delta * (n - this.mean);
      if (n < this.min) this.min = n;
      if (n > this.max) this.max = n;
    }
    if (this.notBoolean === 0) {
      if (b < 0) this.notBoolean += 1;
      else if (b === 1) this.trues += 1;
    } else this.notBoolean += 1;
    if (this.truncated && this.notNumeric === 0) return;
    if (id < 0) {
      this.truncated = true;
      return;
    }
    if (id >= this.idCounts.length) {
      const bigger = new Float64Array(Math.max(2 * this.idCounts.length, id + 1));
      bigger.set(this.idCounts);
      this.idCounts = bigger;
    }
    if (this.idCounts[id]! > 0) this.idCounts[id]! += 1;
    else if (this.hasRoom) {
      this.idCounts[id] = 1;
      this.idOrder.push(id);
    } else this.truncated = true;
  }

  /** Moves the counts `addCell` kept by id into `categories`, in the order first seen (as `add` inserts them). */
  settle(values: { strings: readonly string[] }): void {
    for (const id of this.idOrder) this.categories.set(values.strings[id]!, this.idCounts[id]!);
    this.idOrder = [];
    this.idCounts = new Float64Array(0);
  }

  /** Adds `missing` rows that lacked the column (a JSON key first seen after them). */
  addMissing(rows: number): void {
    this.count += rows;
    this.missing += rows;
  }

  get present(): number {
    return this.count - this.missing;
  }

  /** Population standard deviation of the numeric values (0 for fewer than two). */
  get std(): number {
    return this.numeric > 1 ? Math.sqrt(this.m2 / this.numeric) : 0;
  }

  /** Combines another split's accumulator into this one (Chan et al.'s parallel variance). */
  merge(other: ColumnAccumulator): this {
    this.count += other.count;
    this.missing += other.missing;
    this.notNumeric += other.notNumeric;
    this.notBoolean += other.notBoolean;
    this.trues += other.trues;
    if (other.numeric > 0) {
      const total = this.numeric + other.numeric;
      const delta = other.mean - this.mean;
      this.mean += (delta * other.numeric) / total;
      this.m2 += other.m2 + (delta * delta * this.numeric * other.numeric) / total;
      this.numeric = total;
      this.min = Math.min(this.min, other.min);
      this.max = Math.max(this.max, other.max);
    }
    for (const [category, n] of other.categories) {
      const seen = this.categories.get(category);
      if (seen !== undefined) this.categories.set(category, seen + n);
      else if (this.categories.size < MAX_TRACKED_CATEGORIES) this.categories.set(category, n);
      else this.truncated = true;
    }
    this.truncated ||= other.truncated;
    return this;
  }

  /** Categories most frequent first (ties by value, so the order is deterministic). */
  ranked(): [string, number][] {
    return [...this.categories].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}

/** A boolean word's value (true/false, yes/no, t/f, y/n in any case, trimmed); undefined for anything else. */
export function booleanWord(value: string): 0 | 1 | undefined {
  return BOOLEAN_WORDS.has(value.trim().toLowerCase()) ? parseBoolean(value) : undefined;
}
