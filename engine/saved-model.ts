import { createRequire } from 'node:module';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import type protobufType from 'protobufjs';
import { tf } from './backend';
import { TENSORFLOW_PROTO_ROOT } from './protos';

/**
 * A TensorFlow SavedModel folder (`saved_model.pb` + `variables/`, as Python's tf.saved_model.save
 * and Keras's model.export() write it) read and run: its `serve` MetaGraph's SignatureDefs parsed
 * with the same protos the graph writer uses, and the folder loaded as one libtensorflow session
 * through tfjs-node's SavedModel binding (the one graph-session.ts uses for Gantry's own graphs).
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
/** Signatures and tensors per signature a MetaGraph may list before it is taken for hostile. */
const MAX_SIGNATURES = 1000;
const MAX_TENSORS = 10_000;

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
  if (entries.length > MAX_TENSORS) throw new Error(`${where} lists ${entries.length} tensors (limit ${MAX_TENSORS})`);
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
    throw new Error(
      error.code === 'ENOENT' ? `no ${SAVED_MODEL_FILE} in ${dir}` : `cannot read ${file}: ${error.message}`,
    );
  });
  if (!info.isFile()) throw new Error(`${file} is not a file`);
  if (info.size > MAX_SAVED_MODEL_BYTES)
    throw new Error(`${file} is ${info.size} bytes, over the limit of ${MAX_SAVED_MODEL_BYTES}`);
  // Read exactly the size stat saw: a file that grows meanwhile cannot make us allocate more.
  const bytes = Buffer.alloc(info.size);
  const handle = await open(file, 'r');
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
    throw new Error(`${file} is not a SavedModel: ${(error as Error).message}`);
  }
  const metaGraphs = message.metaGraphs ?? [];
  if (metaGraphs.length === 0) throw new Error(`${file} is not a SavedModel: it holds no MetaGraph`);
  const meta = metaGraphs.find((m) => (m.metaInfoDef?.tags ?? []).includes(SERVE_TAG));
  if (!meta) {
    const sets = metaGraphs.map((m) => `[${(m.metaInfoDef?.tags ?? []).join(', ')}]`).join(', ');
    throw new Error(`${file} has no MetaGraph tagged "${SERVE_TAG}" (its tag sets: ${sets})`);
  }
  const defs = Object.entries(meta.signatureDef ?? {});
  if (defs.length === 0) throw new Error(`${file}: the "${SERVE_TAG}" MetaGraph has no signatures`);
  if (defs.length > MAX_SIGNATURES)
    throw new Error(`${file} lists ${defs.length} signatures (limit ${MAX_SIGNATURES})`);
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

/** Why this process cannot load SavedModels, or undefined if it can. */
export function savedModelsUnavailable(): string | undefined {
  if (tf.getBackend() === 'tensorflow') return undefined;
  return (
    `a SavedModel runs on the native backend (tfjs-node, TensorFlow's C library), but this server runs the ` +
    `${tf.getBackend()} backend; install it with \`bash scripts/setup.sh\` and do not set GANTRY_BACKEND to ` +
    `wasm or cpu`
  );
}

/** A tensor as the session takes and gives it (structurally serving's DenseTensor). */
export interface FeedTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  /** Empty for a string tensor. */
  data: Float32Array | Int32Array;
  /** A DT_STRING tensor's values, row-major (serving's DenseTensor.strings). */
  strings?: Uint8Array[];
}

/** TF_DataType's value for float64 (the binding exports no constant for it). */
const TF_DOUBLE = 2;

/**
 * tfjs-node's native binding, used directly: its SavedModel entry points take and give native tensor ids.
 * Going around tfjs's runSavedModel avoids its int64 encoding (it widens an int32 tensor with a zero high
 * word, so -7 arrives as 4294967289) and its int64 outputs (a console warning per call).
 */
interface Binding {
  TF_FLOAT: number;
  TF_INT32: number;
  TF_INT64: number;
  TF_BOOL: number;
  TF_STRING: number;
  TF_ATTR_TYPE: number;
  TF_ATTR_BOOL: number;
  executeOp(
    name: string,
    attrs: { name: string; type: number; value: unknown }[],
    ids: number[],
    outputs: number,
  ): NativeTensor[];
  loadSavedModel(dir: string, tags: string): number;
  deleteSavedModel(id: number): void;
  createTensor(shape: number[], dtype: number, values: Float32Array | Int32Array | Uint8Array | Uint8Array[]): number;
  deleteTensor(id: number): void;
  tensorDataSync(id: number): ArrayLike<number | bigint> | Uint8Array[];
  runSavedModel(id: number, inputIds: number[], inputNames: string, outputNames: string): NativeTensor[];
}

interface NativeTensor {
  id: number;
  shape: number[];
  dtype: number;
}

/** int32 values as the int64 tensor's little-endian words: low word, then the sign in the high word. */
function widenToInt64(values: Int32Array): Int32Array {
  const out = new Int32Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    out[i * 2] = values[i]!;
    out[i * 2 + 1] = values[i]! < 0 ? -1 : 0;
  }
  return out;
}

/** One SavedModel folder loaded as a libtensorflow session (variables restored). Native backend only. */
export class SavedModelSession {
  private closed = false;

  private constructor(
    private readonly binding: Binding,
    private readonly id: number,
  ) {}

  static open(dir: string, tags: string[]): SavedModelSession {
    const unavailable = savedModelsUnavailable();
    if (unavailable) throw new Error(unavailable);
    const binding = (tf.backend() as unknown as { binding: Binding }).binding;
    let id: number;
    try {
      id = binding.loadSavedModel(path.resolve(dir), tags.join(','));
    } catch (error) {
      throw new Error(`TensorFlow could not load the SavedModel in ${dir}: ${(error as Error).message}`);
    }
    return new SavedModelSession(binding, id);
  }

  /**
   * A signature's forward pass: its feeds and fetches bound once. Inputs come in the signature's
   * input order; outputs in its output order. Every input and output must have a dtype (checked by
   * the caller: SavedTensorInfo.dtype).
   */
  runner(signature: SavedSignature): (inputs: FeedTensor[]) => FeedTensor[] {
    const { binding } = this;
    const inputNames = signature.inputs.map((t) => t.name).join(',');
    const outputNames = signature.outputs.map((t) => t.name).join(',');
    return (inputs) => {
      if (this.closed) throw new Error('the SavedModel session is closed');
      const ids: number[] = [];
      const feeds: number[] = [];
      let outputs: NativeTensor[] = [];
      const casts: number[] = [];
      try {
        inputs.forEach((t, i) => {
          const id = createFeed(binding, t, signature.inputs[i]!);
          ids.push(id);
          if (signature.inputs[i]!.tfDType !== 'DT_DOUBLE') return feeds.push(id);
          const cast = castTensor(binding, id, binding.TF_FLOAT, TF_DOUBLE);
          casts.push(cast);
          feeds.push(cast);
        });
        outputs = binding.runSavedModel(this.id, feeds, inputNames, outputNames);
        return outputs.map((y, i) => {
          const info = signature.outputs[i]!;
          if (info.tfDType !== 'DT_DOUBLE') return readOutput(binding.tensorDataSync(y.id), y.shape, info);
          const cast = castTensor(binding, y.id, TF_DOUBLE, binding.TF_FLOAT);
          casts.push(cast);
          return readOutput(binding.tensorDataSync(cast), y.shape, info);
        });
      } finally {
        for (const id of ids) binding.deleteTensor(id);
        for (const id of casts) binding.deleteTensor(id);
        for (const y of outputs) binding.deleteTensor(y.id);
      }
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.binding.deleteSavedModel(this.id);
  }
}

/** A native tensor for one input, in the placeholder's own dtype. */
function createFeed(binding: Binding, t: FeedTensor, info: SavedTensorInfo): number {
  // The binding trusts the shape: a shorter array would have it read past the values (a crash, not an error).
  const count = t.shape.reduce((a, b) => a * b, 1);
  const length = info.tfDType === 'DT_STRING' ? (t.strings?.length ?? 0) : t.data.length;
  if (length !== count)
    throw new Error(`input ${info.key}: ${length} values for shape [${t.shape.join(', ')}] (${count} needed)`);
  switch (info.tfDType) {
    case 'DT_STRING':
      return binding.createTensor(t.shape, binding.TF_STRING, t.strings ?? []);
    case 'DT_INT64':
      return binding.createTensor(t.shape, binding.TF_INT64, widenToInt64(t.data as Int32Array));
    case 'DT_BOOL':
      return binding.createTensor(
        t.shape,
        binding.TF_BOOL,
        Uint8Array.from(t.data, (v) => (v ? 1 : 0)),
      );
    case 'DT_INT32':
      return binding.createTensor(t.shape, binding.TF_INT32, t.data);
    default:
      // DT_FLOAT, and DT_DOUBLE before its cast.
      return binding.createTensor(t.shape, binding.TF_FLOAT, t.data);
  }
}

/** One eager Cast op (the binding can neither create nor read float64 arrays). */
function castTensor(binding: Binding, id: number, from: number, to: number): number {
  const attrs = [
    { name: 'SrcT', type: binding.TF_ATTR_TYPE, value: from },
    { name: 'DstT', type: binding.TF_ATTR_TYPE, value: to },
    { name: 'Truncate', type: binding.TF_ATTR_BOOL, value: false },
  ];
  return binding.executeOp('Cast', attrs, [id], 1)[0]!.id;
}

function readOutput(
  raw: ArrayLike<number | bigint> | Uint8Array[],
  shape: number[],
  info: SavedTensorInfo,
): FeedTensor {
  if (info.tfDType === 'DT_STRING') {
    if (!Array.isArray(raw)) throw new Error(`output ${info.key} (DT_STRING) came back without its strings`);
    return { dtype: 'int32', shape, data: new Int32Array(0), strings: raw as Uint8Array[] };
  }
  const values = raw as ArrayLike<number | bigint>;
  // The binding's buffer is reused by nothing after deleteTensor, but copy anyway: it is freed with the tensor.
  if ((info.tfDType === 'DT_FLOAT' || info.tfDType === 'DT_DOUBLE') && values instanceof Float32Array)
    return { dtype: 'float32', shape, data: values.slice() };
  if (info.tfDType === 'DT_INT32' && values instanceof Int32Array)
    return { dtype: 'int32', shape, data: values.slice() };
  // int64 (the binding hands back its 8-byte values) and bool: narrowed to int32, refusing what does not fit.
  const data = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]);
    if (!(v >= -2147483648 && v <= 2147483647))
      throw new Error(`output ${info.key} (${info.tfDType}) holds ${v}, outside the int32 range Gantry carries`);
    data[i] = v;
  }
  return { dtype: 'int32', shape, data };
}
