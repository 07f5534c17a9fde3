import os from 'node:os';
import type { Signature } from '../signature';
import { MAX_DIMS } from './prescan';
import type { DenseTensor } from '../tensors';

/**
 * A fast path for the commonest binary predict: a PredictRequest whose inputs are dense float32
 * or int32 tensors (`tensor_content`, or packed `float_val`), and a PredictResponse of float32
 * outputs — read and written at the protobuf wire level. The general path (proto-loader's
 * decode into objects with every default filled in, zod's checks, then the tensor decoder; and
 * proto-loader's object-to-message encoder on the way out) allocates a few dozen objects per
 * request; this reads the input bytes straight into the tensor and writes `float_val` as the
 * output's own bytes (a packed float field is exactly its little-endian floats).
 *
 * Strict, like the JSON fast path: a field it does not know, a wire type it does not expect, a
 * tensor that does not fit the signature — anything the general path might answer differently
 * — returns undefined, and the caller decodes the same bytes the general way (which also writes
 * the error messages). Field numbers are TF Serving's (serving/protos).
 *
 * It does not run the pre-scan (prescan.ts) first, and need not: what it keeps is bounded by itself (at most
 * MAX_DIMS dims a tensor, MAX_WIRE_INPUTS inputs and output names; values as a view of tensor_content or one copy
 * of a packed float_val, never an object per value), and it answers only tensors of exactly the signature's shape
 * with 1…maxRows rows, which is what the pre-scan's signature limits allow. A request it read but cannot answer is
 * pre-scanned before proto-loader decodes it (grpc/server.ts, rest/binary.ts; floats.test.ts shows both).
 */

export interface WireTensor {
  /** DataType enum value: 1 DT_FLOAT, 3 DT_INT32. */
  dtype: number;
  dims: number[];
  /** tensor_content, when non-empty. */
  content?: Uint8Array;
  /** float_val, when packed. */
  floats?: Float32Array;
}

/** A PredictRequest as the fast path read it (with its bytes, for the general path to reread). */
export class WirePredictRequest {
  constructor(readonly bytes: Uint8Array) {}

  name = '';
  /** The version as given (decimal), when model_spec chose `version`. */
  version: number | undefined;
  versionLabel: string | undefined;
  signatureName = '';
  readonly inputs = new Map<string, WireTensor>();
  readonly outputFilter: string[] = [];
}

/** Packed floats are little-endian on the wire; typed arrays use the machine's order. */
const LITTLE_ENDIAN = os.endianness() === 'LE';
const DT_FLOAT = 1;
const DT_INT32 = 3;
const DTYPE_NUMBER = { float32: DT_FLOAT, int32: DT_INT32 } as const;

/** The most inputs (and output_filter names) the fast path keeps; a request with more takes the general path. */
const MAX_WIRE_INPUTS = 256;

/** Thrown (and caught in readPredictRequest) to leave the fast path. */
const BAIL = Symbol('bail');

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as a number; values beyond 2^53 (never a valid size, version or tag here) bail. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw BAIL;
      const byte = this.buf[this.pos++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw BAIL;
  }

  /** The bounds of a length-delimited field's payload; moves past it. */
  bytes(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    const end = start + length;
    if (end > this.end) throw BAIL;
    this.pos = end;
    return [start, end];
  }

  string(): string {
    const [start, end] = this.bytes();
    // Names are ASCII in practice; anything else takes the general path's UTF-8 decoder.
    let text = '';
    for (let i = start; i < end; i++) {
      const c = this.buf[i]!;
      if (c >= 0x80) throw BAIL;
      text += String.fromCharCode(c);
    }
    return text;
  }

  sub(): Reader {
    const [start, end] = this.bytes();
    return new Reader(this.buf, start, end);
  }
}

function readTensor(r: Reader): WireTensor {
  const tensor: WireTensor = { dtype: 0, dims: [] };
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | 0:
        tensor.dtype = r.varint();
        break;
      case (2 << 3) | 2: {
        const shape = r.sub();
        while (!shape.done) {
          const shapeTag = shape.varint();
          if (shapeTag !== ((2 << 3) | 2)) throw BAIL;
          const dim = shape.sub();
          let size = 0;
          while (!dim.done) {
            const dimTag = dim.varint();
            if (dimTag === ((1 << 3) | 0)) size = dim.varint();
            else if (dimTag === ((2 << 3) | 2)) dim.bytes();
            else throw BAIL;
          }
          // More dims than the pre-scan allows: its business (and so its error).
          if (tensor.dims.length === MAX_DIMS) throw BAIL;
          tensor.dims.push(size);
        }
        break;
      }
      case (3 << 3) | 0:
        r.varint();
        break;
      case (4 << 3) | 2: {
        const [start, end] = r.bytes();
        if (end > start) tensor.content = r.buf.subarray(start, end);
        break;
      }
      case (5 << 3) | 2: {
        const [start, end] = r.bytes();
        if ((end - start) % 4 !== 0 || tensor.floats) throw BAIL;
        // A copy: aligned, and owned by the tensor.
        tensor.floats = new Float32Array(new Uint8Array(r.buf.subarray(start, end)).buffer);
        break;
      }
      default:
        throw BAIL;
    }
  }
  return tensor;
}

function readModelSpec(r: Reader, request: WirePredictRequest): void {
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | 2:
        request.name = r.string();
        break;
      case (2 << 3) | 2: {
        const wrapper = r.sub();
        let value = 0;
        while (!wrapper.done) {
          if (wrapper.varint() !== ((1 << 3) | 0)) throw BAIL;
          value = wrapper.varint();
        }
        request.version = value;
        request.versionLabel = undefined;
        break;
      }
      case (3 << 3) | 2:
        request.signatureName = r.string();
        break;
      case (4 << 3) | 2:
        request.versionLabel = r.string();
        request.version = undefined;
        break;
      default:
        throw BAIL;
    }
  }
}

/** A PredictRequest's bytes as the fast path reads them, or undefined for the general path. */
export function readPredictRequest(buf: Uint8Array): WirePredictRequest | undefined {
  if (!LITTLE_ENDIAN) return undefined;
  const request = new WirePredictRequest(buf);
  try {
    const r = new Reader(buf, 0, buf.length);
    while (!r.done) {
      const tag = r.varint();
      switch (tag) {
        case (1 << 3) | 2:
          readModelSpec(r.sub(), request);
          break;
        case (2 << 3) | 2: {
          const entry = r.sub();
          let key = '';
          let tensor: WireTensor | undefined;
          while (!entry.done) {
            const entryTag = entry.varint();
            if (entryTag === ((1 << 3) | 2)) key = entry.string();
            else if (entryTag === ((2 << 3) | 2)) tensor = readTensor(entry.sub());
            else throw BAIL;
          }
          // A repeated key, a key without a value, or more inputs than any signature takes: the general path's
          // business (its pre-scan refuses too many), so what this reader keeps stays bounded.
          if (!tensor || request.inputs.has(key) || request.inputs.size === MAX_WIRE_INPUTS) return undefined;
          request.inputs.set(key, tensor);
          break;
        }
        case (3 << 3) | 2:
          if (request.outputFilter.length === MAX_WIRE_INPUTS) return undefined;
          request.outputFilter.push(r.string());
          break;
        default:
          return undefined;
      }
    }
  } catch (error) {
    if (error === BAIL) return undefined;
    throw error;
  }
  return request;
}

/**
 * The request's inputs as the signature's tensors, or undefined when anything does not fit
 * exactly (the general decoder then says what). Rows must be 1…maxRows and equal across inputs.
 */
export function wireInputs(
  request: WirePredictRequest,
  signature: Signature,
  maxRows: number,
): DenseTensor[] | undefined {
  if (request.inputs.size !== signature.inputs.length) return undefined;
  for (const name of request.outputFilter) {
    if (!signature.outputs.some((s) => s.key === name)) return undefined;
  }
  const tensors: DenseTensor[] = [];
  for (const spec of signature.inputs) {
    const wire = request.inputs.get(spec.key);
    // A SavedModel's own dtype (int64, bool, double, string) is the general decoder's.
    if (!wire || spec.tfDType || wire.dtype !== DTYPE_NUMBER[spec.dtype]) return undefined;
    const { dims } = wire;
    if (
      dims.length !== spec.shape.length ||
      !(dims[0]! >= 1 && dims[0]! <= maxRows) ||
      spec.shape.some((d, i) => i > 0 && dims[i] !== d)
    )
      return undefined;
    if (tensors.length > 0 && dims[0] !== tensors[0]!.shape[0]) return undefined;
    const count = dims.reduce((a, b) => a * b, 1);
    let data: Float32Array | Int32Array;
    if (wire.content) {
      if (wire.content.byteLength !== count * 4) return undefined;
      // A copy (aligned, and owned by the tensor) into Node's buffer pool: no zeroing, no new
      // ArrayBuffer per request for the small tensors of one request (pool slices are 8-aligned).
      const copy = Buffer.allocUnsafe(wire.content.byteLength);
      copy.set(wire.content);
      data =
        spec.dtype === 'int32'
          ? new Int32Array(copy.buffer, copy.byteOffset, count)
          : new Float32Array(copy.buffer, copy.byteOffset, count);
    } else if (wire.floats && spec.dtype === 'float32' && wire.floats.length === count) {
      data = wire.floats;
    } else {
      return undefined;
    }
    tensors.push({ dtype: spec.dtype, shape: dims, data });
  }
  return tensors;
}

// ---- writing ----

class Writer {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + extra));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  varint(value: number): void {
    this.ensure(10);
    while (value >= 0x80) {
      this.buf[this.pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buf[this.pos++] = value;
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  string(field: number, text: string): void {
    const length = Buffer.byteLength(text);
    this.tag(field, 2);
    this.varint(length);
    this.ensure(length);
    this.pos += this.buf.write(text, this.pos);
  }

  raw(field: number, bytes: Uint8Array): void {
    this.tag(field, 2);
    this.varint(bytes.byteLength);
    this.ensure(bytes.byteLength);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.byteLength;
  }

  /** A length-delimited field whose payload `body` writes (its length is patched in after). */
  message(field: number, body: () => void): void {
    this.tag(field, 2);
    // Reserve 5 bytes for the length, write, then move the payload down to a minimal varint.
    this.ensure(5);
    const lengthAt = this.pos;
    this.pos += 5;
    body();
    const length = this.pos - lengthAt - 5;
    let size = 1;
    while (length >= 0x80 ** size) size++;
    this.buf.copy(this.buf, lengthAt + size, lengthAt + 5, this.pos);
    let value = length;
    for (let i = 0; i < size; i++) {
      this.buf[lengthAt + i] = (value % 0x80) | (i < size - 1 ? 0x80 : 0);
      value = Math.floor(value / 0x80);
    }
    this.pos -= 5 - size;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/**
 * A PredictResponse of float32 outputs: `outputs` (key → TensorProto with dtype, shape and
 * float_val) and model_spec (name, version, signature name when given). Undefined when an
 * output is not float32 (the general encoder writes int_val).
 */
export function writePredictResponse(
  model: string,
  version: number,
  signatureName: string | undefined,
  outputs: { key: string; tensor: DenseTensor; tfDType?: string }[],
): Buffer | undefined {
  if (!LITTLE_ENDIAN || outputs.some((o) => o.tensor.dtype !== 'float32' || o.tfDType || o.tensor.strings))
    return undefined;
  const w = new Writer();
  for (const { key, tensor } of outputs) {
    w.message(1, () => {
      w.string(1, key);
      w.message(2, () => {
        w.tag(1, 0);
        w.varint(DT_FLOAT);
        w.message(2, () => {
          for (const size of tensor.shape)
            w.message(2, () => {
              w.tag(1, 0);
              w.varint(size);
            });
        });
        const data = tensor.data as Float32Array;
        if (data.length > 0) w.raw(5, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      });
    });
  }
  w.message(2, () => {
    w.string(1, model);
    w.message(2, () => {
      w.tag(1, 0);
      w.varint(version);
    });
    if (signatureName) w.string(3, signatureName);
  });
  return w.finish();
}
