import { invalidArgument } from '../errors';

/**
 * A fast path for the commonest REST predict body: `{"instances": T}` or `{"inputs": T}` (and
 * optionally `"signature_name"`), where T is a rectangular nested array of numbers — one image
 * per request is 784 numbers in 812 little arrays. JSON.parse builds all those arrays and then
 * the decoder walks them again; this reads the numbers straight from the body's bytes into a
 * Float32Array, as TF Serving's own REST door reads JSON into tensors (RapidJSON, no DOM).
 *
 * It is strict: anything it does not fully understand — other keys, objects or `{"b64"}`
 * values, strings where numbers belong, ragged or empty arrays, escapes, non-ASCII bytes,
 * malformed JSON — returns undefined, and the caller takes the general path (JSON.parse and
 * the decoder), which also writes the error messages (but a NaN or Infinity literal, which JSON.parse would refuse
 * only as a syntax error, is refused here naming the element). So the fast path only ever answers
 * bodies the general path would accept, and with the same numbers: a number is read exactly as
 * JSON.parse reads it (Clinger's fast path — an integer mantissa below 2^53 times or divided by
 * an exact power of ten up to 10^22 is correctly rounded — else Number() of its text), then
 * rounded to float32 exactly as a Float32Array store rounds it.
 */

export interface DenseJsonBody {
  format: 'row' | 'columnar';
  signatureName?: string;
  /** The array's shape, outermost first (for `instances`: [rows, ...one instance's shape]). */
  dims: number[];
  data: Float32Array;
}

const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
  1e21, 1e22,
];
const MAX_RANK = 8;

/** Thrown (and caught below) to leave the fast path. */
const BAIL = Symbol('bail');

// Scanner state: one body at a time (the scan is synchronous), kept in module variables so the
// hot loops work on locals and plain arrays.
let out: Float32Array = new Float32Array(4096);
let count = 0;
const dims = new Array<number>(MAX_RANK).fill(-1);
/** The rank of the tensor last read (its sizes are dims[0 … rank − 1]). */
let rank = 0;
const counts = new Array<number>(MAX_RANK).fill(0);

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

function skip(b: Uint8Array, i: number): number {
  while (i < b.length && isSpace(b[i]!)) i++;
  return i;
}

function push(value: number): void {
  if (count === out.length) {
    const grown = new Float32Array(out.length * 2);
    grown.set(out);
    out = grown;
  }
  out[count++] = value;
}

/** Reads one JSON number at `i`; returns the index after it (the value is pushed). */
function number(b: Uint8Array, i: number): number {
  const start = i;
  const end = b.length;
  let c = i < end ? b[i]! : -1;
  let negative = false;
  if (c === 45) {
    negative = true;
    c = ++i < end ? b[i]! : -1;
  }
  let mantissa = 0;
  let digits = 0;
  let exponent = 0;
  if (c === 48) {
    c = ++i < end ? b[i]! : -1;
  } else if (c >= 49 && c <= 57) {
    do {
      if (digits < 16) mantissa = mantissa * 10 + (c - 48);
      digits++;
      c = ++i < end ? b[i]! : -1;
    } while (c >= 48 && c <= 57);
    if (digits > 16) exponent += digits - 16;
  } else {
    // NaN and Infinity are not JSON (JSON.parse refuses the whole body), but TF Serving reads them: say which.
    if (c === 78 || c === 73) throw nonFinite(b, start);
    throw BAIL;
  }
  if (c === 46) {
    c = ++i < end ? b[i]! : -1;
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
      c = ++i < end ? b[i]! : -1;
    } while (c >= 48 && c <= 57);
  }
  if (c === 101 || c === 69) {
    c = ++i < end ? b[i]! : -1;
    let sign = 1;
    if (c === 43 || c === 45) {
      if (c === 45) sign = -1;
      c = ++i < end ? b[i]! : -1;
    }
    if (!(c >= 48 && c <= 57)) throw BAIL;
    let e = 0;
    do {
      if (e < 100_000) e = e * 10 + (c - 48);
      c = ++i < end ? b[i]! : -1;
    } while (c >= 48 && c <= 57);
    exponent += sign * e;
  }
  let value: number;
  if (digits <= 15 && exponent >= -22 && exponent <= 22) {
    value = exponent < 0 ? mantissa / POW10[-exponent]! : mantissa * POW10[exponent]!;
    if (negative) value = -value;
  } else {
    value = Number(Buffer.from(b.buffer, b.byteOffset + start, i - start).toString('latin1'));
    // Beyond float32's range (1e39): the general path refuses it, naming the element.
    if (!Number.isFinite(Math.fround(value))) throw BAIL;
  }
  push(value);
  return i;
}

/** The key whose tensor is being read, for errors (`instances` or `inputs`). */
let tensorKey = '';

/** The error for a NaN or Infinity literal at `i`, naming the element being read (`instances[0][3][4][0]`). */
function nonFinite(b: Uint8Array, i: number): Error {
  const word = Buffer.from(b.buffer, b.byteOffset + i, Math.min(9, b.length - i))
    .toString('latin1')
    .match(/^-?[A-Za-z]*/)![0];
  // Numbers are read at the innermost level, so every level is open: counts[d] is the index within level d.
  const index = counts
    .slice(0, rank)
    .map((n) => `[${n}]`)
    .join('');
  return invalidArgument(
    `${tensorKey}${index}: ${word} is not a JSON number; float inputs must be finite (NaN and ±Infinity are refused)`,
  );
}

/** A dense array at `i` (its rank is the run of `[` it opens with); returns the index after it. */
function tensor(b: Uint8Array, i: number): number {
  rank = 0;
  for (let j = i; j < b.length; j++) {
    const c = b[j]!;
    if (c === 91) rank++;
    else if (!isSpace(c)) break;
  }
  if (rank === 0 || rank > MAX_RANK) throw BAIL;
  dims.fill(-1);
  const leaf = rank - 1;
  let depth = -1;
  for (;;) {
    // An array opens at depth + 1.
    i = skip(b, i);
    if (b[i] !== 91) throw BAIL;
    i++;
    depth++;
    counts[depth] = 0;
    if (depth < leaf) continue;
    // The innermost level: numbers separated by commas.
    for (;;) {
      i = number(b, skip(b, i));
      counts[depth]!++;
      i = skip(b, i);
      const c = b[i];
      i++;
      if (c === 44) continue;
      if (c === 93) break;
      throw BAIL;
    }
    // Close arrays until one continues with a comma.
    for (;;) {
      const n = counts[depth]!;
      if (dims[depth] === -1) dims[depth] = n;
      else if (dims[depth] !== n) throw BAIL;
      depth--;
      if (depth < 0) return i;
      counts[depth]!++;
      i = skip(b, i);
      const c = b[i];
      i++;
      if (c === 44) break;
      if (c === 93) continue;
      throw BAIL;
    }
  }
}

/** A string without escapes or non-ASCII bytes (keys and signature names never need them here). */
function string(b: Uint8Array, i: number): [string, number] {
  if (b[i] !== 34) throw BAIL;
  let text = '';
  for (let j = i + 1; j < b.length; j++) {
    const c = b[j]!;
    if (c === 34) return [text, j + 1];
    if (c === 92 || c < 32 || c >= 128) throw BAIL;
    text += String.fromCharCode(c);
  }
  throw BAIL;
}

/** The body as a dense predict request, or undefined when the general path must read it. */
export function scanDensePredictBody(b: Uint8Array): DenseJsonBody | undefined {
  count = 0;
  try {
    let format: 'row' | 'columnar' | undefined;
    let signatureName: string | undefined;
    let seenSignature = false;
    let i = skip(b, 0);
    if (b[i] !== 123) return undefined;
    i++;
    for (;;) {
      let key: string;
      [key, i] = string(b, skip(b, i));
      i = skip(b, i);
      if (b[i] !== 58) return undefined;
      i = skip(b, i + 1);
      if (key === 'instances' || key === 'inputs') {
        if (format !== undefined) return undefined;
        format = key === 'instances' ? 'row' : 'columnar';
        tensorKey = key;
        i = tensor(b, i);
      } else if (key === 'signature_name' && !seenSignature) {
        seenSignature = true;
        [signatureName, i] = string(b, i);
      } else {
        return undefined;
      }
      i = skip(b, i);
      const c = b[i];
      i++;
      if (c === 44) continue;
      if (c === 125) break;
      return undefined;
    }
    if (skip(b, i) !== b.length || format === undefined) return undefined;
    // The values, copied out of the scratch buffer into Node's buffer pool (see predict-wire.ts).
    const copy = Buffer.allocUnsafe(count * 4);
    const data = new Float32Array(copy.buffer, copy.byteOffset, count);
    data.set(out.subarray(0, count));
    return { format, signatureName, dims: dims.slice(0, rank), data };
  } catch (error) {
    if (error === BAIL) return undefined;
    throw error;
  } finally {
    // A buffer grown for a big body is kept for the next one, up to 4 MiB.
    if (out.length > 1 << 20) out = new Float32Array(4096);
  }
}
