import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, type ArchitectureName } from '../training/architectures';
import { selectBackend, tf } from '../engine/backend';
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
  cnn: { filters: [4, 8], denseUnits: 16, dropout: 0 },
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
