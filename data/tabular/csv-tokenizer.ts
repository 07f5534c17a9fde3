/**
 * A small RFC 4180 tokenizer over text chunks, written by hand because csv-parse cost ~2.2 s of CPU per million
 * rows (6.6 s with its per-record info) where a split into cells costs ~0.4 s, and ingest reads a CSV twice.
 * It yields field offsets into the chunk (CsvCells), not a string per cell, with what ingest needs of each field
 * worked out in the same look at its characters (a hash for interning, the value of a plain decimal): a string is
 * made only for a value ingest has not seen before (data/tabular/cell-values.ts) or when asked (`push`, `value`).
 *
 * Handles: quoted cells with commas, doubled quotes and newlines; LF, CRLF and lone CR record ends; a leading BOM.
 * A record that cannot be read (a quote inside an unquoted cell, characters after a closing quote, a quote left
 * open at the end of the file, a record longer than the bound) is reported with the line it started on and reading
 * resumes at the next line. Line numbers count every newline, blank lines and newlines inside quotes included.
 */

const QUOTE = 0x22;
const ZERO = 0x30;
const SPACE = 0x20;
const DEL = 0x7f;
const N = 0x4e;
const LOWER_N = 0x6e;
const NINE = 0x39;
const DOT = 0x2e;
const MINUS = 0x2d;
const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
const POWERS_OF_TEN = Array.from({ length: 16 }, (_, i) => 10 ** i);

/** FNV-1a over the characters of `text` from `start` to `end`: what CsvCells.hashes holds for an unquoted field. */
export function hashOf(text: string, start: number, end: number): number {
  let hash = FNV_OFFSET;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ text.charCodeAt(i), FNV_PRIME);
  return hash;
}
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** What a push or end produced, in file order: `items[i]` is a record's cells, or the reason it is malformed. */
export interface CsvBatch {
  lines: number[];
  items: (string[] | string)[];
}

/** A field that was quoted (its offsets are inside the quotes). */
export const QUOTED = 1;
/** A quoted field holding doubled quotes: its value is the text with each `""` read as `"`. */
export const ESCAPED = 2;
/** Free for a reader's own mark on a field (csv.ts: a missing value). */
export const MARK = 4;

/**
 * What a push or end produced as offsets into `text` (no string per cell): record r is malformed when `reasons[r]` is
 * set, else its fields are `first[r]` to `first[r + 1]` (exclusive), field f spanning `starts[f]` to `ends[f]` with
 * `flags[f]` (QUOTED, ESCAPED). Valid until the next push: the next one reuses the arrays.
 */
export class CsvCells {
  text = '';
  records = 0;
  lines = new Float64Array(1024);
  /** First field of each record, and one past the last record's (`first[records]`). */
  first = new Int32Array(1025);
  reasons: (string | undefined)[] = [];
  fields = 0;
  starts = new Int32Array(8192);
  ends = new Int32Array(8192);
  flags = new Uint8Array(8192);
  /**
   * Worked out while the characters were scanned anyway, for an unquoted field (0 and NaN for a quoted one): the
   * FNV-1a hash of its characters (`hashOf`), and its value when it is a plain decimal such as "-39.1" (at most 17
   * characters, 15 digits, one point: read exactly as preprocessing's parseNumber reads one; NaN when not).
   */
  hashes = new Int32Array(8192);
  numbers = new Float64Array(8192);
  /**
   * The fields that may spell a missing value (csv.ts decides): empty, quoted, a short word starting with N or n
   * (NA, nan, null, None...), or starting or ending with a space or a non-ASCII character. Every other field is
   * none of csv.ts's tokens, which saves looking at each.
   */
  suspects = new Int32Array(1024);
  suspectCount = 0;

  /** Empties it for the next push. */
  clear(): void {
    this.records = 0;
    this.fields = 0;
    this.suspectCount = 0;
    this.first[0] = 0;
    this.reasons.length = 0;
  }

  /** Field f's text. */
  value(f: number): string {
    const text = this.text.slice(this.starts[f], this.ends[f]);
    return (this.flags[f]! & ESCAPED) !== 0 ? text.replaceAll('""', '"') : text;
  }

  field(start: number, end: number, flags: number, hash = 0, number = Number.NaN): void {
    if (this.fields === this.starts.length) {
      this.starts = grown(this.starts);
      this.ends = grown(this.ends);
      this.flags = grown(this.flags);
      this.hashes = grown(this.hashes);
      this.numbers = grown(this.numbers);
    }
    const f = this.fields++;
    this.starts[f] = start;
    this.ends[f] = end;
    this.flags[f] = flags;
    this.hashes[f] = hash;
    this.numbers[f] = number;
  }

  suspect(): void {
    if (this.suspectCount === this.suspects.length) this.suspects = grown(this.suspects);
    this.suspects[this.suspectCount++] = this.fields - 1;
  }

  /** Ends a record at `line` whose fields were added since the last one (none for a malformed one). */
  record(line: number, reason?: string): void {
    if (this.records + 1 === this.lines.length) {
      this.lines = grown(this.lines);
      this.first = grown(this.first);
    }
    if (reason !== undefined) {
      this.reasons[this.records] = reason;
      this.unwind();
    }
    this.lines[this.records] = line;
    this.records += 1;
    this.first[this.records] = this.fields;
  }

  /** Drops the fields added since the last record (a record that must be re-read with the next chunk). */
  unwind(): void {
    this.fields = this.first[this.records]!;
    while (this.suspectCount > 0 && this.suspects[this.suspectCount - 1]! >= this.fields) this.suspectCount -= 1;
  }
}

function grown<T extends Float64Array | Int32Array | Uint8Array>(array: T): T {
  const bigger = new (array.constructor as new (n: number) => T)(array.length * 2);
  bigger.set(array);
  return bigger;
}

export class CsvTokenizer {
  private rest = '';
  /** The line the next record starts on. */
  private line = 1;
  private started = false;
  /** After an overlong record: text is dropped up to the next line end. */
  private discarding = false;
  /** Where `push` and `end` tokenise before making strings of the cells. */
  private cells: CsvCells | undefined;

  /** `maxRecord`: a record of more characters than this is malformed, not buffered further. */
  constructor(private readonly maxRecord: number) {}

  /** Tokenises the complete records of `chunk` (and what earlier chunks left) into `out`. */
  push(chunk: string, out: CsvBatch): void {
    this.cells ??= new CsvCells();
    this.pushCells(chunk, this.cells);
    toBatch(this.cells, out);
  }

  /** Tokenises what is left at the end of the input. */
  end(out: CsvBatch): void {
    this.cells ??= new CsvCells();
    this.endCells(this.cells);
    toBatch(this.cells, out);
  }

  /** `push` as offsets: `out` is cleared, then holds the records this chunk completed. */
  pushCells(chunk: string, out: CsvCells): void {
    out.clear();
    // Joined, not `+`: a flat string, where a concatenation would make every charCodeAt below follow a pointer.
    let text = this.rest === '' ? chunk : [this.rest, chunk].join('');
    if (!this.started && text !== '') {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.discarding) {
      const end = text.indexOf('\n');
      if (end === -1) {
        this.rest = '';
        out.text = '';
        return;
      }
      this.discarding = false;
      this.line += 1;
      text = text.slice(end + 1);
    }
    out.text = text;
    const consumed = this.parse(text, false, out);
    this.rest = consumed === 0 ? text : text.slice(consumed);
    if (this.rest.length > this.maxRecord) {
      out.record(this.line, `record longer than ${this.maxRecord} characters`);
      this.line += countNewlines(this.rest, 0, this.rest.length);
      this.rest = '';
      // The record's text so far is dropped; its line's end (wherever the record went) resumes reading.
      this.discarding = true;
    }
  }

  /** `end` as offsets. */
  endCells(out: CsvCells): void {
    out.clear();
    out.text = '';
    if (this.discarding) return;
    out.text = this.rest;
    this.parse(this.rest, true, out);
    this.rest = '';
  }

  /**
   * Reads records from `text` into `out`; returns the characters consumed. Unless `final`, a record that may go on
   * past the text's end is left unconsumed (and re-read from its start with the next chunk).
   */
  private parse(text: string, final: boolean, out: CsvCells): number {
    const n = text.length;
    let pos = 0;
    while (pos < n) {
      const start = pos;
      let fields = 0;
      let quoted = false;
      let error: string | undefined;
      let c = -1;
      for (;;) {
        if (pos < n && text.charCodeAt(pos) === QUOTE) {
          quoted = true;
          let flags = QUOTED;
          const from = pos + 1;
          let at = from;
          for (;;) {
            const q = text.indexOf('"', at);
            if (q === -1) {
              if (!final) {
                out.unwind();
                return start;
              }
              error = `a quote opened in field ${fields + 1} is never closed`;
              pos = n;
              break;
            }
            if (q + 1 === n && !final) {
              out.unwind();
              return start; // the next chunk may start with a second quote
            }
            if (q + 1 < n && text.charCodeAt(q + 1) === QUOTE) {
              flags = QUOTED | ESCAPED;
              at = q + 2;
              continue;
            }
            out.field(from, q, flags);
            out.suspect();
            pos = q + 1;
            break;
          }
          if (error) break;
          fields += 1;
          c = pos < n ? text.charCodeAt(pos) : -1;
          if (c !== COMMA && c !== LF && c !== CR && c !== -1) {
            error = `characters after the closing quote of field ${fields}`;
            break;
          }
        } else {
          // One look at each character: the field's end, its hash, and its value if it is a plain decimal.
          let j = pos;
          c = -1;
          let hash = FNV_OFFSET;
          let mantissa = 0;
          let digits = 0;
          let decimals = -1;
          let plain = true;
          while (j < n) {
            const code = text.charCodeAt(j);
            if (code >= ZERO && code <= NINE) {
              mantissa = mantissa * 10 + (code - ZERO);
              digits += 1;
              if (decimals >= 0) decimals += 1;
            } else if (code === COMMA || code === LF || code === CR || code === QUOTE) {
              c = code;
              break;
            } else if (code === DOT && decimals < 0) decimals = 0;
            else if (code !== MINUS || j !== pos) plain = false;
            hash = Math.imul(hash ^ code, FNV_PRIME);
            j += 1;
          }
          if (c === QUOTE) {
            error = `a quote inside unquoted field ${fields + 1}`;
            pos = j;
            break;
          }
          if (c === -1 && !final) {
            out.unwind();
            return start;
          }
          let number = Number.NaN;
          if (plain && digits > 0 && digits <= 15 && j - pos <= 17) {
            number = decimals > 0 ? mantissa / POWERS_OF_TEN[decimals]! : mantissa;
            if (text.charCodeAt(pos) === MINUS) number = -number;
          }
          out.field(pos, j, 0, hash, number);
          if (j === pos) out.suspect();
          else {
            const first = text.charCodeAt(pos);
            const last = text.charCodeAt(j - 1);
            if (
              !(first > SPACE && first < DEL && last > SPACE && last < DEL) ||
              (j - pos <= 4 && (first === N || first === LOWER_N))
            ) {
              out.suspect();
            }
          }
          fields += 1;
          pos = j;
        }
        if (c === COMMA) {
          pos += 1;
          continue;
        }
        if (c === CR) {
          if (pos + 1 === n && !final) {
            out.unwind();
            return start; // an LF may follow in the next chunk
          }
          pos += pos + 1 < n && text.charCodeAt(pos + 1) === LF ? 2 : 1;
        } else if (c === LF) pos += 1;
        break;
      }
      if (error !== undefined) {
        // Resume after the line the error is on (a quote left open at the end has consumed the rest).
        const end = pos >= n ? -1 : text.indexOf('\n', pos);
        if (end === -1 && !final) {
          out.unwind();
          return start;
        }
        const next = end === -1 ? n : end + 1;
        out.record(this.line, error);
        this.line += countNewlines(text, start, next) + (end === -1 && !endsWithNewline(text, next) ? 1 : 0);
        pos = next;
        continue;
      }
      if (pos - start > this.maxRecord) out.record(this.line, `record longer than ${this.maxRecord} characters`);
      else out.record(this.line);
      // One line for the record's own end, plus every newline inside its quoted cells.
      this.line += 1 + (quoted ? countNewlines(text, start, pos) - (text.charCodeAt(pos - 1) === LF ? 1 : 0) : 0);
    }
    return pos;
  }
}

/** The records of `cells` as strings, appended to `out`. */
function toBatch(cells: CsvCells, out: CsvBatch): void {
  for (let r = 0; r < cells.records; r++) {
    out.lines.push(cells.lines[r]!);
    const reason = cells.reasons[r];
    if (reason !== undefined) {
      out.items.push(reason);
      continue;
    }
    const values: string[] = [];
    for (let f = cells.first[r]!; f < cells.first[r + 1]!; f++) values.push(cells.value(f));
    out.items.push(values);
  }
}

function countNewlines(text: string, from: number, to: number): number {
  let count = 0;
  for (let i = text.indexOf('\n', from); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) count += 1;
  return count;
}

function endsWithNewline(text: string, end: number): boolean {
  return end > 0 && text.charCodeAt(end - 1) === LF;
}
