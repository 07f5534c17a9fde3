/**
 * A fast path for the commonest REST predict body: `{"instances": T}` or `{"inputs": T}` (and
 * optionally `"signature_name"`), where T is a rectangular nested array of numbers — one image
 * per request is 784 numbers in 812 little arrays. JSON.parse builds all those arrays and then
 * the decoder walks them again; this reads the numbers straight from the text into a
 * Float32Array, as TF Serving's own REST door reads JSON into tensors (RapidJSON, no DOM).
 *
 * It is strict: anything it does not fully understand — other keys, objects or `{"b64"}`
 * values, strings where numbers belong, ragged or empty arrays, escapes, malformed JSON —
 * returns undefined, and the caller takes the general path (JSON.parse and the decoder), which
 * also writes the error messages. So the fast path only ever answers bodies the general path
 * would accept, and with the same numbers: a number is read exactly as JSON.parse reads it
 * (Clinger's fast path — an integer mantissa below 2^53 times or divided by an exact power of
 * ten up to 10^22 is correctly rounded — else Number() of its text), then rounded to float32
 * exactly as a Float32Array store rounds it.
 */

export interface DenseJsonBody {
  format: 'row' | 'columnar';
  signatureName?: string;
  /** The array's shape, outermost first (for `instances`: [rows, ...one instance's shape]). */
  dims: number[];
  data: Float32Array;
}

const POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
const MAX_RANK = 8;

/** Thrown (and caught below) to leave the fast path: cheaper than threading a status through every level. */
const BAIL = Symbol('bail');

class Scanner {
  i = 0;
  /** Values read so far, in a scratch buffer that grows (and is reused by the next body). */
  count = 0;
  dims: number[] = [];

  constructor(
    readonly s: string,
    public out: Float32Array,
  ) {}

  ws(): number {
    const s = this.s;
    let c = s.charCodeAt(this.i);
    while (c === 32 || c === 10 || c === 13 || c === 9) c = s.charCodeAt(++this.i);
    return c;
  }

  expect(code: number): void {
    if (this.ws() !== code) throw BAIL;
    this.i++;
  }

  /** A string without escapes (keys and signature names never need them here). */
  string(): string {
    if (this.ws() !== 34) throw BAIL;
    const start = ++this.i;
    const end = this.s.indexOf('"', start);
    if (end < 0) throw BAIL;
    const value = this.s.slice(start, end);
    for (let k = 0; k < value.length; k++) {
      const c = value.charCodeAt(k);
      if (c === 92 || c < 32) throw BAIL;
    }
    this.i = end + 1;
    return value;
  }

  number(): number {
    const s = this.s;
    const start = this.i;
    let c = s.charCodeAt(this.i);
    let negative = false;
    if (c === 45) {
      negative = true;
      c = s.charCodeAt(++this.i);
    }
    let mantissa = 0;
    let digits = 0;
    let exponent = 0;
    if (c === 48) {
      c = s.charCodeAt(++this.i);
    } else if (c >= 49 && c <= 57) {
      do {
        if (digits < 16) mantissa = mantissa * 10 + (c - 48);
        else exponent++;
        digits++;
        c = s.charCodeAt(++this.i);
      } while (c >= 48 && c <= 57);
    } else {
      throw BAIL;
    }
    if (c === 46) {
      c = s.charCodeAt(++this.i);
      if (!(c >= 48 && c <= 57)) throw BAIL;
      do {
        // Leading zeros of a fraction (0.00012) are not significant digits.
        if (digits > 0 || c !== 48) {
          if (digits < 16) {
            mantissa = mantissa * 10 + (c - 48);
            exponent--;
          }
          digits++;
        } else {
          exponent--;
        }
        c = s.charCodeAt(++this.i);
      } while (c >= 48 && c <= 57);
    }
    if (c === 101 || c === 69) {
      c = s.charCodeAt(++this.i);
      let sign = 1;
      if (c === 43 || c === 45) {
        if (c === 45) sign = -1;
        c = s.charCodeAt(++this.i);
      }
      if (!(c >= 48 && c <= 57)) throw BAIL;
      let e = 0;
      do {
        if (e < 100_000) e = e * 10 + (c - 48);
        c = s.charCodeAt(++this.i);
      } while (c >= 48 && c <= 57);
      exponent += sign * e;
    }
    let value: number;
    if (digits <= 15 && exponent >= -22 && exponent <= 22) {
      value = exponent < 0 ? mantissa / POW10[-exponent]! : mantissa * POW10[exponent]!;
      if (negative) value = -value;
    } else {
      value = Number(s.slice(start, this.i));
      if (!Number.isFinite(value)) throw BAIL;
    }
    return value;
  }

  push(value: number): void {
    if (this.count === this.out.length) {
      const grown = new Float32Array(this.out.length * 2);
      grown.set(this.out);
      this.out = grown;
    }
    this.out[this.count++] = value;
  }

  /** One array at `level` of a tensor of rank `rank`; sizes must repeat at each level. */
  array(level: number, rank: number): void {
    this.expect(91);
    let n = 0;
    if (this.ws() === 93) throw BAIL;
    for (;;) {
      if (level === rank - 1) {
        this.ws();
        this.push(this.number());
      } else {
        this.array(level + 1, rank);
      }
      n++;
      const c = this.ws();
      this.i++;
      if (c === 44) continue;
      if (c === 93) break;
      throw BAIL;
    }
    const known = this.dims[level]!;
    if (known === -1) this.dims[level] = n;
    else if (known !== n) throw BAIL;
  }

  /** A dense array: its rank is the run of `[` it opens with. */
  tensor(): void {
    let rank = 0;
    for (let k = this.i; ; k++) {
      const c = this.s.charCodeAt(k);
      if (c === 91) rank++;
      else if (!(c === 32 || c === 10 || c === 13 || c === 9)) break;
    }
    if (rank === 0 || rank > MAX_RANK) throw BAIL;
    this.dims = new Array<number>(rank).fill(-1);
    this.array(0, rank);
  }
}

let scratch: Float32Array = new Float32Array(4096);

/** The body as a dense predict request, or undefined when the general path must read it. */
export function scanDensePredictBody(text: string): DenseJsonBody | undefined {
  const scanner = new Scanner(text, scratch);
  try {
    let format: 'row' | 'columnar' | undefined;
    let signatureName: string | undefined;
    let seenSignature = false;
    scanner.expect(123);
    for (;;) {
      const key = scanner.string();
      scanner.expect(58);
      if (key === 'instances' || key === 'inputs') {
        if (format !== undefined) return undefined;
        format = key === 'instances' ? 'row' : 'columnar';
        scanner.ws();
        scanner.tensor();
      } else if (key === 'signature_name' && !seenSignature) {
        seenSignature = true;
        signatureName = scanner.string();
      } else {
        return undefined;
      }
      const c = scanner.ws();
      scanner.i++;
      if (c === 44) continue;
      if (c === 125) break;
      return undefined;
    }
    scanner.ws();
    if (scanner.i !== text.length) return undefined;
    if (format === undefined) return undefined;
    return { format, signatureName, dims: scanner.dims, data: scanner.out.slice(0, scanner.count) };
  } catch (error) {
    if (error === BAIL) return undefined;
    throw error;
  } finally {
    // Keep a grown buffer for the next body (up to 4 MiB of floats).
    if (scanner.out !== scratch && scanner.out.length <= 1 << 20) scratch = scanner.out;
  }
}
