import { invalidArgument } from '../errors';
import { rowSize, type Signature } from '../signature';

/**
 * A bounded walk over a PredictRequest's bytes before anything decodes it. proto-loader's decoder makes one object
 * per repeated element (a few MB of empty `string_val`s is a few million of them) before any check can run; this
 * walk only counts, so a body that cannot fit the signature is refused for the price of reading it once: too many
 * inputs, a tensor_shape of more than MAX_DIMS dims, of more elements than the limit or (given the signature) not
 * its shape, more values in a repeated field than the shape holds, a TensorProto field that does not exist, or a
 * group wire type. Errors name the field.
 * Unknown PredictRequest fields are skipped, as protobuf (and TF Serving) skips them: newer clients send some.
 */

export const MAX_DIMS = 8;

export interface PrescanLimits {
  /** Entries in the `inputs` map. */
  maxInputs: number;
  /** Values in one tensor (the product of its dims, and each repeated field's count). */
  maxValues: (key: string) => number;
  /** string_val (and the other one-value-per-field fields) in one tensor, when lower than maxValues. */
  maxStrings?: number;
  /** The batch limit (a shape's first dim). */
  maxRows: number;
  /** The signature's shape of an input (-1 first), to refuse a tensor_shape that does not fit before its values. */
  shapeOf?: (key: string) => number[];
  /** Called with each input key as it is read (to refuse unknown ones before counting their values). */
  checkKey?: (key: string) => void;
}

/** Thrown by the reader on bytes that are not protobuf at all; reported as the field being read. */
class Truncated extends Error {}

class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint; beyond 2^53 it is only approximately right (such a value fails every size check anyway). */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Truncated();
      const byte = this.buf[this.pos++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new Truncated();
  }

  /** A length-delimited payload's bounds; moves past it. */
  bytes(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw new Truncated();
    this.pos = start + length;
    return [start, start + length];
  }

  sub(): Reader {
    const [start, end] = this.bytes();
    return new Reader(this.buf, start, end);
  }

  /** Moves past one field of this wire type; groups (3, 4) are refused. */
  skip(wireType: number, where: string): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.advance(8);
    else if (wireType === 2) this.bytes();
    else if (wireType === 5) this.advance(4);
    else throw invalidArgument(`${where}: wire type ${wireType} is not accepted`);
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new Truncated();
    this.pos += n;
  }
}

/** TensorProto's repeated value fields (engine/protos/…/tensor.proto): number → [name, bytes each (0: varint)]. */
const VALUE_FIELDS = new Map<number, [string, number]>([
  [5, ['float_val', 4]],
  [6, ['double_val', 8]],
  [7, ['int_val', 0]],
  [9, ['scomplex_val', 4]],
  [10, ['int64_val', 0]],
  [11, ['bool_val', 0]],
  [12, ['dcomplex_val', 8]],
  [13, ['half_val', 0]],
  [16, ['uint32_val', 0]],
  [17, ['uint64_val', 0]],
]);
/** Repeated length-delimited fields, one value each. */
const LEN_FIELDS = new Map<number, string>([
  [8, 'string_val'],
  [14, 'resource_handle_val'],
  [15, 'variant_val'],
]);

/** The number of varints in a packed payload: the bytes that end one (no continuation bit). */
function packedVarints(buf: Uint8Array, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if (buf[i]! < 0x80) n++;
  return n;
}

/** tensor_shape's dims (at most MAX_DIMS, each and their product at most `limit`). */
function scanShape(r: Reader, limit: number, where: string): number[] {
  const dims: number[] = [];
  let product = 1;
  while (!r.done) {
    const tag = r.varint();
    if (tag === ((2 << 3) | 2)) {
      const dimWhere = `${where}.tensor_shape.dim[${dims.length}]`;
      if (dims.length === MAX_DIMS) throw invalidArgument(`${where}.tensor_shape: more than ${MAX_DIMS} dims`);
      const dim = r.sub();
      let size = 0;
      while (!dim.done) {
        const dimTag = dim.varint();
        if (dimTag === ((1 << 3) | 0)) size = dim.varint();
        else dim.skip(dimTag & 7, dimWhere);
      }
      // A negative size is a 10-byte varint of about 2^64: refused here like any other too-large size.
      if (size > limit) throw invalidArgument(`${dimWhere}.size: ${size} exceeds the limit of ${limit} values`);
      product *= size;
      if (product > limit) throw invalidArgument(`${where}.tensor_shape: more than the limit of ${limit} values`);
      dims.push(size);
    } else r.skip(tag & 7, `${where}.tensor_shape`);
  }
  return dims;
}

/**
 * One TensorProto: its shape within the limits (and the signature's, when `want` is its shape), and no repeated
 * field with more values than the shape holds.
 */
function scanTensor(
  r: Reader,
  limit: number,
  stringLimit: number,
  maxRows: number,
  want: number[] | undefined,
  where: string,
): void {
  const counts = new Map<string, number>();
  const add = (name: string, n: number, most = limit) => {
    const total = (counts.get(name) ?? 0) + n;
    if (total > most) throw invalidArgument(`${where}.${name}: more than the limit of ${most} values`);
    counts.set(name, total);
  };
  let dims: number[] | undefined;
  let contentBytes = 0;
  while (!r.done) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    const value = VALUE_FIELDS.get(field);
    const lenField = LEN_FIELDS.get(field);
    if (field === 2 && wireType === 2) dims = scanShape(r.sub(), limit, where);
    else if (field === 1 || field === 3) r.skip(wireType, where);
    else if (field === 4 && wireType === 2) {
      const [start, end] = r.bytes();
      contentBytes += end - start;
    } else if (value && wireType === 2) {
      const [start, end] = r.bytes();
      add(value[0], value[1] ? Math.floor((end - start) / value[1]) : packedVarints(r.buf, start, end));
    } else if (value) {
      r.skip(wireType, `${where}.${value[0]}`);
      add(value[0], 1);
    } else if (lenField && wireType === 2) {
      // A run of the same one-byte tag (millions of empty strings) is counted in this tight loop.
      let n = 1;
      r.bytes();
      while (!r.done && r.buf[r.pos] === tag && n <= stringLimit) {
        r.pos++;
        r.bytes();
        n++;
      }
      add(lenField, n, stringLimit);
    } else throw invalidArgument(`${where}: TensorProto has no field ${field} (wire type ${wireType})`);
  }
  if (!dims) {
    if (counts.size > 0 || contentBytes > 0) throw invalidArgument(`${where}: tensor_shape is required`);
    return;
  }
  if (want) {
    const mismatch =
      dims.length !== want.length || dims.some((d, i) => (i === 0 ? !(d >= 1 && d <= maxRows) : d !== want[i]));
    if (mismatch)
      throw invalidArgument(
        `${where}: shape [${dims.join(', ')}] does not match the signature's [${want.join(', ')}] (-1: any batch ` +
          `size from 1 to ${maxRows})`,
      );
  }
  const product = dims.reduce((a, b) => a * b, 1);
  for (const [name, n] of counts)
    if (n > product)
      throw invalidArgument(`${where}.${name}: ${n} values for shape [${dims.join(', ')}] (${product} needed)`);
  // tensor_content: at most 8 bytes a value (DT_DOUBLE, DT_INT64).
  if (contentBytes > product * 8)
    throw invalidArgument(`${where}.tensor_content: ${contentBytes} bytes for shape [${dims.join(', ')}]`);
}

/** UTF-8 text of a map key, bounded (input keys are short names). */
function keyText(r: Reader): string {
  const [start, end] = r.bytes();
  if (end - start > 256) throw invalidArgument('inputs: an input key longer than 256 bytes');
  return Buffer.from(r.buf.buffer, r.buf.byteOffset + start, end - start).toString('utf8');
}

/** Walks a PredictRequest (REST's binary body or gRPC Predict's bytes); throws INVALID_ARGUMENT naming the field. */
export function prescanPredictRequest(bytes: Uint8Array, limits: PrescanLimits): void {
  let where = 'body';
  try {
    const r = new Reader(bytes, 0, bytes.byteLength);
    let inputs = 0;
    while (!r.done) {
      const tag = r.varint();
      if (tag !== ((2 << 3) | 2)) {
        where = `PredictRequest field ${Math.floor(tag / 8)}`;
        r.skip(tag & 7, where);
        continue;
      }
      if (++inputs > limits.maxInputs)
        throw invalidArgument(`inputs: more than the ${limits.maxInputs} inputs the signature takes`);
      where = `inputs[${inputs - 1}]`;
      const entry = r.sub();
      let key = '';
      let tensor: Reader | undefined;
      while (!entry.done) {
        const entryTag = entry.varint();
        if (entryTag === ((1 << 3) | 2)) key = keyText(entry);
        else if (entryTag === ((2 << 3) | 2)) tensor = entry.sub();
        else entry.skip(entryTag & 7, where);
      }
      limits.checkKey?.(key);
      where = `inputs.${key}`;
      if (tensor) {
        const most = limits.maxValues(key);
        scanTensor(
          tensor,
          most,
          Math.min(most, limits.maxStrings ?? most),
          limits.maxRows,
          limits.shapeOf?.(key),
          where,
        );
      }
    }
  } catch (error) {
    if (error instanceof Truncated) throw invalidArgument(`${where}: the body is not a PredictRequest (truncated)`);
    throw error;
  }
}

/** The limits a signature sets: its inputs, and per input its rows × values per row. */
export function signatureLimits(signature: Signature, maxRows: number): PrescanLimits {
  const specs = new Map(signature.inputs.map((spec) => [spec.key, spec]));
  return {
    maxInputs: signature.inputs.length,
    maxValues: (key) => maxRows * rowSize(specs.get(key)!),
    maxRows,
    shapeOf: (key) => specs.get(key)!.shape,
    checkKey: (key) => {
      if (!specs.has(key))
        throw invalidArgument(
          `inputs: unknown input "${key.slice(0, 64)}"; the signature's inputs are ` +
            `${signature.inputs.map((s) => `"${s.key}"`).join(', ')}`,
        );
    },
  };
}

/**
 * The limits before the signature is known (gRPC decodes a request before its handler runs): generous counts, and
 * few one-object-per-value fields (a string tensor carries about one string a row: serialized examples, images).
 */
export function requestLimits(maxRows: number): PrescanLimits {
  return { maxInputs: 256, maxValues: () => maxRows * 65536, maxStrings: maxRows * 16, maxRows };
}

/** A request the pre-scan refused while deserializing: the handler throws its error (INVALID_ARGUMENT). */
export class RefusedRequest {
  constructor(readonly error: unknown) {}
}
