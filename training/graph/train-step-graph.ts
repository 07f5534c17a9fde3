import { randomBytes } from 'node:crypto';
import { type AttrValue, attr, GraphBuilder } from '../../engine/graph-def';
import {
  activationOf,
  compileForward,
  type ForwardLayer,
  GraphUnsupported,
  inputShapesOf,
  type LayerInfo,
} from '../../engine/forward-graph';
import type { Task } from '../batches';

/**
 * Compiles a tfjs Sequential model into one TensorFlow graph that runs a whole training step —
 * forward pass (the engine's compiler, engine/forward-graph.ts), the task's loss (softmax
 * cross-entropy for a classifier, squared error on a linear Dense(1) for a regression), backward
 * pass and the optimizer update — in a single session call. The backward pass is written out per
 * layer with TensorFlow's own gradient ops (MatMul with transposes, BiasAddGrad, ReluGrad,
 * SigmoidGrad, TanhGrad, Conv2DBackpropInput/Filter, MaxPoolGrad), the ones Keras's graphs contain,
 * which TensorFlow then rewrites to its oneDNN kernels (Conv2D + BiasAdd + Relu fused, BiasAddGrad folded into
 * the filter gradient). BatchNormalization after a convolution runs as FusedBatchNormV3 and its gradient op (one
 * oneDNN kernel each, where Keras 3 writes it in elementary ops: about 1.7× Keras's speed for the default cnn),
 * elsewhere from elementary ops; Adam as ResourceApplyAdam. Its moving averages are variables of the graph too,
 * updated by every step as tfjs's layer does.
 *
 * A functional model whose layers branch (several inputs: numeric + one index per categorical column through an
 * Embedding, joined by Concatenate) compiles too: the backward pass walks its layers from the output back, a layer
 * fed into several others gets the sum of their gradients, Concatenate splits its gradient back into its inputs
 * (SplitV), an Embedding's table gets its rows' gradients summed per index (UnsortedSegmentSum, as tfjs's gather
 * gradient), and nothing flows into the index inputs, nor into any branch without weights upstream.
 *
 * Only the layers and activations whose gradients are written here compile; anything else raises
 * GraphUnsupported and the trainer stays on the eager path, which handles every model.
 *
 * The update follows tfjs's Adam exactly (bias-corrected moments, epsilon outside the square
 * root), so the eager and the graph path train alike and share checkpoints.
 */

export interface GraphVariable {
  /** The tfjs variable's name (the key of its gradient and of its optimizer slots). */
  name: string;
  shape: number[];
  /** Node names: the value, and for Adam its two moments. */
  read: string;
  readM?: string;
  readV?: string;
  /** Placeholder and fetchable "done" node that overwrite value and moments (restore). */
  set: string;
  setM?: string;
  setV?: string;
}

export interface OptimizerConfig {
  kind: 'adam' | 'sgd';
  beta1: number;
  beta2: number;
  epsilon: number;
}

/** A non-trainable variable (BatchNormalization's moving mean or variance): read, and overwritten by `set`. */
export interface GraphState {
  name: string;
  shape: number[];
  read: string;
  set: string;
}

export interface CompiledStep {
  graph: GraphBuilder;
  variables: GraphVariable[];
  /** Non-trainable variables, which `setDone` also overwrites and a step (or `stateDone`) updates. */
  states: GraphState[];
  /** Feeds of the train step. */
  inputs: {
    /** The model's input (the first one of a model with several). */
    x: string;
    /** Every input of a model with several, in its input order (float32; an Embedding's indices too). */
    xs: string[];
    y: string;
    lossScale: string;
    learningRate: string;
    oneMinusBeta1Power: string;
    oneMinusBeta2Power: string;
    seed: string;
  };
  /** Fetching `trainDone` runs a step; `lossSum` and `correct` come from the same run. */
  outputs: { lossSum: string; correct: string; trainDone: string; stateDone: string };
  /** Fetch to write every `set*` placeholder into its variable. */
  setDone: string;
  /**
   * Data parallelism: `flatGradients` is every gradient in one vector (variable order, each
   * flattened) from the same feeds as a step, without updating; `applyFlat` + fetching
   * `applyFlatDone` updates from such a vector (summed across replicas); `flatVariables` and
   * `setFlatVariables` + `setFlatDone` read and overwrite every variable as one vector.
   */
  flatGradients: string;
  applyFlat: string;
  applyFlatDone: string;
  /**
   * Feeds of `applyFlat` + a batch, fetching `applyFlatDone` and these: one session run applies an update and
   * computes the next batch's gradients on the updated variables. Absent for a model with BatchNormalization.
   */
  fused?: { flatGradients: string; lossSum: string; correct: string };
  flatVariables: string;
  setFlatVariables: string;
  setFlatDone: string;
  /** Elements per variable, in order: how the flat vectors split. */
  sizes: number[];
}

export interface CompileStepOptions {
  /**
   * Fused kernels where TensorFlow has them (Adam's update as ResourceApplyAdam); false writes every step out in
   * elementary ops, the reference the fused graph is tested against.
   */
  fuse?: boolean;
}

const F = { T: attr.type('DT_FLOAT') };

/** Activations whose gradient the backward pass writes (softmax only last, where it is fused with the loss). */
const DIFFERENTIABLE = new Set(['relu', 'linear', 'sigmoid', 'tanh']);

function checkDifferentiable(layer: LayerInfo, isLast: boolean): void {
  const activation = activationOf(layer);
  if (layer.className === 'Dense') {
    if (DIFFERENTIABLE.has(activation) || (activation === 'softmax' && isLast)) return;
    throw new GraphUnsupported(
      `Dense activation ${activation}${activation === 'softmax' ? ' before the last layer' : ''}`,
    );
  }
  if ((layer.className === 'Conv2D' || layer.className === 'Activation') && !DIFFERENTIABLE.has(activation))
    throw new GraphUnsupported(`Conv2D activation ${activation}`);
}

export function compileSequentialStep(
  layers: LayerInfo[],
  inputShape: number[],
  numClasses: number,
  optimizer: OptimizerConfig,
  task: Task = 'classification',
  { fuse = true }: CompileStepOptions = {},
): CompiledStep {
  const g = new GraphBuilder();
  // A branching model takes one placeholder per input, shaped as its input layers say.
  const branchInputs = inputShapesOf(layers);
  const xs = branchInputs
    ? branchInputs.map((shape, i) => g.placeholder(i === 0 ? 'x' : `x${i}`, 'DT_FLOAT', [-1, ...shape]))
    : [g.placeholder('x', 'DT_FLOAT', [-1, ...inputShape])];
  const x = xs[0]!;
  const y = g.placeholder('y', 'DT_FLOAT', [-1, task === 'regression' ? 1 : numClasses]);
  const lossScale = g.placeholder('loss_scale', 'DT_FLOAT', []);
  const learningRate = g.placeholder('learning_rate', 'DT_FLOAT', []);
  const oneMinusBeta1Power = g.placeholder('one_minus_beta1_power', 'DT_FLOAT', []);
  const oneMinusBeta2Power = g.placeholder('one_minus_beta2_power', 'DT_FLOAT', []);
  const seed = g.placeholder('seed', 'DT_INT32', [2]);

  const variables: GraphVariable[] = [];
  const handles: { handle: string; m?: string; v?: string }[] = [];
  const setters: string[] = [];
  // Resource names unique to this compilation: two models training in one process never share.
  const uid = randomBytes(6).toString('hex');
  const resourceVariable = (name: string, shape: number[]): string =>
    g.op('VarHandleOp', name, [], {
      dtype: attr.type('DT_FLOAT'),
      shape: attr.shape(shape),
      container: attr.str(''),
      shared_name: attr.str(`gantry_${uid}/${name}`),
    });
  const readOf = (handle: string, name: string) =>
    g.op('ReadVariableOp', name, [handle], { dtype: attr.type('DT_FLOAT') });
  const assign = (handle: string, value: string, name: string) =>
    g.op('AssignVariableOp', name, [handle, value], { dtype: attr.type('DT_FLOAT') });

  /** A trainable variable with its Adam slots; returns the node reading its value. */
  const addVariable = (tfjsName: string, shape: number[]): string => {
    const i = variables.length;
    const handle = resourceVariable(`var${i}`, shape);
    const read = readOf(handle, `var${i}/read`);
    const set = g.placeholder(`var${i}/set`, 'DT_FLOAT', shape);
    setters.push(assign(handle, set, `var${i}/assign`));
    const variable: GraphVariable = { name: tfjsName, shape, read, set };
    const slots: { handle: string; m?: string; v?: string } = { handle };
    if (optimizer.kind === 'adam') {
      for (const slot of ['m', 'v'] as const) {
        const slotHandle = resourceVariable(`var${i}/${slot}`, shape);
        slots[slot] = slotHandle;
        const slotSet = g.placeholder(`var${i}/${slot}/set`, 'DT_FLOAT', shape);
        setters.push(assign(slotHandle, slotSet, `var${i}/${slot}/assign`));
        if (slot === 'm') {
          variable.readM = readOf(slotHandle, `var${i}/m/read`);
          variable.setM = slotSet;
        } else {
          variable.readV = readOf(slotHandle, `var${i}/v/read`);
          variable.setV = slotSet;
        }
      }
    }
    variables.push(variable);
    handles.push(slots);
    return read;
  };

  /**
   * Forward pass, loss and backward pass on `g` (the step's builder, or one that prefixes every node's name), the
   * weights from `weightOf`: each weight's node and the index of its variable. The step runs it on the variables'
   * reads; the fused step ("apply the previous update, then the next gradients") once more on the updated values.
   */
  const pass = (g: GraphBuilder, weightOf: (layer: number, index: number) => [string, number]) => {
    // ---- forward (the engine's compiler) ----
    /** Variable index of each weight's node. */
    const variableOf = new Map<string, number>();
    const forward = compileForward(g, layers, branchInputs ? xs : x, inputShape, {
      weight: (layer, index) => {
        const [node, variable] = weightOf(layer, index);
        variableOf.set(node, variable);
        return node;
      },
      dropoutSeed: seed,
      fuseBatchNorm: fuse,
      checkLayer: (layer, index) => checkDifferentiable(layer, index === layers.length - 1),
    });
    const last = forward.layers.at(-1);
    // A classifier's softmax is fused with the loss below: softmax cross-entropy on logits, as Keras computes it.
    const logits = last?.kind === 'dense' && last.activation === 'softmax' ? last.linear : undefined;
    if (task === 'classification' && !logits)
      throw new GraphUnsupported('a classifier whose last layer is not Dense with softmax');
    const prediction =
      last?.kind === 'dense' && last.activation === 'linear' && forward.shape.length === 1 && forward.shape[0] === 1
        ? last.output
        : undefined;
    if (task === 'regression' && !prediction)
      throw new GraphUnsupported('a regression model whose last layer is not a linear Dense with one unit');

    // ---- backward, one step per layer from the last, from the nodes the forward pass recorded ----
    /** Gradient node per variable index. */
    const gradients: string[] = [];
    const firstWithWeights = layers.findIndex((l) => l.weights.length > 0);
    // A branching model: whether a layer's output needs a gradient (it, or a layer upstream of it, has weights).
    const branching = layers.some((l) => l.inbound !== undefined);
    const needsGradient: boolean[] = [];
    layers.forEach((l, i) => {
      needsGradient[i] = l.weights.length > 0 || (l.inbound ?? []).some((j) => needsGradient[j]);
    });
    /** Whether layer `index` passes a gradient to its input(s); `inChain` decides for a model that is one chain. */
    const inputGradient = (index: number, inChain: boolean): boolean =>
      branching ? layers[index]!.inbound!.some((j) => needsGradient[j]) : inChain;
    /** The gradient before the activation from the one after it (a last softmax is in the loss's gradient). */
    const activationGrad = (p: string, activation: string, dy: string, output: string): string => {
      if (activation === 'relu') return g.op('ReluGrad', `${p}/relu_grad`, [dy, output], F);
      if (activation === 'sigmoid') return g.op('SigmoidGrad', `${p}/sigmoid_grad`, [output, dy], F);
      if (activation === 'tanh') return g.op('TanhGrad', `${p}/tanh_grad`, [output, dy], F);
      return dy;
    };
    /** The gradient into the layer's input (Concatenate: one per input), or undefined when none is needed. */
    const backward = (record: ForwardLayer, index: number, dy: string): string | string[] | undefined => {
      const p = `l${index}`;
      switch (record.kind) {
        case 'identity':
          return dy;
        case 'rescaling':
          // The input needs no gradient and nothing before this layer trains.
          return inputGradient(index, index !== 0) ? g.op('Mul', `${p}/grad`, [dy, record.scale], F) : undefined;
        case 'flatten':
          return g.op(
            'Reshape',
            `${p}/grad`,
            [dy, g.op('Shape', `${p}/input_shape`, [record.input], { ...F, out_type: attr.type('DT_INT32') })],
            { ...F, Tshape: attr.type('DT_INT32') },
          );
        case 'dropout':
          return g.op('Mul', `${p}/grad`, [dy, record.mask], F);
        case 'dense': {
          const dz = activationGrad(p, record.activation, dy, record.output);
          const kernelIndex = variableOf.get(record.kernel)!;
          gradients[kernelIndex] = g.op('MatMul', `${p}/kernel_grad`, [record.input, dz], {
            ...F,
            transpose_a: attr.bool(true),
            transpose_b: attr.bool(false),
          });
          if (record.bias)
            gradients[kernelIndex + 1] = g.op('BiasAddGrad', `${p}/bias_grad`, [dz], {
              ...F,
              data_format: attr.str('NHWC'),
            });
          return !inputGradient(index, index !== firstWithWeights)
            ? undefined
            : g.op('MatMul', `${p}/input_grad`, [dz, record.kernel], {
                ...F,
                transpose_a: attr.bool(false),
                transpose_b: attr.bool(true),
              });
        }
        case 'conv2d': {
          const dz = activationGrad(p, record.activation, dy, record.output);
          const kernelIndex = variableOf.get(record.kernel)!;
          gradients[kernelIndex] = g.op(
            'Conv2DBackpropFilter',
            `${p}/kernel_grad`,
            [record.input, g.ints(`${p}/kernel_shape`, variables[kernelIndex]!.shape), dz],
            record.attrs,
          );
          if (record.bias)
            gradients[kernelIndex + 1] = g.op('BiasAddGrad', `${p}/bias_grad`, [dz], {
              ...F,
              data_format: attr.str('NHWC'),
            });
          if (!inputGradient(index, index !== firstWithWeights)) return undefined;
          const inputShape = g.op('Shape', `${p}/input_shape`, [record.input], {
            ...F,
            out_type: attr.type('DT_INT32'),
          });
          return g.op('Conv2DBackpropInput', `${p}/input_grad`, [inputShape, record.kernel, dz], record.attrs);
        }
        case 'activation':
          return activationGrad(p, record.activation, dy, record.output);
        case 'maxPool':
          return g.op('MaxPoolGrad', `${p}/grad`, [record.input, record.output, dy], record.attrs);
        case 'batchNorm': {
          if (record.fused) {
            const { node, input, scale, epsilon } = record.fused;
            const grad = g.op(
              'FusedBatchNormGradV3',
              `${p}/fused_grad`,
              [dy, input, scale, `${node}:3`, `${node}:4`, `${node}:5`],
              {
                ...F,
                U: attr.type('DT_FLOAT'),
                epsilon: attr.float(epsilon),
                data_format: attr.str('NHWC'),
                is_training: attr.bool(true),
              },
            );
            if (record.gamma) gradients[variableOf.get(record.gamma)!] = `${grad}:1`;
            if (record.beta) gradients[variableOf.get(record.beta)!] = `${grad}:2`;
            return inputGradient(index, index > firstWithWeights) ? grad : undefined;
          }
          const normalized = record.normalized!;
          const inverseStd = record.inverseStd!;
          // With x̂ the normalized input: dγ = Σ dy·x̂, dβ = Σ dy, and with g = dy·γ,
          // dx = inverseStd · (g − mean(g) − x̂ · mean(g·x̂)), means and sums over every axis but the last.
          const reduce = (op: 'Sum' | 'Mean', name: string, input: string) =>
            g.op(op, `${p}/${name}`, [input, record.axes], {
              ...F,
              Tidx: attr.type('DT_INT32'),
              keep_dims: attr.bool(false),
            });
          if (record.gamma)
            gradients[variableOf.get(record.gamma)!] = reduce(
              'Sum',
              'gamma_grad',
              g.op('Mul', `${p}/dy_normalized`, [dy, normalized], F),
            );
          if (record.beta) gradients[variableOf.get(record.beta)!] = reduce('Sum', 'beta_grad', dy);
          if (!inputGradient(index, index > firstWithWeights)) return undefined;
          const dNormalized = record.gamma ? g.op('Mul', `${p}/d_normalized`, [dy, record.gamma], F) : dy;
          const centered = g.op(
            'Sub',
            `${p}/grad_centered`,
            [
              g.op('Sub', `${p}/grad_minus_mean`, [dNormalized, reduce('Mean', 'grad_mean', dNormalized)], F),
              g.op(
                'Mul',
                `${p}/grad_projection`,
                [
                  normalized,
                  reduce(
                    'Mean',
                    'grad_normalized_mean',
                    g.op('Mul', `${p}/grad_times_normalized`, [dNormalized, normalized], F),
                  ),
                ],
                F,
              ),
            ],
            F,
          );
          return g.op('Mul', `${p}/grad`, [centered, inverseStd], F);
        }
        case 'embedding': {
          // Each gathered row's gradient added into its table row; the indices themselves get none.
          const reshape = (name: string, input: string, dims: number[], T: 'DT_FLOAT' | 'DT_INT32') =>
            g.op('Reshape', `${p}/${name}`, [input, g.ints(`${p}/${name}_shape`, dims)], {
              T: attr.type(T),
              Tshape: attr.type('DT_INT32'),
            });
          gradients[variableOf.get(record.table)!] = g.op(
            'UnsortedSegmentSum',
            `${p}/table_grad`,
            [
              reshape('grad_rows', dy, [-1, record.outputDim], 'DT_FLOAT'),
              reshape('grad_indices', record.indices, [-1], 'DT_INT32'),
              g.ints(`${p}/table_rows`, [record.inputDim], []),
            ],
            { ...F, Tindices: attr.type('DT_INT32'), Tnumsegments: attr.type('DT_INT32') },
          );
          return undefined;
        }
        case 'concatenate': {
          const split = g.op(
            'SplitV',
            `${p}/grad`,
            [dy, g.ints(`${p}/grad_sizes`, record.sizes), g.ints(`${p}/grad_axis`, [-1], [])],
            { ...F, Tlen: attr.type('DT_INT32'), num_split: attr.int(record.sizes.length) },
          );
          return record.sizes.map((_, k) => `${split}:${k}`);
        }
      }
    };

    // ---- loss, summed over the batch; the caller scales by 1 / global batch ----
    const { lossSum, correct, lossGrad } = prediction
      ? squaredErrorLoss(g, prediction, y, lossScale)
      : softmaxCrossEntropyLoss(g, logits!, y, lossScale);

    // ---- backward ----
    if (branching) {
      // From the output back (the layers are in topological order): each layer's gradient is the sum of what the
      // layers it feeds sent back, and it sends its input gradients on to the layers feeding it that need them.
      const incoming: string[][] = layers.map(() => []);
      incoming[layers.length - 1]!.push(lossGrad);
      for (let i = layers.length - 1; i >= 0; i--) {
        const parts = incoming[i]!;
        if (!parts.length) continue;
        const dy =
          parts.length === 1 ? parts[0]! : g.op('AddN', `l${i}/grad_sum`, parts, { ...F, N: attr.int(parts.length) });
        const back = backward(forward.layers[i]!, i, dy);
        if (back === undefined) continue;
        const grads = typeof back === 'string' ? [back] : back;
        layers[i]!.inbound!.forEach((j, k) => {
          if (needsGradient[j]) incoming[j]!.push(grads[k]!);
        });
      }
    } else {
      let dy: string | undefined = lossGrad;
      for (let i = forward.layers.length - 1; i >= 0 && dy !== undefined; i--) {
        const back = backward(forward.layers[i]!, i, dy);
        if (Array.isArray(back)) throw new GraphUnsupported(`layer ${layers[i]!.className} in a chain`);
        dy = back;
      }
    }
    variables.forEach((v, i) => {
      if (!gradients[i]) throw new GraphUnsupported(`no gradient reached ${v.name}`);
    });
    return { forward, gradients, lossSum, correct };
  };
  /** Variable index of each layer's weight, by `layer/index`. */
  const variableOfWeight = new Map<string, number>();
  const main = pass(g, (layer, index) => {
    const weight = layers[layer]!.weights[index];
    if (!weight) throw new GraphUnsupported(`layer ${layer} has a frozen weight (only trainable ones compile)`);
    const read = addVariable(weight.name, weight.shape);
    variableOfWeight.set(`${layer}/${index}`, variables.length - 1);
    return [read, variables.length - 1];
  });
  const { forward, gradients, lossSum, correct } = main;

  // ---- BatchNormalization's moving averages: variables the step folds the batch's statistics into ----
  const states: GraphState[] = [];
  const stateUpdates: string[] = [];
  forward.layers.forEach((record, index) => {
    if (record.kind !== 'batchNorm') return;
    const moving = layers[index]!.state ?? [];
    if (moving.length !== 2)
      throw new GraphUnsupported(`BatchNormalization layer ${index} without its moving mean and variance`);
    [record.mean, record.variance].forEach((batchValue, k) => {
      const { name, shape } = moving[k]!;
      const j = states.length;
      const handle = resourceVariable(`state${j}`, shape);
      const read = readOf(handle, `state${j}/read`);
      const set = g.placeholder(`state${j}/set`, 'DT_FLOAT', shape);
      setters.push(assign(handle, set, `state${j}/assign`));
      states.push({ name, shape, read, set });
      // moving − (moving − batch) · (1 − momentum), as tfjs's BatchNormalization writes it.
      const delta = g.op(
        'Mul',
        `state${j}/delta`,
        [
          g.op('Sub', `state${j}/difference`, [read, batchValue], F),
          g.floats(`state${j}/decay`, [1 - record.momentum]),
        ],
        F,
      );
      stateUpdates.push(assign(handle, g.op('Sub', `state${j}/new`, [read, delta], F), `state${j}/update`));
    });
  });

  // ---- update ----
  const constants = {
    beta1: g.floats('adam/beta1', [optimizer.beta1]),
    oneMinusBeta1: g.floats('adam/one_minus_beta1', [1 - optimizer.beta1]),
    beta2: g.floats('adam/beta2', [optimizer.beta2]),
    oneMinusBeta2: g.floats('adam/one_minus_beta2', [1 - optimizer.beta2]),
    epsilon: g.floats('adam/epsilon', [optimizer.epsilon]),
    minusLearningRate: g.op('Neg', 'update/minus_lr', [learningRate], F),
  };
  // TensorFlow's fused Adam (one kernel, one pass over each variable) in place of a dozen elementwise ops. It puts
  // epsilon outside √v where tfjs puts it outside √v̂, so it takes ε·√(1 − β₂ᵗ): the same update, not an approximation.
  const fusedAdam =
    optimizer.kind === 'adam' && fuse
      ? {
          one: g.floats('adam/one', [1]),
          beta1Power: '',
          beta2Power: '',
          epsilon: '',
        }
      : undefined;
  if (fusedAdam) {
    fusedAdam.beta1Power = g.op('Sub', 'adam/beta1_power', [fusedAdam.one, oneMinusBeta1Power], F);
    fusedAdam.beta2Power = g.op('Sub', 'adam/beta2_power', [fusedAdam.one, oneMinusBeta2Power], F);
    fusedAdam.epsilon = g.op(
      'Mul',
      'adam/epsilon_scaled',
      [constants.epsilon, g.op('Sqrt', 'adam/sqrt_one_minus_beta2_power', [oneMinusBeta2Power], F)],
      F,
    );
  }
  const update = (prefix: string, grads: string[]): string[] =>
    variables.flatMap((v, i) => {
      const { handle, m, v: s } = handles[i]!;
      const grad = grads[i]!;
      const q = `${prefix}/var${i}`;
      if (fusedAdam)
        return [
          g.op(
            'ResourceApplyAdam',
            `${q}/apply_adam`,
            [
              handle,
              m!,
              s!,
              fusedAdam.beta1Power,
              fusedAdam.beta2Power,
              learningRate,
              constants.beta1,
              constants.beta2,
              fusedAdam.epsilon,
              grad,
            ],
            { ...F, use_locking: attr.bool(false), use_nesterov: attr.bool(false) },
          ),
        ];
      if (optimizer.kind === 'sgd') {
        const value = g.op(
          'AddV2',
          `${q}/new`,
          [v.read, g.op('Mul', `${q}/step`, [grad, constants.minusLearningRate], F)],
          F,
        );
        return [assign(handle, value, `${q}/assign`)];
      }
      const mRead = v.readM!;
      const vRead = v.readV!;
      const newM = g.op(
        'AddV2',
        `${q}/m_new`,
        [
          g.op('Mul', `${q}/m_decay`, [mRead, constants.beta1], F),
          g.op('Mul', `${q}/m_in`, [grad, constants.oneMinusBeta1], F),
        ],
        F,
      );
      const newV = g.op(
        'AddV2',
        `${q}/v_new`,
        [
          g.op('Mul', `${q}/v_decay`, [vRead, constants.beta2], F),
          g.op('Mul', `${q}/v_in`, [g.op('Square', `${q}/g2`, [grad], F), constants.oneMinusBeta2], F),
        ],
        F,
      );
      const mHat = g.op('RealDiv', `${q}/m_hat`, [newM, oneMinusBeta1Power], F);
      const vHat = g.op('RealDiv', `${q}/v_hat`, [newV, oneMinusBeta2Power], F);
      const direction = g.op(
        'RealDiv',
        `${q}/direction`,
        [mHat, g.op('AddV2', `${q}/denominator`, [g.op('Sqrt', `${q}/sqrt`, [vHat], F), constants.epsilon], F)],
        F,
      );
      const value = g.op(
        'AddV2',
        `${q}/new`,
        [v.read, g.op('Mul', `${q}/step`, [direction, constants.minusLearningRate], F)],
        F,
      );
      return [
        assign(handle, value, `${q}/assign`),
        assign(m!, newM, `${q}/m_assign`),
        assign(s!, newV, `${q}/v_assign`),
      ];
    });

  const stateDone = g.done('state/done', stateUpdates);
  const trainDone = g.done('train/done', [...update('train', gradients), ...stateUpdates]);
  const setDone = g.done('set/done', setters);

  // ---- flat vectors for data parallelism: one tensor crosses the session boundary, not 2 × N ----
  const sizes = variables.map((v) => v.shape.reduce((a, b) => a * b, 1));
  const minusOne = g.ints('flat/minus_one', [-1]);
  const flatten = (name: string, inputs: string[]) =>
    g.op(
      'ConcatV2',
      name,
      [
        ...inputs.map((t, i) =>
          g.op('Reshape', `${name}/part${i}`, [t, minusOne], { ...F, Tshape: attr.type('DT_INT32') }),
        ),
        g.ints(`${name}/axis`, [0], []),
      ],
      {
        ...F,
        N: attr.int(inputs.length),
        Tidx: attr.type('DT_INT32'),
      },
    );
  const unflatten = (name: string, flat: string): string[] => {
    const split = g.op(
      'SplitV',
      `${name}/split`,
      [flat, g.ints(`${name}/sizes`, sizes), g.ints(`${name}/axis`, [0], [])],
      { ...F, Tlen: attr.type('DT_INT32'), num_split: attr.int(sizes.length) },
    );
    return variables.map((v, i) =>
      g.op(
        'Reshape',
        `${name}/var${i}`,
        [`${split}:${i}`, g.ints(`${name}/shape${i}`, v.shape.length ? v.shape : [], [v.shape.length])],
        { ...F, Tshape: attr.type('DT_INT32') },
      ),
    );
  };
  const flatGradients = flatten('flat/gradients', gradients);
  const applyFlat = g.placeholder('flat/apply', 'DT_FLOAT', [-1]);
  const applyFlatDone = g.done('apply/done', update('apply', unflatten('flat/apply_parts', applyFlat)));
  // The fused step: the forward and backward pass once more, on reads of the variables that wait for every update
  // of `apply/done` (control inputs), so they see the values the next step would read: its gradients bit for bit.
  // Not where BatchNormalization's moving averages move with the batch: their update reads the first pass's
  // statistics.
  let fused: CompiledStep['fused'];
  if (states.length === 0) {
    const scoped: GraphBuilder = Object.assign(Object.create(g), {
      op: (op: string, name: string, ...rest: [string[], Record<string, AttrValue>?, string[]?]) =>
        g.op(op, `fused/${name}`, ...rest),
    });
    const next = pass(scoped, (layer, index) => {
      const variable = variableOfWeight.get(`${layer}/${index}`)!;
      const read = g.op(
        'ReadVariableOp',
        `fused/var${variable}/read`,
        [handles[variable]!.handle],
        {
          dtype: attr.type('DT_FLOAT'),
        },
        [applyFlatDone],
      );
      return [read, variable];
    });
    fused = {
      flatGradients: flatten('fused/flat/gradients', next.gradients),
      lossSum: next.lossSum,
      correct: next.correct,
    };
  }
  const flatVariables = flatten(
    'flat/variables',
    variables.map((v) => v.read),
  );
  const setFlatVariables = g.placeholder('flat/set', 'DT_FLOAT', [-1]);
  const setFlatDone = g.done(
    'flat/set_done',
    unflatten('flat/set_parts', setFlatVariables).map((value, i) =>
      assign(handles[i]!.handle, value, `flat/assign${i}`),
    ),
  );
  return {
    graph: g,
    variables,
    states,
    inputs: { x, xs, y, lossScale, learningRate, oneMinusBeta1Power, oneMinusBeta2Power, seed },
    outputs: { lossSum, correct, trainDone, stateDone },
    setDone,
    flatGradients,
    applyFlat,
    applyFlatDone,
    fused,
    flatVariables,
    setFlatVariables,
    setFlatDone,
    sizes,
  };
}

interface Loss {
  lossSum: string;
  correct: string;
  /** The scaled loss's gradient with respect to the last layer's input to its activation (logits) or output. */
  lossGrad: string;
}

/** A classifier: softmax cross-entropy on the logits and the count of right argmaxes. */
function softmaxCrossEntropyLoss(g: GraphBuilder, logits: string, y: string, lossScale: string): Loss {
  const xent = g.op('SoftmaxCrossEntropyWithLogits', 'loss/xent', [logits, y], F);
  const lossSum = g.op('Sum', 'loss/sum', [xent, g.ints('loss/axes', [0])], {
    ...F,
    Tidx: attr.type('DT_INT32'),
    keep_dims: attr.bool(false),
  });
  const argMax = (input: string, name: string) =>
    g.op('ArgMax', name, [input, g.ints(`${name}/axis`, [1], [])], {
      ...F,
      Tidx: attr.type('DT_INT32'),
      output_type: attr.type('DT_INT32'),
    });
  const hits = g.op('Equal', 'accuracy/equal', [argMax(logits, 'accuracy/predicted'), argMax(y, 'accuracy/label')], {
    T: attr.type('DT_INT32'),
    incompatible_shape_error: attr.bool(true),
  });
  const correct = g.op(
    'Sum',
    'accuracy/correct',
    [
      g.op('Cast', 'accuracy/cast', [hits], { SrcT: attr.type('DT_BOOL'), DstT: attr.type('DT_FLOAT') }),
      g.ints('accuracy/axes', [0]),
    ],
    { ...F, Tidx: attr.type('DT_INT32'), keep_dims: attr.bool(false) },
  );
  return { lossSum, correct, lossGrad: g.op('Mul', 'loss/grad', [`${xent}:1`, lossScale], F) };
}

/** A regression: squared error of the one output, summed; its gradient 2(ŷ − y) · scale. Nothing counts as correct. */
function squaredErrorLoss(g: GraphBuilder, prediction: string, y: string, lossScale: string): Loss {
  const error = g.op('Sub', 'loss/error', [prediction, y], F);
  const lossSum = g.op('Sum', 'loss/sum', [g.op('Square', 'loss/squared', [error], F), g.ints('loss/axes', [0, 1])], {
    ...F,
    Tidx: attr.type('DT_INT32'),
    keep_dims: attr.bool(false),
  });
  const lossGrad = g.op(
    'Mul',
    'loss/grad',
    [error, g.op('Mul', 'loss/grad_scale', [lossScale, g.floats('loss/two', [2])], F)],
    F,
  );
  return { lossSum, correct: g.floats('accuracy/correct', [0]), lossGrad };
}
