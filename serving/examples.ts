import { invalidArgument } from './errors';
import type { Signature } from './signature';
import { checkStrings, stringTensor, type DenseTensor } from './tensors';

/**
 * tf.Example protos (tensorflow/core/example/example.proto) written from a request's examples, for the
 * SavedModel signatures whose method is tensorflow/serving/classify or /regress (estimator and TFX
 * exports): those take one DT_STRING input of serialized Examples and parse them in the graph.
 *
 * Two sources meet here: REST's JSON features (TF Serving's rules: a JSON string is a bytes_list entry,
 * `{"b64": …}` its bytes, a number an int64_list entry when every number of the feature is an integer,
 * else a float_list; a list is the feature's values) and gRPC's decoded Example messages. Both become
 * a Feature list and then bytes written by hand (three nested messages, no codec needed).
 */

export type Feature =
  | { kind: 'bytes'; values: Uint8Array[] }
  | { kind: 'float'; values: number[] }
  | { kind: 'int64'; values: bigint[] };

/** Features and values per feature an example may carry before it is taken for hostile. */
export const MAX_FEATURES = 10_000;
export const MAX_FEATURE_VALUES = 1_000_000;

function isB64(value: unknown): value is { b64: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === 1 &&
    typeof (value as { b64?: unknown }).b64 === 'string'
  );
}

/**
 * One JSON feature value (a scalar or a flat list) as a Feature; `where` names it in errors. `wants` is the list
 * the model's parsing reads for this feature when the graph says (numbers then follow it).
 */
export function jsonFeature(value: unknown, where: string, wants?: Feature['kind']): Feature {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw invalidArgument(`${where}: an empty list has no type; leave the feature out`);
  if (list.length > MAX_FEATURE_VALUES)
    throw invalidArgument(`${where}: ${list.length} values exceed the limit of ${MAX_FEATURE_VALUES}`);
  if (list.every((v) => typeof v === 'string' || isB64(v)))
    return {
      kind: 'bytes',
      values: list.map((v, i) => {
        if (typeof v === 'string') return Buffer.from(v, 'utf8');
        const b64 = (v as { b64: string }).b64;
        if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) throw invalidArgument(`${where}[${i}]: "b64" is not base64`);
        return Buffer.from(b64, 'base64');
      }),
    };
  list.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw invalidArgument(
        `${where}${Array.isArray(value) ? `[${i}]` : ''}: expected a number, a string or {"b64": …}, got ` +
          `${v === null ? 'null' : Array.isArray(v) ? 'a nested list (features are flat lists)' : typeof v}`,
      );
  });
  const numbers = list as number[];
  if (wants !== 'float' && numbers.every(Number.isSafeInteger))
    return { kind: 'int64', values: numbers.map((v) => BigInt(v)) };
  return { kind: 'float', values: floatValues(numbers, (i) => `${where}${Array.isArray(value) ? `[${i}]` : ''}`) };
}

/**
 * A float_list's values, each a finite float32: a JSON number beyond float32's range (1e39) is refused as TF
 * Serving refuses it, and NaN or ±Infinity (a gRPC float_list can carry them) as every float input is (tensors.ts).
 */
function floatValues(values: number[], where: (i: number) => string): number[] {
  values.forEach((v, i) => {
    if (!Number.isFinite(Math.fround(v)))
      throw invalidArgument(
        `${where(i)}: ${v} ${Number.isFinite(v) ? 'is outside the float32 range' : 'is not a finite number'}`,
      );
  });
  return values;
}

/** A JSON object of features (REST's example, merged over its context) as Features. */
export function jsonFeatures(
  example: Record<string, unknown>,
  where: string,
  wants: Record<string, Feature['kind']> = {},
): Map<string, Feature> {
  const keys = Object.keys(example);
  if (keys.length > MAX_FEATURES)
    throw invalidArgument(`${where}: ${keys.length} features exceed the limit of ${MAX_FEATURES}`);
  return new Map(
    keys.map((key) => [
      key,
      jsonFeature(example[key], `${where}.${key}`, Object.hasOwn(wants, key) ? wants[key] : undefined),
    ]),
  );
}

/** gRPC's decoded Feature message (proto-loader's object: one of bytes_list, float_list, int64_list). */
export interface FeatureMessage {
  bytes_list?: { value: unknown[] } | null;
  float_list?: { value: number[] } | null;
  int64_list?: { value: (string | number)[] } | null;
}

export function messageFeature(feature: FeatureMessage, where: string): Feature {
  const count = (feature.bytes_list ?? feature.float_list ?? feature.int64_list)?.value.length ?? 0;
  if (count > MAX_FEATURE_VALUES)
    throw invalidArgument(`${where}: ${count} values exceed the limit of ${MAX_FEATURE_VALUES}`);
  if (feature.bytes_list)
    return {
      kind: 'bytes',
      values: feature.bytes_list.value.map((v, i) => {
        if (!(v instanceof Uint8Array)) throw invalidArgument(`${where}.bytes_list.value[${i}]: not bytes`);
        return v;
      }),
    };
  if (feature.float_list)
    return { kind: 'float', values: floatValues(feature.float_list.value, (i) => `${where}.float_list.value[${i}]`) };
  if (feature.int64_list)
    return {
      kind: 'int64',
      values: feature.int64_list.value.map((v, i) => {
        try {
          return BigInt(v);
        } catch {
          throw invalidArgument(`${where}.int64_list.value[${i}]: ${v} is not an integer`);
        }
      }),
    };
  // An empty Feature is valid in a tf.Example (a feature with no values).
  return { kind: 'float', values: [] };
}

class Writer {
  private parts: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.byteLength;
  }

  varint(value: bigint | number): void {
    // int64 values are written as their two's complement (negative numbers take ten bytes), as protobuf does.
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Uint8Array.from(out));
  }

  bytes(field: number, payload: Uint8Array): void {
    this.varint((field << 3) | 2);
    this.varint(payload.byteLength);
    this.push(payload);
  }

  finish(): Uint8Array {
    return Buffer.concat(this.parts, this.size);
  }
}

/** Feature { bytes_list = 1 | float_list = 2 | int64_list = 3 }, each a list with `repeated value = 1` (packed). */
function encodeFeature(feature: Feature): Uint8Array {
  const list = new Writer();
  if (feature.kind === 'bytes') {
    for (const v of feature.values) list.bytes(1, v);
  } else if (feature.kind === 'float') {
    const packed = Buffer.alloc(feature.values.length * 4);
    feature.values.forEach((v, i) => packed.writeFloatLE(v, i * 4));
    if (packed.byteLength > 0) list.bytes(1, packed);
  } else {
    const packed = new Writer();
    for (const v of feature.values) packed.varint(v);
    const bytes = packed.finish();
    if (bytes.byteLength > 0) list.bytes(1, bytes);
  }
  const out = new Writer();
  out.bytes(feature.kind === 'bytes' ? 1 : feature.kind === 'float' ? 2 : 3, list.finish());
  return out.finish();
}

/** Example { Features features = 1 }, Features { map<string, Feature> feature = 1 }: serialized. */
export function encodeExample(features: Map<string, Feature>): Uint8Array {
  const map = new Writer();
  // Sorted keys: the same example always serializes to the same bytes.
  for (const key of [...features.keys()].sort()) {
    const entry = new Writer();
    entry.bytes(1, Buffer.from(key, 'utf8'));
    entry.bytes(2, encodeFeature(features.get(key)!));
    map.bytes(1, entry.finish());
  }
  const example = new Writer();
  example.bytes(1, map.finish());
  return example.finish();
}

/**
 * A request's examples as the signature's one input: each example's features merged over the context's
 * (an example's own feature wins), serialized, one string per example. `where(i)` names example i.
 */
export function examplesTensor(
  examples: Map<string, Feature>[],
  context: Map<string, Feature> | undefined,
  maxRows: number,
): DenseTensor {
  if (examples.length === 0) throw invalidArgument('examples: must hold at least one example');
  if (examples.length > maxRows)
    throw invalidArgument(`examples: ${examples.length} examples exceed the limit of ${maxRows} per request`);
  const strings = examples.map((features) => encodeExample(context ? new Map([...context, ...features]) : features));
  checkStrings(strings, 'examples');
  return stringTensor([strings.length], strings);
}

/** A classify or regress signature's outputs by TF Serving's keys (`classes`, `scores`; `outputs`). */
export function exampleOutputs(
  signature: Signature,
  outputs: DenseTensor[],
): Partial<Record<'classes' | 'scores' | 'outputs', DenseTensor>> {
  return Object.fromEntries(signature.outputs.map((spec, i) => [spec.key, outputs[i]!]));
}
