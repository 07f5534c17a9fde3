import { parseNumber } from '../preprocessing';
import { booleanWord } from './accumulator';
import { type CsvCells, hashOf, QUOTED } from './csv-tokenizer';

/**
 * The distinct texts of one CSV column, each with what ingest needs of it worked out once: its string, number
 * (NaN: not one) and boolean word (-1: not one), and a code a user of the table sets (a vocabulary or class index).
 * A cell is looked up by a hash of its characters in its chunk, so a repeated value (a category, a small integer)
 * costs no string and no parse. At most `capacity` texts: past that `find` and `insert` answer -1 and the caller
 * reads the cell itself.
 */
export class CellValues {
  readonly strings: string[] = [];
  numbers = new Float64Array(64);
  booleans = new Int8Array(64);
  codes = new Int32Array(64);
  private hashes = new Int32Array(64);
  /** Open addressing: id + 1 per slot, 0 for an empty one; kept at most half full. */
  private slots = new Int32Array(128);
  /** The hash of the text `find` last looked up, for the `insert` that follows a miss. */
  private lastHash = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.strings.length;
  }

  /** The id of field f's text, or -1. */
  find(cells: CsvCells, f: number): number {
    if ((cells.flags[f]! & QUOTED) !== 0) {
      const value = cells.value(f);
      return this.findIn(value, 0, value.length, hashOf(value, 0, value.length));
    }
    return this.findIn(cells.text, cells.starts[f]!, cells.ends[f]!, cells.hashes[f]!);
  }

  /** Adds field f's text after `find` missed it; its id, or -1 when the table is full. */
  insert(cells: CsvCells, f: number): number {
    return this.add(cells.value(f));
  }

  private findIn(text: string, start: number, end: number, hash: number): number {
    this.lastHash = hash;
    const mask = this.slots.length - 1;
    const length = end - start;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot]!;
      if (entry === 0) return -1;
      const id = entry - 1;
      if (this.hashes[id] !== hash) continue;
      const known = this.strings[id]!;
      if (known.length !== length) continue;
      let same = true;
      for (let i = 0; i < length; i++) {
        if (known.charCodeAt(i) !== text.charCodeAt(start + i)) {
          same = false;
          break;
        }
      }
      if (same) return id;
    }
  }

  private add(value: string): number {
    const id = this.strings.length;
    if (id >= this.capacity) return -1;
    if (id === this.numbers.length) {
      this.numbers = grown(this.numbers);
      this.booleans = grown(this.booleans);
      this.codes = grown(this.codes);
      this.hashes = grown(this.hashes);
    }
    if (2 * (id + 1) > this.slots.length) this.rehash();
    // A copy of its own: a slice of the chunk would keep the whole chunk alive with it.
    this.strings.push(value.length < 13 ? value : Buffer.from(value, 'utf8').toString('utf8'));
    this.numbers[id] = parseNumber(value) ?? Number.NaN;
    this.booleans[id] = booleanWord(value) ?? -1;
    this.codes[id] = -1;
    this.hashes[id] = this.lastHash;
    this.place(id);
    return id;
  }

  private place(id: number): void {
    const mask = this.slots.length - 1;
    let slot = this.hashes[id]! & mask;
    while (this.slots[slot] !== 0) slot = (slot + 1) & mask;
    this.slots[slot] = id + 1;
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    for (let id = 0; id < this.strings.length; id++) this.place(id);
  }
}

function grown<T extends Float64Array | Int32Array | Int8Array>(array: T): T {
  const bigger = new (array.constructor as new (n: number) => T)(array.length * 2);
  bigger.set(array);
  return bigger;
}

/** parseNumber of field f's text: the plain decimal the tokenizer read, else the text parsed. */
export function numberAt(cells: CsvCells, f: number): number | undefined {
  const plain = cells.numbers[f]!;
  return Number.isNaN(plain) ? parseNumber(cells.value(f)) : plain;
}
