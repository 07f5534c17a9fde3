import { z } from 'zod';
import { invalidArgument } from './errors';
import { rowSize, type ServedDType, type Signature, type TensorSpec } from './signature';

/**
 * Dense tensors as the server moves them: a typed array and a shape, batch dimension first.
 * Also the REST (JSON) encodings of TF Serving's predict API: the row format (`instances` →
 * `predictions`) and the columnar format (`inputs` → `outputs`), with `{"b64": …}` values.
 * Every check names where in the body it failed.
 */
export interface DenseTensor {
  dtype: ServedDType;
  shape: number[];
  /** The values; empty for a string tensor. */
  data: Float32Array | Int32Array;
  /**
   * Present for a DT_STRING tensor (a SavedModel's; its spec's tfDType says so): one byte string per element,
   * row-major. Kept beside `data` rather than in it so the numeric paths stay typed arrays.
   */
  strings?: Uint8Array[];
}

/** The longest string element a request may carry, and the most string bytes per tensor. */
export const MAX_STRING_BYTES = 8 * 1024 * 1024;
export const MAX_STRING_TENSOR_BYTES = 64 * 1024 * 1024;

export function isStringSpec(spec: TensorSpec): boolean {
  return spec.tfDType === 'DT_STRING';
}

/** Bounds a string tensor's elements (each and all together); `where` names the tensor. */
export function checkStrings(strings: Uint8Array[], where: string): void {
  let total = 0;
  strings.forEach((s, i) => {
    if (s.byteLength > MAX_STRING_BYTES)
      throw invalidArgument(`${where}[${i}]: a string of ${s.byteLength} bytes exceeds ${MAX_STRING_BYTES}`);
    total += s.byteLength;
  });
  if (total > MAX_STRING_TENSOR_BYTES)
    throw invalidArgument(`${where}: ${total} bytes of strings exceed the limit of ${MAX_STRING_TENSOR_BYTES}`);
}

/** A string tensor of `shape` (data empty). */
export function stringTensor(shape: number[], strings: Uint8Array[]): DenseTensor {
  return { dtype: 'int32', shape, data: new Int32Array(0), strings };
}

export function allocate(dtype: ServedDType, size: number): Float32Array | Int32Array {
  return dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
}

/** Reads little-endian bytes (TensorProto.tensor_content, a b64 value) as `count` values of `dtype`. */
export function fromBytes(
  bytes: Uint8Array,
  dtype: ServedDType,
  count: number,
  where: string,
): Float32Array | Int32Array {
  if (bytes.byteLength !== count * 4)
    throw invalidArgument(
      `${where}: ${bytes.byteLength} bytes of ${dtype} data, expected ${count * 4} (${count} values × 4 bytes)`,
    );
  // A copy, both for alignment (typed arrays need offset % 4 == 0) and to own the memory.
  const copy = new Uint8Array(bytes);
  return dtype === 'int32' ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer);
}

/**
 * The index of the first NaN or ±Infinity in `data`, or -1. v × 0 is 0 for a finite v and NaN otherwise, so a sum
 * of them, four at a time and without a branch, says whether to look for the index at all (twice as fast as a
 * test per value): checking every request's float inputs costs about a microsecond per image.
 */
export function firstNonFinite(data: Float32Array): number {
  const n = data.length;
  let sum = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) sum += data[i]! * 0 + data[i + 1]! * 0 + (data[i + 2]! * 0 + data[i + 3]! * 0);
  for (; i < n; i++) sum += data[i]! * 0;
  if (sum === 0) return -1;
  for (i = 0; i < n; i++) if (data[i]! * 0 !== 0) return i;
  return -1;
}

/** A flat index as the nested index of `shape`: 813 in [2, 28, 28, 1] is [1][1][1][0]. */
function nestedIndex(shape: readonly number[], flat: number): string {
  const parts: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = Math.max(1, shape[d]!);
    parts.unshift(flat % size);
    flat = Math.floor(flat / size);
  }
  return parts.map((p) => `[${p}]`).join('');
}

/**
 * Refuses NaN and ±Infinity in a request's float32 inputs, whatever door and encoding they came by (JSON cannot
 * spell them, but tensor_content, float_val, raw and b64 bytes can), naming the input and the element. TF Serving
 * passes them to the model; Gantry refuses them: a NaN row gives NaN scores, which JSON writes as null, whose
 * arg-max counts as class 0 in the predicted-class metrics and the canary's feedback. (A records model reads NaN
 * as a missing value before this, under its column's policy.)
 */
export function checkFinite(inputs: readonly DenseTensor[], signature: Signature): void {
  for (let k = 0; k < inputs.length; k++) {
    const tensor = inputs[k]!;
    if (tensor.strings || tensor.dtype !== 'float32') continue;
    const i = firstNonFinite(tensor.data as Float32Array);
    if (i < 0) continue;
    const key = signature.inputs[k]?.key ?? String(k);
    throw invalidArgument(
      `input "${key}"${nestedIndex(tensor.shape, i)}: ${tensor.data[i]} is not a finite number (float inputs ` +
        'must be finite: NaN and ±Infinity are refused)',
    );
  }
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 20 ? `${value.slice(0, 20)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

function isB64(value: unknown): value is { b64: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { b64?: unknown }).b64 === 'string' &&
    Object.keys(value).length === 1
  );
}

function decodeB64(text: string, where: string): Uint8Array {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw invalidArgument(`${where}: "b64" is not base64`);
  return Buffer.from(text, 'base64');
}

/**
 * Copies `value`, a nested array of exactly `dims`, into `out` at `offset`. Iterative over the
 * outer levels would not be faster for rank ≤ 4; the recursion depth is the tensor's rank.
 */
function fill(
  value: unknown,
  dims: readonly number[],
  level: number,
  dtype: ServedDType,
  out: Float32Array | Int32Array,
  offset: number,
  where: string,
  bool = false,
): number {
  if (level === dims.length) {
    // DT_BOOL takes JSON's true and false (as TF Serving does), carried as 1 and 0.
    if (bool && typeof value === 'boolean') {
      out[offset] = value ? 1 : 0;
      return offset + 1;
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw invalidArgument(
        `${where}: expected a ${dtype === 'int32' ? 'integer' : 'number'} (dtype ${dtype}), got ${describe(value)}`,
      );
    }
    if (dtype === 'int32' && (!Number.isInteger(value) || value < -2147483648 || value > 2147483647))
      throw invalidArgument(`${where}: expected an int32, got ${value}`);
    // As TF Serving: a finite JSON number beyond float32's range (1e39) is refused, not stored as Infinity.
    if (dtype === 'float32' && !Number.isFinite(Math.fround(value)))
      throw invalidArgument(`${where}: ${value} is outside the float32 range`);
    out[offset] = value;
    return offset + 1;
  }
  const size = dims[level]!;
  if (!Array.isArray(value) || value.length !== size) {
    throw invalidArgument(
      `${where}: expected an array of ${size} (shape [${dims.slice(level).join(', ')}]), got ${describe(value)}`,
    );
  }
  let next = offset;
  if (level === dims.length - 1) {
    // The innermost level, inline: this loop is where a request's values are read.
    for (let i = 0; i < size; i++) {
      const v = value[i];
      if (bool && typeof v === 'boolean') {
        out[next++] = v ? 1 : 0;
        continue;
      }
      if (typeof v !== 'number' || !Number.isFinite(v) || (dtype === 'int32' && !Number.isInteger(v))) {
        throw invalidArgument(
          `${where}[${i}]: expected a ${dtype === 'int32' ? 'integer' : 'number'} (dtype ${dtype}), got ${describe(v)}`,
        );
      }
      if (dtype === 'float32' && !Number.isFinite(Math.fround(v)))
        throw invalidArgument(`${where}[${i}]: ${v} is outside the float32 range`);
      out[next++] = v;
    }
    return next;
  }
  for (let i = 0; i < size; i++) next = fill(value[i], dims, level + 1, dtype, out, next, `${where}[${i}]`, bool);
  return next;
}

/** One string element: a JSON string (its UTF-8 bytes) or `{"b64": …}` (the bytes themselves). */
function stringValue(value: unknown, where: string): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (isB64(value)) return decodeB64(value.b64, where);
  throw invalidArgument(`${where}: expected a string or {"b64": …} (dtype DT_STRING), got ${describe(value)}`);
}

/** Collects `value`, a nested array of exactly `dims` of string elements, into `out`. */
function fillStrings(value: unknown, dims: readonly number[], level: number, out: Uint8Array[], where: string): void {
  if (level === dims.length) {
    out.push(stringValue(value, where));
    return;
  }
  const size = dims[level]!;
  if (!Array.isArray(value) || value.length !== size)
    throw invalidArgument(
      `${where}: expected an array of ${size} (shape [${dims.slice(level).join(', ')}]), got ${describe(value)}`,
    );
  for (let i = 0; i < size; i++) fillStrings(value[i], dims, level + 1, out, `${where}[${i}]`);
}

/** One row (an instance's value for one input) into `out` at row `row`. */
function fillRow(value: unknown, spec: TensorSpec, tensor: DenseTensor, row: number, where: string): void {
  const size = rowSize(spec);
  if (tensor.strings) {
    fillStrings(value, spec.shape.slice(1), 0, tensor.strings, where);
    return;
  }
  const out = tensor.data;
  if (isB64(value)) {
    out.set(fromBytes(decodeB64(value.b64, where), spec.dtype, size, where), row * size);
    return;
  }
  fill(value, spec.shape.slice(1), 0, spec.dtype, out, row * size, where, spec.tfDType === 'DT_BOOL');
}

function batchShape(spec: TensorSpec, rows: number): number[] {
  return [rows, ...spec.shape.slice(1)];
}

export const PredictBodySchema = z
  .object({
    signature_name: z.string().optional(),
    instances: z.array(z.unknown()).optional(),
    inputs: z.unknown().optional(),
    output_filter: z.array(z.string()).optional(),
  })
  .loose()
  .refine((b) => (b.instances === undefined) !== (b.inputs === undefined), {
    message: 'give exactly one of "instances" (row format) or "inputs" (columnar format)',
  });
export type PredictBody = z.infer<typeof PredictBodySchema>;

export interface ParsedRequest {
  /** One tensor per signature input, in the signature's order. */
  inputs: DenseTensor[];
  rows: number;
  format: 'row' | 'columnar';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isB64(value);
}

function checkKeys(object: Record<string, unknown>, signature: Signature, where: string): void {
  const expected = signature.inputs.map((s) => s.key);
  const unknown = Object.keys(object).filter((k) => !expected.includes(k));
  if (unknown.length)
    throw invalidArgument(
      `${where}: unknown input ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the signature's inputs are ` +
        `${expected.map((k) => JSON.stringify(k)).join(', ')}`,
    );
  const missing = expected.filter((k) => !(k in object));
  if (missing.length)
    throw invalidArgument(`${where}: missing input ${missing.map((k) => JSON.stringify(k)).join(', ')}`);
}

/** The row format: `instances[i]` is one example (its value, or an object of named inputs). */
export function parseInstances(instances: unknown[], signature: Signature, maxRows: number): ParsedRequest {
  const rows = instances.length;
  if (rows === 0) throw invalidArgument('instances: must hold at least one instance');
  if (rows > maxRows) throw invalidArgument(`instances: ${rows} instances exceed the limit of ${maxRows} per request`);
  const inputs = signature.inputs.map(
    (spec): DenseTensor =>
      isStringSpec(spec)
        ? stringTensor(batchShape(spec, rows), [])
        : { dtype: spec.dtype, shape: batchShape(spec, rows), data: allocate(spec.dtype, rows * rowSize(spec)) },
  );
  const single = signature.inputs.length === 1 ? signature.inputs[0]! : undefined;
  for (let r = 0; r < rows; r++) {
    const instance = instances[r];
    if (isPlainObject(instance)) {
      checkKeys(instance, signature, `instances[${r}]`);
      signature.inputs.forEach((spec, i) =>
        fillRow(instance[spec.key], spec, inputs[i]!, r, `instances[${r}].${spec.key}`),
      );
    } else if (single) {
      fillRow(instance, single, inputs[0]!, r, `instances[${r}]`);
    } else {
      throw invalidArgument(
        `instances[${r}]: the model has ${signature.inputs.length} inputs, so each instance must be an object ` +
          `naming them`,
      );
    }
  }
  signature.inputs.forEach((spec, i) => {
    if (inputs[i]!.strings) checkStrings(inputs[i]!.strings!, `instances (input ${spec.key})`);
  });
  return { inputs, rows, format: 'row' };
}

function columnarTensor(value: unknown, spec: TensorSpec, maxRows: number, where: string): DenseTensor {
  const size = rowSize(spec);
  if (isStringSpec(spec)) {
    if (!Array.isArray(value) || value.length === 0)
      throw invalidArgument(`${where}: expected a non-empty array of strings (batch first), got ${describe(value)}`);
    if (value.length > maxRows)
      throw invalidArgument(`${where}: ${value.length} rows exceed the limit of ${maxRows} per request`);
    const strings: Uint8Array[] = [];
    fillStrings(value, [value.length, ...spec.shape.slice(1)], 0, strings, where);
    checkStrings(strings, where);
    return stringTensor(batchShape(spec, value.length), strings);
  }
  if (isB64(value)) {
    const bytes = decodeB64(value.b64, where);
    const rows = bytes.byteLength / (size * 4);
    if (!Number.isInteger(rows) || rows < 1)
      throw invalidArgument(
        `${where}: ${bytes.byteLength} bytes is not a whole number of rows of ${size} ${spec.dtype} values`,
      );
    if (rows > maxRows) throw invalidArgument(`${where}: ${rows} rows exceed the limit of ${maxRows} per request`);
    return { dtype: spec.dtype, shape: batchShape(spec, rows), data: fromBytes(bytes, spec.dtype, rows * size, where) };
  }
  if (!Array.isArray(value) || value.length === 0)
    throw invalidArgument(
      `${where}: expected a non-empty array (batch first, shape [-1, ${spec.shape.slice(1).join(', ')}]), got ` +
        `${describe(value)}`,
    );
  const rows = value.length;
  if (rows > maxRows) throw invalidArgument(`${where}: ${rows} rows exceed the limit of ${maxRows} per request`);
  const data = allocate(spec.dtype, rows * size);
  fill(value, [rows, ...spec.shape.slice(1)], 0, spec.dtype, data, 0, where, spec.tfDType === 'DT_BOOL');
  return { dtype: spec.dtype, shape: batchShape(spec, rows), data };
}

/** The columnar format: `inputs` is the tensor (one input) or an object of named tensors. */
export function parseColumnar(inputs: unknown, signature: Signature, maxRows: number): ParsedRequest {
  let tensors: DenseTensor[];
  if (isPlainObject(inputs)) {
    checkKeys(inputs, signature, 'inputs');
    tensors = signature.inputs.map((spec) => columnarTensor(inputs[spec.key], spec, maxRows, `inputs.${spec.key}`));
  } else if (signature.inputs.length === 1) {
    tensors = [columnarTensor(inputs, signature.inputs[0]!, maxRows, 'inputs')];
  } else {
    throw invalidArgument(
      `inputs: the model has ${signature.inputs.length} inputs, so "inputs" must be an object naming them`,
    );
  }
  const rows = tensors[0]!.shape[0]!;
  tensors.forEach((t, i) => {
    if (t.shape[0] !== rows)
      throw invalidArgument(`inputs.${signature.inputs[i]!.key}: batch size ${t.shape[0]} differs from ${rows}`);
  });
  return { inputs: tensors, rows, format: 'columnar' };
}

export function parsePredictBody(body: PredictBody, signature: Signature, maxRows: number): ParsedRequest {
  return body.instances !== undefined
    ? parseInstances(body.instances, signature, maxRows)
    : parseColumnar(body.inputs, signature, maxRows);
}

/** Rows `start…start+count` of a batch-first tensor (a view, no copy). */
export function sliceRows(tensor: DenseTensor, start: number, count: number): DenseTensor {
  const size = tensor.shape.slice(1).reduce((a, b) => a * b, 1);
  if (tensor.strings)
    return stringTensor([count, ...tensor.shape.slice(1)], tensor.strings.slice(start * size, (start + count) * size));
  return {
    dtype: tensor.dtype,
    shape: [count, ...tensor.shape.slice(1)],
    data: tensor.data.subarray(start * size, (start + count) * size),
  };
}

/**
 * A string tensor's elements as JSON values: TF Serving answers text as JSON strings, and bytes as
 * `{"b64": …}` when the output's key ends in `_bytes`.
 */
function stringValues(strings: Uint8Array[], key: string | undefined): (string | { b64: string })[] {
  const b64 = key?.endsWith('_bytes') ?? false;
  return strings.map((s) =>
    b64 ? { b64: Buffer.from(s.buffer, s.byteOffset, s.byteLength).toString('base64') } : Buffer.from(s).toString(),
  );
}

/** A tensor's elements for JSON: strings as stringValues says, a DT_BOOL output (carried as 0/1) as true/false. */
function values(tensor: DenseTensor, key: string | undefined, tfDType?: string): Float32Array | Int32Array | unknown[] {
  if (tensor.strings) return stringValues(tensor.strings, key);
  return tfDType === 'DT_BOOL' ? Array.from(tensor.data, (v) => v !== 0) : tensor.data;
}

/** A flat slice as nested arrays of `dims` (JSON's view of a tensor). */
function nest(
  data: Float32Array | Int32Array | unknown[],
  dims: readonly number[],
  offset: number,
  level: number,
): unknown {
  if (level === dims.length) return data[offset];
  const size = dims[level]!;
  const stride = dims.slice(level + 1).reduce((a, b) => a * b, 1);
  if (level === dims.length - 1)
    return Array.isArray(data) ? data.slice(offset, offset + size) : Array.from(data.subarray(offset, offset + size));
  const out = new Array<unknown>(size);
  for (let i = 0; i < size; i++) out[i] = nest(data, dims, offset + i * stride, level + 1);
  return out;
}

export function toNested(tensor: DenseTensor, key?: string, tfDType?: string): unknown {
  return nest(values(tensor, key, tfDType), tensor.shape, 0, 0);
}

/** `predictions`: one entry per row; with one output the row's value, else an object of outputs. */
export function toPredictions(
  outputs: DenseTensor[],
  keys: string[],
  tfDTypes: (string | undefined)[] = [],
): unknown[] {
  const rows = outputs[0]?.shape[0] ?? 0;
  const all = outputs.map((t, i) => values(t, keys[i], tfDTypes[i]));
  const rowValue = (i: number, r: number) => {
    const dims = outputs[i]!.shape.slice(1);
    const size = dims.reduce((a, b) => a * b, 1);
    return nest(all[i]!, dims, r * size, 0);
  };
  const predictions = new Array<unknown>(rows);
  for (let r = 0; r < rows; r++) {
    if (outputs.length === 1) predictions[r] = rowValue(0, r);
    else predictions[r] = Object.fromEntries(outputs.map((_, i) => [keys[i]!, rowValue(i, r)]));
  }
  return predictions;
}

/** `outputs` in the columnar format: the tensor itself with one output, else an object. */
export function toColumnar(outputs: DenseTensor[], keys: string[], tfDTypes: (string | undefined)[] = []): unknown {
  if (outputs.length === 1) return toNested(outputs[0]!, keys[0], tfDTypes[0]);
  return Object.fromEntries(outputs.map((t, i) => [keys[i]!, toNested(t, keys[i], tfDTypes[i])]));
}

/** The arg-max of each row of a [rows, K] tensor (the predicted class). */
export function argmaxRows(tensor: DenseTensor): Int32Array {
  const rows = tensor.shape[0] ?? 0;
  const k = tensor.shape[1] ?? 1;
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestValue = -Infinity;
    for (let c = 0; c < k; c++) {
      const v = tensor.data[r * k + c]!;
      if (v > bestValue) {
        bestValue = v;
        best = c;
      }
    }
    out[r] = best;
  }
  return out;
}
