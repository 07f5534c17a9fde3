import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { tf } from '../engine/backend';
import { attr, GraphBuilder, type AttrValue } from '../engine/graph-def';
import { describeLayers, GraphUnsupported } from '../training/graph/sequential-graph';
import type { Signature } from './signature';
import type { DenseTensor } from './tensors';

/**
 * A version's forward pass as one TensorFlow graph session, the way TF Serving runs a SavedModel.
 * tfjs-node predicts eagerly: every layer is a few ops, each a round trip from JavaScript into
 * libtensorflow, ~0.8 ms per call for the fashion-mnist MLP whatever the batch size. The same
 * layers as one graph (weights frozen in as constants, so TensorFlow's optimiser fuses MatMul +
 * BiasAdd + activation into oneDNN kernels) take ~0.1 ms for one row and ~0.4 ms for 64.
 *
 * It compiles the layer kinds the trainer's graph compiler knows (training/graph), inference
 * only: Rescaling, Flatten, Dropout (identity at inference), Dense, Conv2D, MaxPooling2D, with
 * linear / relu / softmax / sigmoid / tanh activations, for a Sequential model with one float32
 * input. Anything else — and any backend other than tfjs-node's — says why, and the servable
 * keeps the eager forward pass, which handles every layers model. A compiled graph must also
 * agree with the eager pass on a probe batch before it is used.
 */

const TAG = 'gantry-serve';
const INPUT = 'x';
/** Largest difference from the eager forward pass that the probe batch may show. */
const PROBE_TOLERANCE = 1e-5;

/** The slice of tfjs-node's backend that loads and runs a SavedModel session. */
interface SessionBackend {
  loadSavedModelMetaGraph(dir: string, tags: string): number;
  runSavedModel(
    id: number,
    inputs: tfType.Tensor[],
    inputInfos: { name: string }[],
    outputNames: string[],
  ): tfType.Tensor[];
  deleteSavedModel(id: number): void;
}

export interface PredictGraph {
  run(inputs: DenseTensor[]): DenseTensor[];
  dispose(): void;
}

const F = { T: attr.type('DT_FLOAT') };

let sessions = 0;

/** Graph sessions open in this thread (their weights are not in tfjs's tensor count). */
export function openGraphSessions(): number {
  return sessions;
}

/** A float constant holding `values` as raw little-endian bytes (a weight matrix is too big for float_val). */
function constant(g: GraphBuilder, name: string, values: Float32Array, dims: number[]): string {
  const value: AttrValue = {
    tensor: {
      dtype: 'DT_FLOAT',
      tensorShape: { dim: dims.map((size) => ({ size })) },
      tensorContent: Buffer.from(values.buffer, values.byteOffset, values.byteLength),
    },
  };
  return g.op('Const', name, [], { dtype: attr.type('DT_FLOAT'), value });
}

function pair(value: unknown, fallback: number): [number, number] {
  if (value === undefined || value === null) return [fallback, fallback];
  if (typeof value === 'number') return [value, value];
  const list = value as number[];
  return [list[0]!, list[1] ?? list[0]!];
}

function padding(value: unknown): 'SAME' | 'VALID' {
  if (value === 'same') return 'SAME';
  if (value === 'valid' || value === undefined) return 'VALID';
  throw new GraphUnsupported(`padding ${String(value)}`);
}

const ACTIVATIONS: Record<string, string | undefined> = {
  linear: undefined,
  relu: 'Relu',
  softmax: 'Softmax',
  sigmoid: 'Sigmoid',
  tanh: 'Tanh',
};

function activate(g: GraphBuilder, name: string, input: string, activation: unknown): string {
  const key = String(activation ?? 'linear');
  if (!(key in ACTIVATIONS)) throw new GraphUnsupported(`activation ${key}`);
  const op = ACTIVATIONS[key];
  return op ? g.op(op, name, [input], F) : input;
}

/** Builds the forward graph of a Sequential model; returns the graph and its output node. */
export function compilePredictGraph(
  model: tfType.LayersModel,
  signature: Signature,
): { graph: GraphBuilder; output: string } {
  const layers = describeLayers(model);
  if (signature.inputs.length !== 1 || signature.outputs.length !== 1)
    throw new GraphUnsupported('a model with several inputs or outputs');
  const input = signature.inputs[0]!;
  if (input.dtype !== 'float32' || signature.outputs[0]!.dtype !== 'float32')
    throw new GraphUnsupported('a non-float32 input or output');
  const g = new GraphBuilder();
  let h = g.placeholder(INPUT, 'DT_FLOAT', input.shape);
  let shape = input.shape.slice(1);
  model.layers.forEach((layer, index) => {
    const { className, config: c } = layers[index]!;
    const p = `l${index}`;
    const weights = layer.getWeights().map((w) => ({ values: w.dataSync() as Float32Array, shape: w.shape }));
    if (weights.some((w) => !(w.values instanceof Float32Array)))
      throw new GraphUnsupported(`layer ${layer.name} holds non-float32 weights`);
    switch (className) {
      case 'InputLayer':
        return;
      case 'Rescaling':
        h = g.op('Mul', `${p}/mul`, [h, g.floats(`${p}/scale`, [Number(c.scale)])], F);
        if (Number(c.offset ?? 0) !== 0)
          h = g.op('AddV2', `${p}/add`, [h, g.floats(`${p}/offset`, [Number(c.offset)])], F);
        return;
      case 'Flatten': {
        const size = shape.reduce((a, b) => a * b, 1);
        h = g.op('Reshape', `${p}/reshape`, [h, g.ints(`${p}/shape`, [-1, size])], {
          ...F,
          Tshape: attr.type('DT_INT32'),
        });
        shape = [size];
        return;
      }
      case 'Dropout':
        return;
      case 'Dense': {
        if (shape.length !== 1) throw new GraphUnsupported(`Dense on a rank-${shape.length + 1} input`);
        const [kernel, bias] = weights;
        h = g.op('MatMul', `${p}/matmul`, [h, constant(g, `${p}/kernel`, kernel!.values, kernel!.shape)], {
          ...F,
          transpose_a: attr.bool(false),
          transpose_b: attr.bool(false),
        });
        if (c.useBias !== false)
          h = g.op('BiasAdd', `${p}/bias`, [h, constant(g, `${p}/bias_value`, bias!.values, bias!.shape)], {
            ...F,
            data_format: attr.str('NHWC'),
          });
        h = activate(g, `${p}/activation`, h, c.activation);
        shape = [Number(c.units)];
        return;
      }
      case 'Conv2D': {
        if (c.dataFormat !== undefined && c.dataFormat !== 'channelsLast')
          throw new GraphUnsupported('channels-first convolution');
        if (shape.length !== 3) throw new GraphUnsupported(`Conv2D on a rank-${shape.length + 1} input`);
        const [dh, dw] = pair(c.dilationRate, 1);
        if (dh !== 1 || dw !== 1) throw new GraphUnsupported('dilated convolution');
        const [sh, sw] = pair(c.strides, 1);
        const [kh, kw] = pair(c.kernelSize, 1);
        const pad = padding(c.padding);
        const [kernel, bias] = weights;
        h = g.op('Conv2D', `${p}/conv`, [h, constant(g, `${p}/kernel`, kernel!.values, kernel!.shape)], {
          ...F,
          strides: attr.ints([1, sh, sw, 1]),
          padding: attr.str(pad),
          data_format: attr.str('NHWC'),
          dilations: attr.ints([1, 1, 1, 1]),
          use_cudnn_on_gpu: attr.bool(true),
        });
        if (c.useBias !== false)
          h = g.op('BiasAdd', `${p}/bias`, [h, constant(g, `${p}/bias_value`, bias!.values, bias!.shape)], {
            ...F,
            data_format: attr.str('NHWC'),
          });
        h = activate(g, `${p}/activation`, h, c.activation);
        const [ih, iw] = shape;
        shape =
          pad === 'SAME'
            ? [Math.ceil(ih! / sh), Math.ceil(iw! / sw), Number(c.filters)]
            : [Math.ceil((ih! - kh + 1) / sh), Math.ceil((iw! - kw + 1) / sw), Number(c.filters)];
        return;
      }
      case 'MaxPooling2D': {
        if (c.dataFormat !== undefined && c.dataFormat !== 'channelsLast')
          throw new GraphUnsupported('channels-first pooling');
        if (shape.length !== 3) throw new GraphUnsupported(`MaxPooling2D on a rank-${shape.length + 1} input`);
        const [ph, pw] = pair(c.poolSize, 2);
        const [sh, sw] = pair(c.strides ?? c.poolSize, 2);
        const pad = padding(c.padding);
        h = g.op('MaxPool', `${p}/pool`, [h], {
          ...F,
          ksize: attr.ints([1, ph, pw, 1]),
          strides: attr.ints([1, sh, sw, 1]),
          padding: attr.str(pad),
          data_format: attr.str('NHWC'),
        });
        const [ih, iw, ch] = shape;
        shape =
          pad === 'SAME'
            ? [Math.ceil(ih! / sh), Math.ceil(iw! / sw), ch!]
            : [Math.floor((ih! - ph) / sh) + 1, Math.floor((iw! - pw) / sw) + 1, ch!];
        return;
      }
      default:
        throw new GraphUnsupported(`layer ${className}`);
    }
  });
  const expected = signature.outputs[0]!.shape.slice(1);
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i]))
    throw new GraphUnsupported(`the compiled output shape [${shape}] differs from the model's [${expected}]`);
  // A named Identity: the fetch name stays the same whatever the last layer was.
  const output = g.op('Identity', 'y', [h], F);
  return { graph: g, output };
}

/** A deterministic probe batch (values 0…255, like pixels) that every row of differs. */
function probeBatch(signature: Signature, rows: number): DenseTensor {
  const spec = signature.inputs[0]!;
  const size = spec.shape.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(rows * size);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) % 256;
  return { dtype: 'float32', shape: [rows, ...spec.shape.slice(1)], data };
}

/**
 * Loads `model`'s forward pass as a graph session, checked against `eager` (the servable's own
 * eager run) on a probe batch; or the reason it stays eager.
 */
export async function loadPredictGraph(
  model: tfType.LayersModel,
  signature: Signature,
  eager: (inputs: DenseTensor[]) => DenseTensor[],
): Promise<PredictGraph | { unsupported: string }> {
  if (tf.getBackend() !== 'tensorflow') return { unsupported: `the ${tf.getBackend()} backend has no graph sessions` };
  let compiled: { graph: GraphBuilder; output: string };
  try {
    compiled = compilePredictGraph(model, signature);
  } catch (error) {
    if (error instanceof GraphUnsupported) return { unsupported: error.message };
    throw error;
  }
  const backend = tf.backend() as unknown as SessionBackend;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-serve-graph-'));
  let session: number;
  try {
    await writeFile(path.join(dir, 'saved_model.pb'), compiled.graph.savedModel([TAG]));
    session = backend.loadSavedModelMetaGraph(dir, TAG);
    sessions++;
  } finally {
    // The session holds the graph (and the weights in it) in memory; the file was only the way in.
    await rm(dir, { recursive: true, force: true });
  }
  const feeds = [{ name: INPUT }];
  const fetches = [compiled.output];
  const outputDType = signature.outputs[0]!.dtype;
  let disposed = false;
  const graph: PredictGraph = {
    run(inputs) {
      const input = inputs[0]!;
      const x = tf.tensor(input.data, input.shape, 'float32');
      let y: tfType.Tensor | undefined;
      try {
        [y] = backend.runSavedModel(session, [x], feeds, fetches);
        return [{ dtype: outputDType, shape: y!.shape, data: y!.dataSync() as Float32Array }];
      } finally {
        x.dispose();
        y?.dispose();
      }
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      backend.deleteSavedModel(session);
      sessions--;
    },
  };
  try {
    const probe = [probeBatch(signature, 3)];
    const want = eager(probe)[0]!.data;
    const got = graph.run(probe)[0]!.data;
    let worst = want.length === got.length ? 0 : Infinity;
    for (let i = 0; i < want.length && worst <= PROBE_TOLERANCE; i++)
      worst = Math.max(worst, Math.abs(want[i]! - got[i]!));
    if (!(worst <= PROBE_TOLERANCE)) {
      graph.dispose();
      return { unsupported: `the compiled graph differs from the eager forward pass by ${worst} on a probe batch` };
    }
  } catch (error) {
    graph.dispose();
    return { unsupported: `the compiled graph failed on a probe batch: ${(error as Error).message}` };
  }
  return graph;
}
