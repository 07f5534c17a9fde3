import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, type ArchitectureName } from '../training/architectures';
import { selectBackend, tf } from '../engine/backend';
import { compileInferenceGraph } from '../engine/forward-graph';
import { GraphSession } from '../engine/graph-session';
import { GraphTrainStep } from '../training/graph/graph-step';
import type { Examples } from '../training/batches';
import { createOptimizer } from '../training/optimizers';
import { trainLoop, type ExecutionReport } from '../training/trainer';
import { fashionMnistSlicer } from './helpers/examples';

/**
 * On the native backend each training step runs as one TensorFlow graph (training/graph/). It must
 * train exactly as the eager, op-by-op path does — same losses, same weights — and fall back to
 * the eager path, saying why, wherever it cannot run.
 */
const report = await selectBackend();
const native = report.engineBackend === 'tensorflow';
const featureShape = [28, 28, 1];
let train: Examples;
let validation: Examples;

beforeAll(async () => {
  const take = await fashionMnistSlicer();
  train = take('train', 0, 512);
  validation = take('test', 0, 256);
});

const small: Record<ArchitectureName, Record<string, unknown>> = {
  mlp: { hiddenUnits: [64, 32], dropout: 0 },
  cnn: { filters: [4, 8], denseUnits: 16, dropout: 0, batchNorm: false },
  tabular: { hiddenUnits: [32], dropout: 0 },
};

async function train2Epochs(
  architecture: ArchitectureName,
  execution: 'auto' | 'eager',
  options = small[architecture],
  optimizer = 'adam' as 'adam' | 'sgd',
) {
  const model = buildModel(tf, architecture, { featureShape, numClasses: 10, seed: 4 }, options);
  let used: ExecutionReport | undefined;
  const history = await trainLoop({
    model,
    optimizer: createOptimizer(optimizer, 0.003),
    train,
    validation,
    featureShape,
    numClasses: 10,
    epochs: 2,
    batchSize: 64,
    seed: 9,
    startEpoch: 0,
    startGlobalStep: 0,
    execution,
    onExecution: (e) => {
      used = e;
    },
    onStep: () => {},
    onEpochEnd: async () => {},
  });
  const weights = model.getWeights().flatMap((w) => Array.from(w.dataSync()));
  model.dispose();
  return { history, weights, used: used! };
}

const maxAbsDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe.skipIf(!native)('graph execution on the native backend', () => {
  for (const architecture of ['mlp', 'cnn'] as const) {
    for (const optimizer of ['adam', 'sgd'] as const) {
      it(
        `trains the ${architecture} with ${optimizer} to the weights the eager path reaches ` +
          '(16 steps, max |Δ| ≤ 1e-4)',
        async () => {
          const graph = await train2Epochs(architecture, 'auto', small[architecture], optimizer);
          const eager = await train2Epochs(architecture, 'eager', small[architecture], optimizer);
          expect(graph.used).toEqual({ mode: 'graph' });
          expect(eager.used.mode).toBe('eager');
          for (let e = 0; e < 2; e++) expect(graph.history[e]!.loss).toBeCloseTo(eager.history[e]!.loss, 4);
          expect(graph.history.map((h) => h.accuracy)).toEqual(eager.history.map((h) => h.accuracy));
          expect(maxAbsDiff(graph.weights, eager.weights)).toBeLessThanOrEqual(1e-4);
        },
      );
    }
  }

  it('trains the batch-normalised cnn (the default) as the eager path does, moving averages included', async () => {
    // SGD: Adam divides by √v̂, which turns the rounding in a near-zero gradient (fused batch statistics round
    // differently, ~1e-5) into a full step of the learning rate; SGD keeps a gradient's error the size it is.
    const options = { filters: [4, 8], denseUnits: 16, dropout: 0 };
    const graph = await train2Epochs('cnn', 'auto', options, 'sgd');
    const eager = await train2Epochs('cnn', 'eager', options, 'sgd');
    expect(graph.used).toEqual({ mode: 'graph' });
    for (let e = 0; e < 2; e++) expect(graph.history[e]!.loss).toBeCloseTo(eager.history[e]!.loss, 4);
    // getWeights holds the moving means and variances too.
    expect(maxAbsDiff(graph.weights, eager.weights)).toBeLessThanOrEqual(1e-4);
    const adam = await train2Epochs('cnn', 'auto', options);
    expect(adam.history[1]!.loss).toBeLessThan(adam.history[0]!.loss);
  });

  it('fused kernels (FusedBatchNormV3, ResourceApplyAdam) step as the elementary-op graph does', async () => {
    const xs = tf.tensor4d(Float32Array.from(train.images.subarray(0, 32 * 784)), [32, 28, 28, 1]);
    const ys = tf.oneHot(tf.tensor1d(Array.from(train.labels.subarray(0, 32)), 'int32'), 10);
    // [optimizer, learning rate, model options]: SGD at rate 1, so each weight's change is its gradient's sum.
    const cases = [
      ['sgd', 1, { filters: [4, 8], denseUnits: 16, dropout: 0 }],
      ['adam', 0.003, small.cnn],
    ] as const;
    const run = async (fuse: boolean) => {
      const values: number[][] = [];
      for (const [name, rate, options] of cases) {
        const m = buildModel(tf, 'cnn', { featureShape, numClasses: 10, seed: 4 }, options);
        const optimizer = createOptimizer(name, rate);
        const step = await GraphTrainStep.create(m, optimizer, featureShape, 10, 'classification', { fuse });
        if ('unsupported' in step) throw new Error(step.unsupported);
        const losses = [0, 1, 2].map((i) => step.step(xs, ys, 1 / 32, [1, i]).lossSum / 32);
        await step.syncToModel();
        step.dispose();
        values.push([...losses, ...m.getWeights().flatMap((w) => Array.from(w.dataSync()))]);
        m.dispose();
        optimizer.dispose();
      }
      return values;
    };
    const [fused, plain] = [await run(true), await run(false)];
    tf.dispose([xs, ys]);
    // Equal up to float rounding: the gradients (fused batch norm's statistics round differently), and Adam's update.
    for (let k = 0; k < 2; k++) {
      expect(fused[k]!.length).toBe(plain[k]!.length);
      expect(maxAbsDiff(fused[k]!, plain[k]!), cases[k]![0]).toBeLessThanOrEqual(5e-5);
    }
  });

  it('the serving graph of a trained batch-normalised cnn predicts as the model does (moving averages)', async () => {
    const model = buildModel(tf, 'cnn', { featureShape, numClasses: 10, seed: 4 }, { filters: [4, 8] });
    const optimizer = createOptimizer('adam', 0.003);
    const step = await GraphTrainStep.create(model, optimizer, featureShape, 10);
    if ('unsupported' in step) throw new Error(step.unsupported);
    const xs = tf.tensor4d(Float32Array.from(train.images.subarray(0, 64 * 784)), [64, 28, 28, 1]);
    const ys = tf.oneHot(tf.tensor1d(Array.from(train.labels.subarray(0, 64)), 'int32'), 10);
    for (let i = 0; i < 5; i++) step.step(xs, ys, 1 / 64, [2, i]);
    await step.syncToModel();
    step.dispose();
    const moving = model.layers.find((l) => l.getClassName() === 'BatchNormalization')!.getWeights()[2]!;
    // The moving means moved off their initial zeros: inference below uses what training folded in.
    expect(Math.max(...Array.from(moving.dataSync()).map(Math.abs))).toBeGreaterThan(1e-3);
    const compiled = compileInferenceGraph(model, [-1, ...featureShape]);
    const session = await GraphSession.open(compiled.graph, 'gantry-test');
    const probe = tf.tensor4d(Float32Array.from(validation.images.subarray(0, 16 * 784)), [16, 28, 28, 1]);
    const [graphOut] = session.run([[compiled.input, probe]], [compiled.output]);
    const eagerOut = model.predict(probe) as tf.Tensor;
    const [got, want] = [Array.from(graphOut!.dataSync()), Array.from(eagerOut.dataSync())];
    session.close();
    tf.dispose([xs, ys, probe, graphOut!, eagerOut]);
    model.dispose();
    optimizer.dispose();
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-5);
  });

  it('draws dropout masks from (seed, step): two runs give identical weights', async () => {
    const options = { hiddenUnits: [64], dropout: 0.3 };
    const a = await train2Epochs('mlp', 'auto', options);
    const b = await train2Epochs('mlp', 'auto', options);
    expect(a.used.mode).toBe('graph');
    expect(maxAbsDiff(a.weights, b.weights)).toBe(0);
    expect(a.history[1]!.loss).toBeLessThan(a.history[0]!.loss);
  });

  it('stays eager, and says why, for an optimizer the graph compiler lacks', async () => {
    const model = buildModel(tf, 'mlp', { featureShape, numClasses: 10, seed: 4 }, small.mlp);
    let used: ExecutionReport | undefined;
    await trainLoop({
      model,
      optimizer: createOptimizer('rmsprop', 0.001),
      train,
      validation,
      featureShape,
      numClasses: 10,
      epochs: 1,
      batchSize: 128,
      seed: 1,
      startEpoch: 0,
      startGlobalStep: 0,
      onExecution: (e) => {
        used = e;
      },
      onStep: () => {},
      onEpochEnd: async () => {},
    });
    model.dispose();
    expect(used).toEqual({ mode: 'eager', reason: 'the RMSProp optimizer' });
  });
});

describe.skipIf(native)('graph execution without the native backend', () => {
  it('trains eagerly and says the backend has no graph sessions', async () => {
    const { used, history } = await train2Epochs('mlp', 'auto');
    expect(used).toEqual({ mode: 'eager', reason: `the ${tf.getBackend()} backend has no graph sessions` });
    expect(history[1]!.loss).toBeLessThan(history[0]!.loss);
  });
});
