import { createRequire } from 'node:module';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import type protobufType from 'protobufjs';
import { TENSORFLOW_PROTO_ROOT } from './protos';

/**
 * A TensorFlow SavedModel folder (`saved_model.pb` + `variables/`, as Python's tf.saved_model.save
 * and Keras's model.export() write it) read: its `serve` MetaGraph's SignatureDefs parsed, bounded,
 * with the same protos the graph writer uses. The one reader of the model server, `gantry models
 * import` and evaluation; saved-model-session.ts runs a signature (native backend only).
 *
 * What the binding can feed: DT_FLOAT, DT_INT32 and DT_INT64 — tfjs has no int64, so int64 values
 * travel as int32 and the binding widens them (values outside ±2^31 cannot be sent) — DT_BOOL (0/1 as
 * int32 here, bytes there) and DT_STRING (byte strings). DT_DOUBLE travels as float32 and is cast to
 * float64 by one eager Cast op before the run (and back after it): the binding has no float64 arrays, so
 * a float64 value keeps float32's precision. It reads back float32, int32, int64 (narrowed to int32 here,
 * refusing values that do not fit), bool, double (as float32) and string. Other dtypes (DT_HALF, DT_UINT8,
 * …) are listed with the signature but marked unsupported, so a call answers a clear error instead of the
 * binding's.
 */

export const SAVED_MODEL_FILE = 'saved_model.pb';
/** TF Serving's (and Keras's export's) tag set for serving. */
export const SERVE_TAG = 'serve';
/** Larger than any graph worth serving (the weights live in variables/): read no further. */
export const MAX_SAVED_MODEL_BYTES = 1024 * 1024 * 1024;
/** TF Serving's default signature (and a tfjs model's only one). */
export const DEFAULT_SIGNATURE = 'serving_default';
/** Signatures and tensors per signature a MetaGraph may list before it is taken for hostile. */
const MAX_SIGNATURES = 1000;
const MAX_TENSORS = 10_000;

/** A SavedModel that cannot be read or run: a missing, oversized or corrupt saved_model.pb, no such signature. */
export class SavedModelError extends Error {
  override name = 'SavedModelError';
}

/** The dtypes Gantry moves between the wire and the binding. */
export type FeedDType = 'float32' | 'int32' | 'string';

export interface SavedTensorInfo {
  /** The signature's key for it (what clients name). */
  key: string;
  /** The graph tensor (`op:index`) the session feeds or fetches. */
  name: string;
  /** TensorFlow's enum name (DT_FLOAT, DT_INT64, …). */
  tfDType: string;
  /** -1 for an unknown dimension; undefined for an unknown rank. */
  shape: number[] | undefined;
  /** How its values travel in Gantry, or undefined when the binding cannot carry this dtype. */
  dtype: FeedDType | undefined;
}

export interface SavedSignature {
  name: string;
  methodName: string;
  inputs: SavedTensorInfo[];
  outputs: SavedTensorInfo[];
}

export interface SavedModelInfo {
  tags: string[];
  /** Every signature of the MetaGraph, sorted by name. */
  signatures: SavedSignature[];
  /**
   * The tf.Example features the graph's ParseExample ops read, by name, with the list each wants: how a
   * JSON number is written into an Example (1 is an int64 to JSON, but a float feature needs a float_list).
   */
  exampleFeatures: Record<string, ExampleFeatureKind>;
}

export type ExampleFeatureKind = 'float' | 'int64' | 'bytes';

interface RawNode {
  name?: string;
  op?: string;
  input?: string[];
  attr?: Record<
    string,
    { list?: { type?: string[] } | null; i?: string; tensor?: { stringVal?: Uint8Array[] } | null } | undefined
  >;
}

const FEATURE_KIND: Record<string, ExampleFeatureKind> = { DT_FLOAT: 'float', DT_INT64: 'int64', DT_STRING: 'bytes' };

/**
 * The features of the graph's ParseExample / ParseExampleV2 ops (an estimator's or TFX's input parsing): their
 * keys are Const inputs, their dtypes attrs. Ops inside functions (TF2 tf.function graphs) are not seen; there,
 * a JSON number's type follows TF Serving's rule alone.
 */
function exampleFeatureKinds(nodes: RawNode[]): Record<string, ExampleFeatureKind> {
  const byName = new Map(nodes.map((n) => [n.name ?? '', n]));
  const keys = (input: string | undefined): string[] => {
    const node = byName.get((input ?? '').split(':')[0]!);
    if (node?.op !== 'Const') return [];
    return (node.attr?.value?.tensor?.stringVal ?? []).map((b) => Buffer.from(b).toString());
  };
  const types = (node: RawNode, attr: string) => node.attr?.[attr]?.list?.type ?? [];
  const out: Record<string, ExampleFeatureKind> = {};
  const put = (names: string[], dtypes: string[]) =>
    names.forEach((name, i) => {
      const kind = FEATURE_KIND[dtypes[i] ?? ''];
      if (kind) out[name] = kind;
    });
  for (const node of nodes) {
    const input = node.input ?? [];
    if (node.op === 'ParseExampleV2') {
      // serialized, names, sparse_keys, dense_keys, ragged_keys, dense_defaults…: the keys are 1-D string Consts.
      put(keys(input[2]), types(node, 'sparse_types'));
      put(keys(input[3]), types(node, 'Tdense'));
      put(keys(input[4]), types(node, 'ragged_value_types'));
    } else if (node.op === 'ParseExample') {
      // serialized, names, then one scalar Const per sparse key and per dense key.
      const sparse = Number(node.attr?.Nsparse?.i ?? 0);
      const dense = Number(node.attr?.Ndense?.i ?? 0);
      put(
        input.slice(2, 2 + sparse).flatMap((i) => keys(i)),
        types(node, 'sparse_types'),
      );
      put(
        input.slice(2 + sparse, 2 + sparse + dense).flatMap((i) => keys(i)),
        types(node, 'Tdense'),
      );
    }
  }
  return out;
}

const require = createRequire(import.meta.url);
const protobuf = require('protobufjs') as typeof protobufType;

let savedModelType: protobufType.Type | undefined;
function SavedModelType(): protobufType.Type {
  if (!savedModelType) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => path.join(TENSORFLOW_PROTO_ROOT, target);
    savedModelType = root.loadSync('tensorflow/core/protobuf/saved_model.proto').lookupType('tensorflow.SavedModel');
  }
  return savedModelType;
}

/** DT_INT64 travels as int32: the binding widens an int32 tensor fed to an int64 placeholder. */
const FEEDABLE: Record<string, FeedDType> = {
  DT_FLOAT: 'float32',
  DT_DOUBLE: 'float32',
  DT_INT32: 'int32',
  DT_INT64: 'int32',
  DT_BOOL: 'int32',
  DT_STRING: 'string',
};
/** What the binding reads back (bool as 0/1, double as float32). */
const FETCHABLE: Record<string, FeedDType> = FEEDABLE;

interface RawTensorInfo {
  name?: string;
  dtype?: string;
  tensorShape?: { dim?: { size?: number | string }[]; unknownRank?: boolean } | null;
}

function tensorInfos(map: Record<string, RawTensorInfo> | undefined, fetch: boolean, where: string) {
  const entries = Object.entries(map ?? {});
  if (entries.length > MAX_TENSORS)
    throw new SavedModelError(`${where} lists ${entries.length} tensors (limit ${MAX_TENSORS})`);
  return entries
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, info]): SavedTensorInfo => {
      const tfDType = info.dtype ?? 'DT_INVALID';
      const shape = info.tensorShape?.unknownRank
        ? undefined
        : (info.tensorShape?.dim ?? []).map((d) => Number(d.size ?? 0));
      return {
        key,
        // An empty name is a sparse or composite tensor (the other encodings of TensorInfo).
        name: info.name ?? '',
        tfDType,
        shape,
        dtype: info.name ? (fetch ? FETCHABLE : FEEDABLE)[tfDType] : undefined,
      };
    });
}

/** Parses saved_model.pb and lists the `serve` MetaGraph's signatures; every error names the file. */
export async function readSavedModel(dir: string): Promise<SavedModelInfo> {
  const file = path.join(dir, SAVED_MODEL_FILE);
  const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw new SavedModelError(
      error.code === 'ENOENT' ? `no ${SAVED_MODEL_FILE} in ${dir}` : `cannot read ${file}: ${error.message}`,
    );
  });
  if (!info.isFile()) throw new SavedModelError(`${file} is not a file`);
  if (info.size > MAX_SAVED_MODEL_BYTES)
    throw new SavedModelError(`${file} is ${info.size} bytes, over the limit of ${MAX_SAVED_MODEL_BYTES}`);
  // Read exactly the size stat saw: a file that grows meanwhile cannot make us allocate more.
  const bytes = Buffer.alloc(info.size);
  const handle = await open(file, 'r').catch((error: Error) => {
    throw new SavedModelError(`cannot read ${file}: ${error.message}`);
  });
  try {
    await handle.read(bytes, 0, info.size, 0);
  } finally {
    await handle.close();
  }
  return parseSavedModel(bytes, file);
}

/** The `serve` MetaGraph's signatures from saved_model.pb's bytes (`file` names it in errors). */
export function parseSavedModel(bytes: Uint8Array, file: string): SavedModelInfo {
  let message: {
    metaGraphs?: {
      metaInfoDef?: { tags?: string[] } | null;
      graphDef?: { node?: RawNode[] } | null;
      signatureDef?: Record<
        string,
        { inputs?: Record<string, RawTensorInfo>; outputs?: Record<string, RawTensorInfo>; methodName?: string }
      >;
    }[];
  };
  try {
    const type = SavedModelType();
    message = type.toObject(type.decode(bytes), { enums: String, longs: String }) as typeof message;
  } catch (error) {
    throw new SavedModelError(`${file} is not a SavedModel: ${(error as Error).message}`);
  }
  const metaGraphs = message.metaGraphs ?? [];
  if (metaGraphs.length === 0) throw new SavedModelError(`${file} is not a SavedModel: it holds no MetaGraph`);
  const meta = metaGraphs.find((m) => (m.metaInfoDef?.tags ?? []).includes(SERVE_TAG));
  if (!meta) {
    const sets = metaGraphs.map((m) => `[${(m.metaInfoDef?.tags ?? []).join(', ')}]`).join(', ');
    throw new SavedModelError(`${file} has no MetaGraph tagged "${SERVE_TAG}" (its tag sets: ${sets})`);
  }
  const defs = Object.entries(meta.signatureDef ?? {});
  if (defs.length === 0) throw new SavedModelError(`${file}: the "${SERVE_TAG}" MetaGraph has no signatures`);
  if (defs.length > MAX_SIGNATURES)
    throw new SavedModelError(`${file} lists ${defs.length} signatures (limit ${MAX_SIGNATURES})`);
  const signatures = defs
    // `__saved_model_init_op` is the loader's own entry (it runs at load), not a signature to serve.
    .filter(([name]) => name !== '__saved_model_init_op')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, def]) => ({
      name,
      methodName: def.methodName ?? '',
      inputs: tensorInfos(def.inputs, false, `${file}: signature ${name}`),
      outputs: tensorInfos(def.outputs, true, `${file}: signature ${name}`),
    }));
  return {
    tags: meta.metaInfoDef?.tags ?? [],
    signatures,
    exampleFeatures: exampleFeatureKinds(meta.graphDef?.node ?? []),
  };
}

/** The named signature of the SavedModel in `dir`, or an error listing the ones there are. */
export function findSignature(info: SavedModelInfo, name: string, dir: string): SavedSignature {
  const found = info.signatures.find((s) => s.name === name);
  if (!found) {
    const known = info.signatures.map((s) => s.name).join(', ') || 'none';
    throw new SavedModelError(`${dir} has no signature "${name}" (signatures: ${known})`);
  }
  return found;
}

/** The named signature of the `serve` MetaGraph of the SavedModel in `dir`. */
export async function readServeSignature(dir: string, name: string): Promise<SavedSignature> {
  return findSignature(await readSavedModel(dir), name, dir);
}
