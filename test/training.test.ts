import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { buildModel } from '../training/architectures';
import { BACKEND_NAMES, selectBackend, tf } from '../engine/backend';
import { epochOrder, type Examples } from '../training/batches';
import { loadLatestCheckpoint, saveCheckpoint } from '../training/checkpoint';
import { evaluateModel } from '../training/evaluate';
import { deserializeModel, serializeModel } from '../engine/model-files';
import { createOptimizer, learningRateAt } from '../training/optimizers';
import { trainLoop } from '../training/trainer';
import { fashionMnistSlicer } from './helpers/examples';

let train: Examples;
let validation: Examples;
const featureShape = [28, 28, 1];

beforeAll(async () => {
  await selectBackend();
  const take = await fashionMnistSlicer();
  train = take('train', 0, 1024);
  validation = take('test', 0, 256);
});

// No dropout: with it, two runs can never match weight for weight.
const newModel = () =>
  buildModel(tf, 'mlp', { featureShape, numClasses: 10, seed: 7 }, { hiddenUnits: [32], dropout: 0 });

function run(
  model: ReturnType<typeof newModel>,
  optimizer: ReturnType<typeof createOptimizer>,
  startEpoch: number,
  epochs: number,
  onEpochEnd = async () => {},
) {
  // The cosine schedule over 3 epochs, so that resuming must also land on the right rate.
  const rateAt = (epoch: number) => learningRateAt('cosine', 0.003, epoch, 3);
  return trainLoop({
    model,
    optimizer,
    train,
    validation,
    featureShape,
    numClasses: 10,
    epochs,
    batchSize: 64,
    seed: 3,
    startEpoch,
    startGlobalStep: startEpoch * 16,
    learningRateAt: rateAt,
    onStep: () => {},
    onEpochEnd,
  });
}

const flatWeights = (model: ReturnType<typeof newModel>) => model.getWeights().flatMap((w) => Array.from(w.dataSync()));

describe('the training engine', () => {
  it('reports which backend it chose and why the others were not', async () => {
    const report = await selectBackend();
    // The first backend of the preference order that loads here; every one ahead of it is missing, with a reason.
    expect(report.unavailable.map((u) => u.name)).toEqual(BACKEND_NAMES.slice(0, BACKEND_NAMES.indexOf(report.name)));
    for (const missing of report.unavailable) expect(missing.reason).toMatch(/\S{3,}/);
    expect(report.engineBackend).toBe(
      { 'tfjs-node-gpu': 'tensorflow', 'tfjs-node': 'tensorflow', wasm: 'wasm', cpu: 'cpu' }[report.name],
    );
    expect(tf.getBackend()).toBe(report.engineBackend);
    expect(report.tfjsVersion).toBe(tf.version.tfjs);
  });

  it('orders each epoch reproducibly from (seed, epoch) alone', () => {
    expect(Array.from(epochOrder(100, 3, 2))).toEqual(Array.from(epochOrder(100, 3, 2)));
    expect(Array.from(epochOrder(100, 3, 2))).not.toEqual(Array.from(epochOrder(100, 3, 1)));
    expect(Array.from(epochOrder(100, 3, 2)).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('decays the learning rate on a cosine from the base rate to 5% of it', () => {
    const rates = Array.from({ length: 5 }, (_, e) => learningRateAt('cosine', 0.01, e, 5));
    expect(rates[0]).toBeCloseTo(0.01, 12);
    expect(rates[4]).toBeCloseTo(0.0005, 12);
    expect(rates[2]).toBeCloseTo(0.00525, 12);
    for (let i = 1; i < rates.length; i++) expect(rates[i]!).toBeLessThan(rates[i - 1]!);
    expect(learningRateAt('constant', 0.01, 3, 5)).toBe(0.01);
  });

  it('learns: the loss falls and validation accuracy beats chance by far', async () => {
    const model = newModel();
    const history = await run(model, createOptimizer('adam', 0.003), 0, 3);
    expect(history).toHaveLength(3);
    expect(history[2]!.loss).toBeLessThan(history[0]!.loss);
    expect(history[2]!.valAccuracy).toBeGreaterThan(0.6);
  });

  it('resuming from an epoch checkpoint gives exactly the weights of an uninterrupted run', async () => {
    const store = new FileArtifactStore(await mkdtemp(path.join(os.tmpdir(), 'gantry-ckpt-')));

    const straight = newModel();
    await run(straight, createOptimizer('adam', 0.003), 0, 3);

    // Interrupted run: one epoch, checkpoint, then a fresh model and optimizer from the checkpoint.
    const before = newModel();
    const beforeOptimizer = createOptimizer('adam', 0.003);
    await run(before, beforeOptimizer, 0, 1, async () => {
      await saveCheckpoint(store, 'ckpt', {
        model: before,
        optimizer: beforeOptimizer,
        epochsCompleted: 1,
        globalStep: 16,
        history: [],
        attempt: 1,
      });
    });
    const restored = await loadLatestCheckpoint(store, 'ckpt');
    expect(restored?.manifest.epochsCompleted).toBe(1);
    const resumedOptimizer = createOptimizer('adam', 0.003);
    await resumedOptimizer.setWeights(restored!.optimizerWeights);
    await run(restored!.model, resumedOptimizer, 1, 3);

    const a = flatWeights(straight);
    const b = flatWeights(restored!.model);
    expect(b.length).toBe(a.length);
    const maxDiff = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    expect(maxDiff).toBeLessThan(1e-6);
  });

  it('writes TensorFlow.js layers files that load back with the same predictions', async () => {
    const model = newModel();
    await run(model, createOptimizer('adam', 0.003), 0, 1);
    const files = await serializeModel(model);
    expect(JSON.parse(files['model.json']).weightsManifest[0].paths).toEqual(['weights.bin']);
    const loaded = await deserializeModel(files['model.json'], files['weights.bin']);
    const original = await evaluateModel(model, validation, featureShape, 10);
    const reloaded = await evaluateModel(loaded, validation, featureShape, 10);
    expect(reloaded).toEqual(original);
    await expect(deserializeModel(files['model.json'], files['weights.bin'].subarray(0, 100))).rejects.toThrow(
      /weights\.bin holds 100 bytes/,
    );
    await expect(deserializeModel('{"nope":1}', files['weights.bin'])).rejects.toThrow(
      /not a TensorFlow\.js layers model/,
    );
  });
});
