import type * as tfType from '@tensorflow/tfjs';
import { attr, type AttrValue, GraphBuilder } from './graph-def';

/**
 * The forward pass of a tfjs Sequential model as TensorFlow graph nodes, written once for both
 * users: the trainer's step graph (weights are variables, dropout draws masks, and the backward
 * pass is built from the layer records returned here) and the model server's inference graph
 * (weights frozen in as constants, dropout is the identity).
 *
 * It compiles the layer kinds Gantry's architectures use: Rescaling, Flatten, Dropout, Dense,
 * Conv2D, MaxPooling2D, BatchNormalization (over the last axis) and Activation, with linear / relu / softmax /
 * sigmoid / tanh activations; and for functional models whose layers branch (several inputs — numeric plus one
 * index per categorical column — each layer used once, one output), Embedding and Concatenate (over the last
 * axis). Anything else raises GraphUnsupported, and the caller stays on the eager path, which handles every model.
 */

export class GraphUnsupported extends Error {}

export interface LayerInfo {
  className: string;
  config: Record<string, unknown>;
  /** The trainable weights (name and shape), in the layer's order (kernel, then bias). */
  weights: { name: string; shape: number[] }[];
  /** The non-trainable weights (BatchNormalization's moving mean and variance), in the layer's order. */
  state?: { name: string; shape: number[] }[];
  /**
   * Set for every layer of a functional model that is not one chain: the indices of the layers that feed this one,
   * in its call order (none for an InputLayer). Absent, each layer takes the output of the one before it.
   */
  inbound?: number[];
  /** An InputLayer of such a model: its position among the model's inputs (the order its tensors are fed in). */
  input?: number;
}

/**
 * Whether a functional model's layers are one chain — one input, each layer fed by the one before it alone, the
 * last one the output, as a Sequential model written with tf.model. Such a model compiles as a Sequential one does.
 */
function isChain(model: tfType.LayersModel): boolean {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) return false;
  const layers = model.layers;
  if (layers[0]?.getClassName() !== 'InputLayer') return false;
  for (let i = 1; i < layers.length; i++) {
    const nodes = (layers[i] as unknown as { inboundNodes: { inboundLayers: unknown[] }[] }).inboundNodes;
    const from = nodes.length === 1 ? nodes[0]!.inboundLayers : [];
    if (from.length !== 1 || from[0] !== layers[i - 1]) return false;
  }
  return model.outputs[0]!.sourceLayer === layers.at(-1);
}

interface InboundNode {
  inboundLayers: unknown[];
  tensorIndices: number[];
}

/**
 * The links of a functional model whose layers branch: for each layer the layers feeding it, and for each
 * InputLayer its position among the model's inputs. tfjs lists a model's layers by depth, inputs first and the
 * output last, so each layer's inputs come before it; a layer called more than once (shared weights) or a model
 * with several outputs does not compile.
 */
function branchLinks(model: tfType.LayersModel): { inbound: number[]; input?: number }[] {
  if (model.outputs.length !== 1) throw new GraphUnsupported('a functional model with several outputs');
  const layers = model.layers;
  const position = new Map<unknown, number>(layers.map((layer, i) => [layer, i]));
  const links = layers.map((layer, i) => {
    if (layer.getClassName() === 'InputLayer') {
      const input = model.inputs.findIndex((t) => t.sourceLayer === layer);
      if (input < 0) throw new GraphUnsupported(`input layer ${layer.name} is not one of the model's inputs`);
      return { inbound: [], input };
    }
    const nodes = (layer as unknown as { inboundNodes: InboundNode[] }).inboundNodes;
    if (nodes.length !== 1) throw new GraphUnsupported(`layer ${layer.name} is called more than once (shared)`);
    const node = nodes[0]!;
    const inbound = node.inboundLayers.map((from, k) => {
      const j = position.get(from);
      if (j === undefined || j >= i || node.tensorIndices[k] !== 0)
        throw new GraphUnsupported(`layer ${layer.name} is fed from outside the model or from a later layer`);
      return j;
    });
    return { inbound };
  });
  if (model.outputs[0]!.sourceLayer !== layers.at(-1))
    throw new GraphUnsupported('a functional model whose output is not its last layer');
  return links;
}

export function describeLayers(model: tfType.LayersModel): LayerInfo[] {
  const kind = model.getClassName();
  let links: { inbound: number[]; input?: number }[] | undefined;
  if (kind !== 'Sequential') {
    if (kind !== 'Model' && kind !== 'Functional')
      throw new GraphUnsupported(`${kind} models (only Sequential and functional ones compile)`);
    if (!isChain(model)) links = branchLinks(model);
  }
  return model.layers.map((layer, i) => ({
    className: layer.getClassName(),
    config: layer.getConfig() as Record<string, unknown>,
    weights: layer.trainableWeights.map((w) => ({
      name: (w.read() as tfType.Variable).name,
      shape: w.shape as number[],
    })),
    state: layer.nonTrainableWeights.map((w) => ({
      name: (w.read() as tfType.Variable).name,
      shape: w.shape as number[],
    })),
    ...links?.[i],
  }));
}

/**
 * What one compiled layer left in the graph: the nodes the trainer's backward pass starts from.
 * `input` is the layer's input node, `output` its output (after the activation), `linear` the
 * value before the activation.
 */
export type ForwardLayer =
  | { kind: 'identity' }
  | { kind: 'rescaling'; scale: string }
  | { kind: 'flatten'; input: string }
  | { kind: 'dropout'; mask: string }
  | {
      kind: 'dense';
      input: string;
      kernel: string;
      bias?: string;
      linear: string;
      output: string;
      activation: string;
    }
  | {
      kind: 'conv2d';
      input: string;
      kernel: string;
      bias?: string;
      attrs: Record<string, AttrValue>;
      linear: string;
      output: string;
      activation: string;
    }
  | { kind: 'maxPool'; input: string; output: string; attrs: Record<string, AttrValue> }
  | { kind: 'activation'; output: string; activation: string }
  /** `indices` are the int32 rows gathered from `table` ([inputDim, outputDim]), clamped into it. */
  | { kind: 'embedding'; indices: string; table: string; inputDim: number; outputDim: number }
  /** The inputs joined over the last axis, and each one's size along it. */
  | { kind: 'concatenate'; sizes: number[] }
  | {
      /**
       * `normalized` is (input − mean) · inverseStd; the output is normalized · gamma + beta. Training
       * normalises by the batch's `mean` and `variance` (biased, as tfjs's), which the trainer folds
       * into the moving averages with `momentum`; inference by the moving averages.
       */
      kind: 'batchNorm';
      training: boolean;
      axes: string;
      mean: string;
      variance: string;
      /** Set where the layer was written out in elementary ops (inference, or training unfused). */
      inverseStd?: string;
      normalized?: string;
      /**
       * Training a 4-D input fused (ForwardOptions.fuseBatchNorm): one FusedBatchNormV3 `node` on `input` with
       * `scale` and `offset` (gamma and beta, or ones and zeros), whose outputs 3 to 5 its gradient op takes.
       */
      fused?: { node: string; input: string; scale: string; offset: string; epsilon: number };
      gamma?: string;
      beta?: string;
      momentum: number;
      output: string;
    };

export interface ForwardOptions {
  /**
   * The node holding weight `weight` (0: kernel, 1: bias) of layer `layer`: a variable's read when
   * training, a constant when serving. Called in layer order, kernel before bias.
   */
  weight(layer: number, weight: number): string;
  /**
   * Training: dropout masks drawn from this seed placeholder (int32 [2]), and BatchNormalization
   * normalises by the batch's statistics. Without it dropout is the identity and BatchNormalization
   * uses its moving averages (weights after gamma and beta), as at inference.
   */
  dropoutSeed?: string;
  /**
   * Training: a BatchNormalization on a 4-D input (after a convolution) as TensorFlow's FusedBatchNormV3, one
   * oneDNN kernel, in place of the elementary ops (a dozen passes over the feature map).
   */
  fuseBatchNorm?: boolean;
  /** Called before each layer compiles: where a caller supports less (the trainer's gradients), it throws here. */
  checkLayer?(layer: LayerInfo, index: number): void;
}

export interface Forward {
  /** The last layer's output node. */
  output: string;
  /** Its shape without the batch dimension. */
  shape: number[];
  /** One record per layer, in order. */
  layers: ForwardLayer[];
}

/** The shapes (without the batch) of a branching model's inputs, in the model's input order; undefined for a chain. */
export function inputShapesOf(layers: LayerInfo[]): number[][] | undefined {
  const inputs = layers.filter((l) => l.input !== undefined);
  if (!inputs.length) return undefined;
  const shapes: number[][] = [];
  for (const layer of inputs) {
    const dims = (layer.config.batchInputShape ?? []) as (number | null)[];
    if (dims.slice(1).some((d) => typeof d !== 'number' || d < 1))
      throw new GraphUnsupported(`an input of shape [${dims.map((d) => d ?? 'null')}] (only the batch may be unknown)`);
    shapes[layer.input!] = dims.slice(1) as number[];
  }
  // Array.from: a hole (an input no layer stands for) becomes undefined, which `some` then sees.
  if (shapes.length !== inputs.length || Array.from(shapes).some((s) => s === undefined))
    throw new GraphUnsupported('a model whose input layers do not match its inputs');
  return shapes;
}

const F = { T: attr.type('DT_FLOAT') };

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

/** A layer's activation name as its config gives it (none is linear). */
export function activationOf(layer: LayerInfo): string {
  return String(layer.config.activation ?? 'linear');
}

function activate(g: GraphBuilder, prefix: string, input: string, activation: string): string {
  if (!(activation in ACTIVATIONS)) throw new GraphUnsupported(`activation ${activation}`);
  const op = ACTIVATIONS[activation];
  return op ? g.op(op, `${prefix}/${activation}`, [input], F) : input;
}

/**
 * Adds the forward pass of `layers` on input node `x` (shape `inputShape` without the batch) to `g`. A branching
 * model (layers with `inbound`) takes one node per input, in the model's input order, and its input shapes from its
 * input layers (`inputShape` is then unused).
 */
export function compileForward(
  g: GraphBuilder,
  layers: LayerInfo[],
  x: string | string[],
  inputShape: number[],
  options: ForwardOptions,
): Forward {
  const records: ForwardLayer[] = [];
  const inputs = typeof x === 'string' ? [x] : x;
  const inputShapes = inputShapesOf(layers);
  if (inputShapes && inputShapes.length !== inputs.length)
    throw new Error(`compileForward: ${inputs.length} input nodes for a model of ${inputShapes.length} inputs`);
  let h = inputs[0]!;
  let shape = [...inputShape];
  /** Each layer's output node and shape: where the layers that it feeds read from. */
  const outputs: string[] = [];
  const shapes: number[][] = [];
  layers.forEach((layer, index) => {
    options.checkLayer?.(layer, index);
    const p = `l${index}`;
    const c = layer.config;
    const record = (r: ForwardLayer) => {
      records.push(r);
      outputs.push(h);
      shapes.push(shape);
    };
    const from = layer.inbound ?? [];
    if (from.length > 1 && layer.className !== 'Concatenate')
      throw new GraphUnsupported(`layer ${layer.className} with several inputs (only Concatenate joins branches)`);
    if (from.length === 1) {
      h = outputs[from[0]!]!;
      shape = [...shapes[from[0]!]!];
    }
    switch (layer.className) {
      case 'InputLayer':
        if (layer.input !== undefined) {
          h = inputs[layer.input]!;
          shape = [...inputShapes![layer.input]!];
        }
        return record({ kind: 'identity' });
      case 'Embedding': {
        if (c.maskZero) throw new GraphUnsupported('Embedding with maskZero');
        const inputDim = Number(c.inputDim);
        const outputDim = Number(c.outputDim);
        const table = options.weight(index, 0);
        // tfjs casts the indices to int32 (truncating, as Cast does). Gantry's encoder keeps them in range (an
        // unknown category gets the last, out-of-vocabulary row); anything else is clamped into the table rather
        // than failing the whole batch, as GatherV2 on the CPU would.
        const truncated = g.op('Cast', `${p}/indices_int`, [h], {
          SrcT: attr.type('DT_FLOAT'),
          DstT: attr.type('DT_INT32'),
        });
        const indices = g.op(
          'ClipByValue',
          `${p}/indices`,
          [truncated, g.ints(`${p}/first`, [0], []), g.ints(`${p}/last`, [inputDim - 1], [])],
          { T: attr.type('DT_INT32') },
        );
        h = g.op('GatherV2', `${p}/gather`, [table, indices, g.ints(`${p}/axis`, [0], [])], {
          Tparams: attr.type('DT_FLOAT'),
          Tindices: attr.type('DT_INT32'),
          Taxis: attr.type('DT_INT32'),
          batch_dims: attr.int(0),
        });
        shape = [...shape, outputDim];
        return record({ kind: 'embedding', indices, table, inputDim, outputDim });
      }
      case 'Concatenate': {
        if (from.length < 2) throw new GraphUnsupported('Concatenate of fewer than two inputs');
        const parts = from.map((j) => shapes[j]!);
        const rank = parts[0]!.length + 1;
        const axis = Number(c.axis ?? -1);
        if (axis !== -1 && axis !== rank - 1) throw new GraphUnsupported(`Concatenate over axis ${axis}`);
        if (parts.some((s) => s.length !== rank - 1 || s.slice(0, -1).some((d, k) => d !== parts[0]![k])))
          throw new GraphUnsupported(`Concatenate of shapes ${parts.map((s) => `[${s}]`).join(', ')}`);
        const sizes = parts.map((s) => s.at(-1)!);
        h = g.op('ConcatV2', `${p}/concat`, [...from.map((j) => outputs[j]!), g.ints(`${p}/axis`, [rank - 1], [])], {
          ...F,
          N: attr.int(from.length),
          Tidx: attr.type('DT_INT32'),
        });
        shape = [...parts[0]!.slice(0, -1), sizes.reduce((a, b) => a + b, 0)];
        return record({ kind: 'concatenate', sizes });
      }
      case 'Rescaling': {
        const scale = g.floats(`${p}/scale`, [Number(c.scale)]);
        const offset = Number(c.offset ?? 0);
        h = g.op('Mul', `${p}/mul`, [h, scale], F);
        if (offset !== 0) h = g.op('AddV2', `${p}/add`, [h, g.floats(`${p}/offset`, [offset])], F);
        return record({ kind: 'rescaling', scale });
      }
      case 'Flatten': {
        const input = h;
        const size = shape.reduce((a, b) => a * b, 1);
        h = g.op('Reshape', `${p}/reshape`, [h, g.ints(`${p}/shape`, [-1, size])], {
          ...F,
          Tshape: attr.type('DT_INT32'),
        });
        shape = [size];
        return record({ kind: 'flatten', input });
      }
      case 'Dropout': {
        const seed = options.dropoutSeed;
        if (seed === undefined) return record({ kind: 'identity' });
        const rate = Number(c.rate);
        if (c.noiseShape) throw new GraphUnsupported('dropout with a noise shape');
        if (rate === 0) return record({ kind: 'identity' });
        // Stateless randomness keyed by (seed, step) and the layer: a resumed run draws the same masks.
        const layerSeed = g.op('AddV2', `${p}/seed`, [seed, g.ints(`${p}/salt`, [0, index * 7919])], {
          T: attr.type('DT_INT32'),
        });
        const uniform = g.op(
          'StatelessRandomUniform',
          `${p}/uniform`,
          [g.op('Shape', `${p}/shape`, [h], { ...F, out_type: attr.type('DT_INT32') }), layerSeed],
          {
            dtype: attr.type('DT_FLOAT'),
            T: attr.type('DT_INT32'),
            Tseed: attr.type('DT_INT32'),
          },
        );
        const keep = g.op('GreaterEqual', `${p}/keep`, [uniform, g.floats(`${p}/rate`, [rate])], F);
        const mask = g.op(
          'Mul',
          `${p}/mask`,
          [
            g.op('Cast', `${p}/keep_float`, [keep], { SrcT: attr.type('DT_BOOL'), DstT: attr.type('DT_FLOAT') }),
            g.floats(`${p}/inverse_keep`, [1 / (1 - rate)]),
          ],
          F,
        );
        h = g.op('Mul', `${p}/apply`, [h, mask], F);
        return record({ kind: 'dropout', mask });
      }
      case 'Dense': {
        if (shape.length !== 1) throw new GraphUnsupported(`Dense on a rank-${shape.length + 1} input`);
        const input = h;
        const kernel = options.weight(index, 0);
        const bias = c.useBias === false ? undefined : options.weight(index, 1);
        let linear = g.op('MatMul', `${p}/matmul`, [h, kernel], {
          ...F,
          transpose_a: attr.bool(false),
          transpose_b: attr.bool(false),
        });
        if (bias) linear = g.op('BiasAdd', `${p}/bias`, [linear, bias], { ...F, data_format: attr.str('NHWC') });
        const activation = activationOf(layer);
        h = activate(g, p, linear, activation);
        shape = [Number(c.units)];
        return record({ kind: 'dense', input, kernel, bias, linear, output: h, activation });
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
        const input = h;
        const kernel = options.weight(index, 0);
        const bias = c.useBias === false ? undefined : options.weight(index, 1);
        const attrs = {
          ...F,
          strides: attr.ints([1, sh, sw, 1]),
          padding: attr.str(pad),
          data_format: attr.str('NHWC'),
          dilations: attr.ints([1, 1, 1, 1]),
          use_cudnn_on_gpu: attr.bool(true),
        };
        let linear = g.op('Conv2D', `${p}/conv`, [h, kernel], attrs);
        if (bias) linear = g.op('BiasAdd', `${p}/bias`, [linear, bias], { ...F, data_format: attr.str('NHWC') });
        const activation = activationOf(layer);
        h = activate(g, p, linear, activation);
        const [ih, iw] = shape;
        shape =
          pad === 'SAME'
            ? [Math.ceil(ih! / sh), Math.ceil(iw! / sw), Number(c.filters)]
            : [Math.ceil((ih! - kh + 1) / sh), Math.ceil((iw! - kw + 1) / sw), Number(c.filters)];
        return record({ kind: 'conv2d', input, kernel, bias, attrs, linear, output: h, activation });
      }
      case 'MaxPooling2D': {
        if (c.dataFormat !== undefined && c.dataFormat !== 'channelsLast')
          throw new GraphUnsupported('channels-first pooling');
        if (shape.length !== 3) throw new GraphUnsupported(`MaxPooling2D on a rank-${shape.length + 1} input`);
        const [ph, pw] = pair(c.poolSize, 2);
        const [sh, sw] = pair(c.strides ?? c.poolSize, 2);
        const pad = padding(c.padding);
        const attrs = {
          ...F,
          ksize: attr.ints([1, ph, pw, 1]),
          strides: attr.ints([1, sh, sw, 1]),
          padding: attr.str(pad),
          data_format: attr.str('NHWC'),
        };
        const input = h;
        h = g.op('MaxPool', `${p}/pool`, [h], attrs);
        const [ih, iw, ch] = shape;
        shape =
          pad === 'SAME'
            ? [Math.ceil(ih! / sh), Math.ceil(iw! / sw), ch!]
            : [Math.floor((ih! - ph) / sh) + 1, Math.floor((iw! - pw) / sw) + 1, ch!];
        return record({ kind: 'maxPool', input, output: h, attrs });
      }
      case 'Activation': {
        const activation = activationOf(layer);
        h = activate(g, p, h, activation);
        return record({ kind: 'activation', output: h, activation });
      }
      case 'BatchNormalization': {
        const rank = shape.length + 1;
        const axis = Number(c.axis ?? -1);
        if (axis !== -1 && axis !== rank - 1) throw new GraphUnsupported(`BatchNormalization over axis ${axis}`);
        const epsilon = Number(c.epsilon ?? 1e-3);
        const momentum = Number(c.momentum ?? 0.99);
        let k = 0;
        const gamma = c.scale === false ? undefined : options.weight(index, k++);
        const beta = c.center === false ? undefined : options.weight(index, k++);
        // Every axis but the last: the statistics are per channel, shape [channels], broadcast on use.
        const axes = g.ints(
          `${p}/axes`,
          Array.from({ length: rank - 1 }, (_, i) => i),
        );
        const training = options.dropoutSeed !== undefined;
        if (training && options.fuseBatchNorm && rank === 4) {
          const channels = shape.at(-1)!;
          const input = h;
          const scale = gamma ?? g.floats(`${p}/ones`, new Array(channels).fill(1), [channels]);
          const offset = beta ?? g.floats(`${p}/zeros`, new Array(channels).fill(0), [channels]);
          // Training takes no running statistics (empty); outputs 3 and 4 are the batch's mean and biased variance,
          // as tfjs folds into the moving averages (output 2 is the unbiased one).
          const empty = g.floats(`${p}/no_statistics`, [], [0]);
          const node = g.op('FusedBatchNormV3', `${p}/fused`, [input, scale, offset, empty, empty], {
            ...F,
            U: attr.type('DT_FLOAT'),
            epsilon: attr.float(epsilon),
            exponential_avg_factor: attr.float(1),
            data_format: attr.str('NHWC'),
            is_training: attr.bool(true),
          });
          h = node;
          return record({
            kind: 'batchNorm',
            training,
            axes,
            mean: `${node}:3`,
            variance: `${node}:4`,
            fused: { node, input, scale, offset, epsilon },
            gamma,
            beta,
            momentum,
            output: h,
          });
        }
        const reduce = (name: string, input: string) =>
          g.op('Mean', `${p}/${name}`, [input, axes], {
            ...F,
            Tidx: attr.type('DT_INT32'),
            keep_dims: attr.bool(false),
          });
        const mean = training ? reduce('mean', h) : options.weight(index, k++);
        const variance = training
          ? reduce('variance', g.op('SquaredDifference', `${p}/squared_difference`, [h, mean], F))
          : options.weight(index, k++);
        const inverseStd = g.op(
          'Rsqrt',
          `${p}/inverse_std`,
          [g.op('AddV2', `${p}/variance_epsilon`, [variance, g.floats(`${p}/epsilon`, [epsilon])], F)],
          F,
        );
        const normalized = g.op('Mul', `${p}/normalized`, [g.op('Sub', `${p}/centered`, [h, mean], F), inverseStd], F);
        h = normalized;
        if (gamma) h = g.op('Mul', `${p}/scaled`, [h, gamma], F);
        if (beta) h = g.op('AddV2', `${p}/shifted`, [h, beta], F);
        return record({
          kind: 'batchNorm',
          training,
          axes,
          mean,
          variance,
          inverseStd,
          normalized,
          gamma,
          beta,
          momentum,
          output: h,
        });
      }
      default:
        throw new GraphUnsupported(`layer ${layer.className}`);
    }
  });
  return { output: h, shape, layers: records };
}

/** A float constant holding `values` as raw little-endian bytes (a weight matrix is too big for float_val). */
function frozen(g: GraphBuilder, name: string, values: Float32Array, dims: number[]): string {
  const value: AttrValue = {
    tensor: {
      dtype: 'DT_FLOAT',
      tensorShape: { dim: dims.map((size) => ({ size })) },
      tensorContent: Buffer.from(values.buffer, values.byteOffset, values.byteLength),
    },
  };
  return g.op('Const', name, [], { dtype: attr.type('DT_FLOAT'), value });
}

export interface InferenceGraph {
  graph: GraphBuilder;
  /** The placeholder to feed (float32, `[batch, ...inputShape]`). */
  input: string;
  /** The node to fetch. */
  output: string;
  /** The output's shape without the batch dimension. */
  shape: number[];
}

/**
 * `model`'s forward pass for inference, with its current weights frozen in as constants (so
 * TensorFlow's optimiser can fuse MatMul + BiasAdd + activation into oneDNN kernels). `inputDims`
 * is the input's full shape, batch first (-1 or null for any).
 */
export function compileInferenceGraph(model: tfType.LayersModel, inputDims: number[]): InferenceGraph {
  const { graph, inputs, output, shape } = compileInference(model, [inputDims]);
  return { graph, input: inputs[0]!, output, shape };
}

export interface MultiInputInferenceGraph {
  graph: GraphBuilder;
  /** The placeholders to feed (float32; an Embedding's indices too), in the model's input order. */
  inputs: string[];
  /** The node to fetch. */
  output: string;
  /** The output's shape without the batch dimension. */
  shape: number[];
}

/**
 * compileInferenceGraph for a model with several inputs (numeric + one index per categorical column): one
 * placeholder per input, `inputDims[i]` the full shape of input i, batch first.
 */
export function compileInferenceGraphInputs(
  model: tfType.LayersModel,
  inputDims: number[][],
): MultiInputInferenceGraph {
  if (inputDims.length !== model.inputs.length)
    throw new Error(`compileInferenceGraphInputs: ${inputDims.length} input shapes for ${model.inputs.length} inputs`);
  return compileInference(model, inputDims);
}

function compileInference(model: tfType.LayersModel, inputDims: number[][]): MultiInputInferenceGraph {
  const layers = describeLayers(model);
  // Every weight of every layer (getWeights, not only the trainable ones), checked up front.
  const weights = model.layers.map((layer) => {
    const values = layer.getWeights().map((w) => ({ values: w.dataSync() as Float32Array, shape: w.shape }));
    if (values.some((w) => !(w.values instanceof Float32Array)))
      throw new GraphUnsupported(`layer ${layer.name} holds non-float32 weights`);
    return values;
  });
  const g = new GraphBuilder();
  // One input keeps its historical name `x`; several are `x0`, `x1`, … in the model's order.
  const inputs = inputDims.map((dims, i) => g.placeholder(inputDims.length === 1 ? 'x' : `x${i}`, 'DT_FLOAT', dims));
  const forward = compileForward(g, layers, inputs.length === 1 ? inputs[0]! : inputs, inputDims[0]!.slice(1), {
    weight: (layer, index) => {
      const w = weights[layer]![index];
      if (!w) throw new GraphUnsupported(`layer ${model.layers[layer]!.name} lacks weight ${index}`);
      // Kernel and bias; a BatchNormalization layer's moving averages come third and fourth.
      const name = index === 0 ? 'kernel' : index === 1 ? 'bias_value' : `weight${index}`;
      return frozen(g, `l${layer}/${name}`, w.values, w.shape);
    },
  });
  // A named Identity: the fetch name stays the same whatever the last layer was.
  const output = g.op('Identity', 'y', [forward.output], F);
  return { graph: g, inputs, output, shape: forward.shape };
}
