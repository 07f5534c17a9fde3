import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { tf } from './backend';
import { SavedModelError, type SavedSignature, type SavedTensorInfo } from './saved-model';

/**
 * A SavedModel folder loaded as one libtensorflow session through tfjs-node's native binding (the one
 * graph-session.ts uses for Gantry's own graphs), and a signature run through it: by the model server
 * (FeedTensor in and out) and by imports and evaluation (tf.Tensors, loadSavedModelRunner). Kept apart from
 * the reader (saved-model.ts) so that reading a signature, as the CLI does, loads no TensorFlow.js.
 */

/** Why this process cannot load SavedModels, or undefined if it can. */
export function savedModelsUnavailable(): string | undefined {
  if (tf.getBackend() === 'tensorflow') return undefined;
  return (
    `a SavedModel runs on the native backend (tfjs-node, TensorFlow's C library), but this process runs the ` +
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
    if (unavailable) throw new SavedModelError(unavailable);
    const binding = (tf.backend() as unknown as { binding: Binding }).binding;
    let id: number;
    try {
      id = binding.loadSavedModel(path.resolve(dir), tags.join(','));
    } catch (error) {
      throw new SavedModelError(`TensorFlow could not load the SavedModel in ${dir}: ${(error as Error).message}`);
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

/** One signature of a SavedModel over tf.Tensors: a batch in, the signature's outputs (in its order) out. */
export interface SavedModelRunner {
  predict(batch: tfType.Tensor): tfType.Tensor[];
  dispose(): void;
}

/**
 * Loads the SavedModel in `dir` and binds `signature` (one dense numeric input; numeric outputs) for evaluation:
 * training/evaluate.ts's evaluateModel calls predict inside tf.tidy, which disposes the tensors it returns.
 */
export function loadSavedModelRunner(dir: string, tags: string[], signature: SavedSignature): SavedModelRunner {
  const [input] = signature.inputs;
  if (signature.inputs.length !== 1 || !input)
    throw new SavedModelError(`signature "${signature.name}" has ${signature.inputs.length} inputs; one is run here`);
  for (const t of [...signature.inputs, ...signature.outputs])
    if (!t.name || !t.dtype || t.dtype === 'string')
      throw new SavedModelError(
        `signature "${signature.name}": "${t.key}" (${t.tfDType}) is not a dense number tensor`,
      );
  const inputDType = input.dtype as FeedTensor['dtype'];
  const session = SavedModelSession.open(dir, tags);
  const run = session.runner(signature);
  return {
    predict(batch) {
      const values = batch.dataSync();
      const data =
        inputDType === 'float32'
          ? values instanceof Float32Array
            ? values
            : Float32Array.from(values)
          : values instanceof Int32Array
            ? values
            : Int32Array.from(values);
      return run([{ dtype: inputDType, shape: batch.shape, data }]).map((y) => tf.tensor(y.data, y.shape, y.dtype));
    },
    dispose: () => session.close(),
  };
}
