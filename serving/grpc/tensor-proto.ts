import { z } from 'zod';
import { describeIssues } from '../../validation/issues';
import { invalidArgument } from '../errors';
import type { ServedDType, Signature, TensorSpec } from '../signature';
import { checkStrings, fromBytes, stringTensor, type DenseTensor } from '../tensors';

/**
 * TensorProto ↔ DenseTensor. As in TF Serving, a tensor's dtype must be the signature's (no
 * silent casts) and its shape must match the signature's apart from the batch dimension.
 * Values come from `tensor_content` (little-endian bytes) or the dtype's repeated field.
 */

const DimSchema = z
  .object({ size: z.union([z.string(), z.number()]).transform(Number), name: z.string().optional() })
  .loose();

/** A TensorProto's `tensor_shape`, as every reader of one (dense tensors, records, images) checks it. */
export const TensorShapeSchema = z
  .object({ dim: z.array(DimSchema), unknown_rank: z.boolean().optional() })
  .loose()
  .nullable()
  .optional();

/** The dims of a checked `tensor_shape`: none for an absent shape or an unknown rank. */
export function dimsOf(shape: z.output<typeof TensorShapeSchema>): number[] {
  return shape && !shape.unknown_rank ? shape.dim.map((d) => d.size) : [];
}

export const TensorProtoSchema = z
  .object({
    dtype: z.string(),
    tensor_shape: TensorShapeSchema,
    tensor_content: z.instanceof(Uint8Array).optional(),
    float_val: z.array(z.number()).optional(),
    int_val: z.array(z.number()).optional(),
    int64_val: z.array(z.union([z.string(), z.number()])).optional(),
    double_val: z.array(z.number()).optional(),
    bool_val: z.array(z.boolean()).optional(),
    string_val: z.array(z.instanceof(Uint8Array)).optional(),
  })
  .loose();
export type TensorProtoIn = z.infer<typeof TensorProtoSchema>;

export const DTYPE_OF: Record<ServedDType, string> = { float32: 'DT_FLOAT', int32: 'DT_INT32' };

export function decodeTensorProto(raw: unknown, spec: TensorSpec, maxRows: number, where: string): DenseTensor {
  const parsed = TensorProtoSchema.safeParse(raw);
  if (!parsed.success) throw invalidArgument(`${where}: not a TensorProto: ${describeIssues(parsed.error)}`);
  const proto = parsed.data;
  const expected = spec.tfDType ?? DTYPE_OF[spec.dtype];
  if (proto.dtype !== expected)
    throw invalidArgument(`${where}: dtype ${proto.dtype} does not match the signature's ${expected}`);
  if (!proto.tensor_shape || proto.tensor_shape.unknown_rank)
    throw invalidArgument(`${where}: tensor_shape is required`);
  const shape = proto.tensor_shape.dim.map((d) => d.size);
  const want = spec.shape;
  const mismatch =
    shape.length !== want.length || shape.some((d, i) => (i === 0 ? !(Number.isInteger(d) && d >= 1) : d !== want[i]));
  if (mismatch)
    throw invalidArgument(
      `${where}: shape [${shape.join(', ')}] does not match the signature's [${want.join(', ')}] (-1: any batch ` +
        `size ≥ 1)`,
    );
  const rows = shape[0]!;
  if (rows > maxRows) throw invalidArgument(`${where}: ${rows} rows exceed the limit of ${maxRows} per request`);
  const count = shape.reduce((a, b) => a * b, 1);
  let data: Float32Array | Int32Array;
  if (expected === 'DT_STRING') {
    const strings = proto.string_val ?? [];
    if (strings.length !== count)
      throw invalidArgument(
        `${where}.string_val: ${strings.length} values for shape [${shape.join(', ')}] (${count} needed)`,
      );
    checkStrings(strings, `${where}.string_val`);
    return stringTensor(shape, strings);
  } else if (expected === 'DT_INT64') {
    data = int64Values(proto, count, where);
  } else if (expected === 'DT_DOUBLE') {
    data = doubleValues(proto, count, where);
  } else if (expected === 'DT_BOOL') {
    data = boolValues(proto, count, where);
  } else if (proto.tensor_content && proto.tensor_content.byteLength > 0) {
    data = fromBytes(proto.tensor_content, spec.dtype, count, `${where}.tensor_content`);
  } else {
    const values = (spec.dtype === 'float32' ? proto.float_val : proto.int_val) ?? [];
    const field = spec.dtype === 'float32' ? 'float_val' : 'int_val';
    if (values.length !== count)
      throw invalidArgument(
        `${where}.${field}: ${values.length} values for shape [${shape.join(', ')}] (${count} needed)`,
      );
    data = spec.dtype === 'float32' ? Float32Array.from(values) : Int32Array.from(values);
  }
  return { dtype: spec.dtype, shape, data };
}

/**
 * A DT_INT64 tensor's values (a SavedModel input), from 8-byte tensor_content or int64_val, as the int32 values
 * the native binding widens back to int64: values outside the int32 range are refused, naming the element.
 */
function int64Values(proto: TensorProtoIn, count: number, where: string): Int32Array {
  const out = new Int32Array(count);
  const put = (i: number, value: number | bigint, field: string) => {
    const v = Number(value);
    if (!(Number.isInteger(v) && v >= -2147483648 && v <= 2147483647))
      throw invalidArgument(`${where}.${field}[${i}]: ${value} is outside the int32 range Gantry carries int64 in`);
    out[i] = v;
  };
  const content = proto.tensor_content;
  if (content && content.byteLength > 0) {
    if (content.byteLength !== count * 8)
      throw invalidArgument(
        `${where}.tensor_content: ${content.byteLength} bytes of DT_INT64 data, expected ${count * 8} ` +
          `(${count} values × 8 bytes)`,
      );
    const view = new DataView(content.buffer, content.byteOffset, content.byteLength);
    for (let i = 0; i < count; i++) put(i, view.getBigInt64(i * 8, true), 'tensor_content');
    return out;
  }
  const values = proto.int64_val ?? [];
  if (values.length !== count) throw invalidArgument(`${where}.int64_val: ${values.length} values (${count} needed)`);
  values.forEach((v, i) => put(i, typeof v === 'string' ? BigInt(v) : v, 'int64_val'));
  return out;
}

/** A DT_DOUBLE tensor's values (8-byte tensor_content or double_val), as the float32 Gantry carries them in. */
function doubleValues(proto: TensorProtoIn, count: number, where: string): Float32Array {
  const content = proto.tensor_content;
  if (content && content.byteLength > 0) {
    if (content.byteLength !== count * 8)
      throw invalidArgument(
        `${where}.tensor_content: ${content.byteLength} bytes of DT_DOUBLE data, expected ${count * 8} ` +
          `(${count} values × 8 bytes)`,
      );
    const view = new DataView(content.buffer, content.byteOffset, content.byteLength);
    const doubles = Float64Array.from({ length: count }, (_, i) => view.getFloat64(i * 8, true));
    return toFloat32(doubles, `${where}.tensor_content`);
  }
  const values = proto.double_val ?? [];
  if (values.length !== count) throw invalidArgument(`${where}.double_val: ${values.length} values (${count} needed)`);
  return toFloat32(values, `${where}.double_val`);
}

/**
 * DT_DOUBLE values as the float32 Gantry carries them in: a finite double beyond float32's range (1e39) would
 * become Infinity, so it is refused, naming the element, as TF Serving refuses such a JSON number for a float.
 */
function toFloat32(values: ArrayLike<number>, where: string): Float32Array {
  const out = Float32Array.from(values);
  for (let i = 0; i < out.length; i++) {
    const v = values[i]!;
    if (Number.isFinite(v) && !Number.isFinite(out[i]!))
      throw invalidArgument(`${where}[${i}]: ${v} is outside the float32 range DT_DOUBLE is carried in`);
  }
  return out;
}

/** A DT_BOOL tensor's values (1-byte tensor_content or bool_val) as 0/1. */
function boolValues(proto: TensorProtoIn, count: number, where: string): Int32Array {
  const content = proto.tensor_content;
  if (content && content.byteLength > 0) {
    if (content.byteLength !== count)
      throw invalidArgument(`${where}.tensor_content: ${content.byteLength} bytes of DT_BOOL data, expected ${count}`);
    return Int32Array.from(content, (b) => (b ? 1 : 0));
  }
  const values = proto.bool_val ?? [];
  if (values.length !== count) throw invalidArgument(`${where}.bool_val: ${values.length} values (${count} needed)`);
  return Int32Array.from(values, (b) => (b ? 1 : 0));
}

/**
 * A PredictRequest's `inputs` map (TensorProtos by input key) as the signature's tensors — gRPC
 * Predict's and REST's binary body alike: every input known and present, one batch size.
 */
export function decodePredictInputs(
  inputs: Record<string, unknown>,
  signature: Signature,
  maxRows: number,
): DenseTensor[] {
  const unknown = Object.keys(inputs).filter((k) => !signature.inputs.some((s) => s.key === k));
  if (unknown.length)
    throw invalidArgument(
      `inputs: unknown input ${unknown.map((k) => `"${k}"`).join(', ')}; the signature's inputs are ` +
        `${signature.inputs.map((s) => `"${s.key}"`).join(', ')}`,
    );
  const tensors = signature.inputs.map((spec) => {
    if (!(spec.key in inputs)) throw invalidArgument(`inputs: missing input "${spec.key}"`);
    return decodeTensorProto(inputs[spec.key], spec, maxRows, `inputs.${spec.key}`);
  });
  if (tensors.some((t) => t.shape[0] !== tensors[0]!.shape[0]))
    throw invalidArgument('inputs: the inputs differ in batch size');
  return tensors;
}

/**
 * `tfDType`: a SavedModel output's own dtype where it is not the travelling one — DT_INT64 or DT_BOOL (as int32),
 * DT_DOUBLE (as float32), DT_STRING (DenseTensor.strings) — else none.
 */
export function encodeTensorProto(tensor: DenseTensor, tfDType?: string): object {
  const tensor_shape = { dim: tensor.shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false };
  if (tensor.strings) return { dtype: 'DT_STRING', tensor_shape, string_val: tensor.strings };
  const values = Array.from(tensor.data);
  if (tfDType === 'DT_DOUBLE') return { dtype: tfDType, tensor_shape, double_val: values };
  if (tfDType === 'DT_INT64') return { dtype: tfDType, tensor_shape, int64_val: values.map(String) };
  if (tfDType === 'DT_BOOL') return { dtype: tfDType, tensor_shape, bool_val: values.map((v) => v !== 0) };
  return {
    dtype: DTYPE_OF[tensor.dtype],
    tensor_shape: { dim: tensor.shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    ...(tensor.dtype === 'float32' ? { float_val: values } : { int_val: values }),
  };
}
