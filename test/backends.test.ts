import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../training/architectures';
import { registerWasmBackend, selectBackend, tf } from '../engine/backend';
import { batchTensors, type Examples } from '../training/batches';
import { createOptimizer } from '../training/optimizers';
import { trainLoop } from '../training/trainer';
import { fashionMnistSlicer } from './helpers/examples';

/**
 * The native backend (tfjs-node built by scripts/setup-native.sh) must compute what the wasm
 * backend computes. Runs where the native backend loaded; where it did not, `gantry doctor`
 * says why (test/cli.test.ts) and everything else runs on wasm.
 */
const report = await selectBackend();
const native = report.engineBackend === 'tensorflow';

let batch: Examples;
let train: Examples;
let validation: Examples;
const featureShape = [28, 28, 1];

beforeAll(async () => {
  await registerWasmBackend();
  const take = await fashionMnistSlicer();
  batch = take('test', 0, 256);
  train = take('train', 0, 1024);
  validation = take('test', 256, 256);
});

async function predictOn(
  backend: string,
  architecture: 'mlp' | 'cnn',
  weights: Float32Array[] | null,
): Promise<{ probabilities: Float32Array; weights: Float32Array[] }> {
  await tf.setBackend(backend);
  const model = buildModel(
    tf,
    architecture,
    { featureShape, numClasses: 10, seed: 11 },
    architecture === 'cnn' ? { filters: [8, 16], denseUnits: 32 } : {},
  );
  if (weights) model.setWeights(model.getWeights().map((w, i) => tf.tensor(weights[i]!, w.shape)));
  const { xs, ys } = batchTensors(
    batch,
    Array.from({ length: batch.count }, (_, i) => i),
    featureShape,
    10,
  );
  const probabilities = (model.predict(xs) as tf.Tensor).dataSync() as Float32Array;
  const own = model.getWeights().map((w) => w.dataSync() as Float32Array);
  tf.dispose([xs, ys]);
  model.dispose();
  return { probabilities: Float32Array.from(probabilities), weights: own.map((w) => Float32Array.from(w)) };
}

describe.skipIf(!native)('the native backend against wasm', () => {
  for (const architecture of ['mlp', 'cnn'] as const) {
    it(
      `gives the same ${architecture} predictions for the same weights ` + 'on a Fashion-MNIST batch (max |Δ| ≤ 1e-4)',
      async () => {
        try {
          const onNative = await predictOn('tensorflow', architecture, null);
          const onWasm = await predictOn('wasm', architecture, onNative.weights);
          expect(onWasm.probabilities.length).toBe(256 * 10);
          const maxDiff = onNative.probabilities.reduce(
            (m, p, i) => Math.max(m, Math.abs(p - onWasm.probabilities[i]!)),
            0,
          );
          expect(maxDiff).toBeLessThanOrEqual(1e-4);
        } finally {
          await tf.setBackend(report.engineBackend);
        }
      },
    );
  }

  it('lowers the loss of a short training as the wasm backend does', async () => {
    const losses: Record<string, number[]> = {};
    try {
      for (const backend of ['tensorflow', 'wasm']) {
        await tf.setBackend(backend);
        const model = buildModel(
          tf,
          'mlp',
          { featureShape, numClasses: 10, seed: 5 },
          { hiddenUnits: [64], dropout: 0 },
        );
        const history = await trainLoop({
          model,
          optimizer: createOptimizer('adam', 0.003),
          train,
          validation,
          featureShape,
          numClasses: 10,
          epochs: 3,
          batchSize: 64,
          seed: 2,
          startEpoch: 0,
          startGlobalStep: 0,
          onStep: () => {},
          onEpochEnd: async () => {},
        });
        losses[backend] = history.map((h) => h.loss);
        model.dispose();
      }
    } finally {
      await tf.setBackend(report.engineBackend);
    }
    for (const backend of ['tensorflow', 'wasm']) expect(losses[backend]![2]!).toBeLessThan(losses[backend]![0]! * 0.7);
    // Same data order, same initial weights: the two backends follow the same path.
    for (let e = 0; e < 3; e++) expect(Math.abs(losses.tensorflow![e]! - losses.wasm![e]!)).toBeLessThan(0.01);
  });
});
