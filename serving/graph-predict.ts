import type * as tfType from '@tensorflow/tfjs';
import { tf } from '../engine/backend';
import {
  compileInferenceGraph,
  compileInferenceGraphInputs,
  GraphUnsupported,
  type MultiInputInferenceGraph,
} from '../engine/forward-graph';
import { GraphSession } from '../engine/graph-session';
import type { Signature } from './signature';
import type { DenseTensor } from './tensors';

/**
 * A version's forward pass as one TensorFlow graph session, the way TF Serving runs a SavedModel.
 * tfjs-node predicts eagerly: every layer is a few ops, each a round trip from JavaScript into
 * libtensorflow, ~0.8 ms per call for the fashion-mnist MLP whatever the batch size. The same
 * layers as one graph (engine/forward-graph.ts: weights frozen in as constants, so TensorFlow's
 * optimiser fuses MatMul + BiasAdd + activation into oneDNN kernels) take ~0.1 ms for one row and
 * ~0.4 ms for 64.
 *
 * Only a model with float32 inputs and one float32 output whose layers the engine compiles (Sequential, or
 * functional: a tabular model's numeric input and one index input per categorical column, through Embedding and
 * Concatenate, included), on tfjs-node's backend; anything else says why, and the servable keeps the eager forward
 * pass, which handles every layers model. A compiled graph must also agree with the eager pass on a probe batch
 * before it is used.
 */

const TAG = 'gantry-serve';
/** Largest difference from the eager forward pass that the probe batch may show. */
const PROBE_TOLERANCE = 1e-5;

export interface PredictGraph {
  run(inputs: DenseTensor[]): DenseTensor[];
  dispose(): void;
}

/** The inference graph of `model` for `signature`'s float32 inputs (one placeholder each) and one output. */
function compile(model: tfType.LayersModel, signature: Signature): MultiInputInferenceGraph {
  if (signature.outputs.length !== 1) throw new GraphUnsupported('a model with several outputs');
  if (signature.inputs.some((i) => i.dtype !== 'float32') || signature.outputs[0]!.dtype !== 'float32')
    throw new GraphUnsupported('a non-float32 input or output');
  const dims = signature.inputs.map((i) => i.shape);
  // One input keeps compileInferenceGraph (its placeholder named `x`); several get one placeholder each.
  const single = dims.length === 1 ? compileInferenceGraph(model, dims[0]!) : undefined;
  const compiled = single
    ? { graph: single.graph, inputs: [single.input], output: single.output, shape: single.shape }
    : compileInferenceGraphInputs(model, dims);
  const expected = signature.outputs[0]!.shape.slice(1);
  const { shape } = compiled;
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i]))
    throw new GraphUnsupported(`the compiled output shape [${shape}] differs from the model's [${expected}]`);
  return compiled;
}

/**
 * The rows of the smallest Embedding each input feeds (its indices must stay below), or 256 for an input that feeds
 * none: an index out of range fails the eager pass, where the graph clamps it.
 */
function probeRanges(model: tfType.LayersModel): number[] {
  return model.inputs.map((t) => {
    const consumers = (t.sourceLayer as unknown as { outboundNodes: { outboundLayer: tfType.layers.Layer }[] })
      .outboundNodes;
    const dims = consumers
      .map((node) => node.outboundLayer)
      .filter((layer) => layer.getClassName() === 'Embedding')
      .map((layer) => Number((layer.getConfig() as { inputDim: number }).inputDim));
    return Math.min(256, ...dims);
  });
}

/** A deterministic probe batch per input (values 0…255, like pixels; indices in range), every row of it different. */
function probeBatch(signature: Signature, rows: number, ranges: number[]): DenseTensor[] {
  return signature.inputs.map((spec, k) => {
    const size = spec.shape.slice(1).reduce((a, b) => a * b, 1);
    const data = new Float32Array(rows * size);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 256) % ranges[k]!;
    return { dtype: 'float32', shape: [rows, ...spec.shape.slice(1)], data };
  });
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
  const opened = await GraphSession.compileAndOpen(TAG, () => compile(model, signature));
  if ('unsupported' in opened) return opened;
  const { compiled, session } = opened;
  const forward = session.runner(compiled.inputs, [compiled.output]);
  const outputDType = signature.outputs[0]!.dtype;
  const graph: PredictGraph = {
    run(inputs) {
      const xs = inputs.map((input) => tf.tensor(input.data, input.shape, 'float32'));
      let y: tfType.Tensor | undefined;
      try {
        [y] = forward(xs);
        return [{ dtype: outputDType, shape: y!.shape, data: y!.dataSync() as Float32Array }];
      } finally {
        tf.dispose(xs);
        y?.dispose();
      }
    },
    dispose: () => session.close(),
  };
  try {
    const probe = probeBatch(signature, 3, probeRanges(model));
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
