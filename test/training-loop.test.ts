import { ApplicationFailure } from '@temporalio/common';
import { beforeAll, describe, expect, it } from 'vitest';
import { asActivityFailure } from '../activities/failures';
import { buildModel } from '../training/architectures';
import { selectBackend, tf } from '../engine/backend';
import type { Examples } from '../training/batches';
import { type Collective, strategyRing } from '../training/distributed/strategies';
import { ReplicasDiverged, TrainingDiverged } from '../training/diverged';
import { RING_OF_ONE, replicaLoop } from '../training/loop';
import { createOptimizer } from '../training/optimizers';
import { createReplicaEngine, type ReplicaEngine } from '../training/replica-engine';
import { trainLoop } from '../training/trainer';
import { fashionMnistSlicer } from './helpers/examples';

// Which backend the test runs on: CI runs this file natively and again on the wasm fallback.
const native = (await selectBackend()).engineBackend === 'tensorflow';

/**
 * The one training loop (training/loop.ts): a trainer alone is a ring of one, and a step that
 * blows up fails with TrainingDiverged, which the activities report as a non-retryable failure.
 */
await selectBackend();
const featureShape = [28, 28, 1];
let train: Examples;
let validation: Examples;

beforeAll(async () => {
  const take = await fashionMnistSlicer();
  train = take('train', 0, 320);
  validation = take('test', 0, 64);
});

const newModel = () =>
  buildModel(tf, 'mlp', { featureShape, numClasses: 10, seed: 11 }, { hiddenUnits: [32], dropout: 0 });
const flatWeights = (model: ReturnType<typeof newModel>) => model.getWeights().flatMap((w) => Array.from(w.dataSync()));

/** The collective of a job of one replica: every operation leaves the data as it is. */
const alone: Collective = {
  rank: 0,
  worldSize: 1,
  allReduce: async (data) => data,
  broadcast: async (data) => data,
  reduce: async (data) => data,
};

const common = { featureShape, numClasses: 10, epochs: 2, batchSize: 64, seed: 5, onStep: () => {} };

describe('the training loop', () => {
  for (const execution of ['auto', 'eager'] as const) {
    it(`a ring of one (whole steps) reaches the weights of a one-replica all-reduce ring (${execution})`, async () => {
      const single = newModel();
      const singleOptimizer = createOptimizer('adam', 0.003);
      const history = await trainLoop({
        ...common,
        model: single,
        optimizer: singleOptimizer,
        train,
        validation,
        startEpoch: 0,
        startGlobalStep: 0,
        execution,
        onEpochEnd: async () => {},
      });

      const replica = newModel();
      const replicaOptimizer = createOptimizer('adam', 0.003);
      const { engine } = await createReplicaEngine(replica, replicaOptimizer, featureShape, 10, execution);
      let result;
      try {
        result = await replicaLoop({
          ...common,
          engine,
          ring: strategyRing('multi-worker-mirrored', alone, { verifyReplicas: true }),
          model: replica,
          optimizer: replicaOptimizer,
          train,
          validation,
          start: { epoch: 0, stepInEpoch: 0, globalStep: 0 },
        });
      } finally {
        engine.dispose();
      }

      expect(result.steps).toBe(10);
      expect(result.history.map((h) => h.accuracy)).toEqual(history.map((h) => h.accuracy));
      const a = flatWeights(single);
      const b = flatWeights(replica);
      expect(a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0)).toBeLessThanOrEqual(1e-6);
      single.dispose();
      replica.dispose();
      singleOptimizer.dispose();
      replicaOptimizer.dispose();
    });
  }

  // The fused step is the native graph step's (its dropout masks are seeded per step, so two runs draw the same ones);
  // op by op, on the fallback backends, each update has its own run and there is nothing to compare.
  it.skipIf(!native)(
    'fused updates (apply the previous + compute the next in one run): same weights at every checkpoint',
    async () => {
      // Dropout on: the fused pass must draw the masks the unfused one draws. Checkpoints every 3 of 5 steps an
      // epoch: each must see the update of the step before it, deferred or not.
      const withDropout = () =>
        buildModel(tf, 'mlp', { featureShape, numClasses: 10, seed: 11 }, { hiddenUnits: [32], dropout: 0.2 });
      const run = async (fuseUpdates: boolean) => {
        const model = withDropout();
        const optimizer = createOptimizer('adam', 0.003);
        const { engine } = await createReplicaEngine(model, optimizer, featureShape, 10);
        const seen: number[][] = [];
        const snapshot = () => seen.push(flatWeights(model));
        try {
          await replicaLoop({
            ...common,
            engine,
            ring: strategyRing('multi-worker-mirrored', alone, { fuseUpdates }),
            model,
            optimizer,
            train,
            validation,
            start: { epoch: 0, stepInEpoch: 0, globalStep: 0 },
            checkpointEverySteps: 3,
            onCheckpoint: async () => void snapshot(),
            onEpochEnd: async () => void snapshot(),
          });
        } finally {
          engine.dispose();
        }
        const fuses = 'fusesUpdates' in engine && engine.fusesUpdates === true;
        model.dispose();
        optimizer.dispose();
        return { seen, fuses };
      };
      const fused = await run(true);
      const plain = await run(false);
      expect(fused.fuses).toBe(true);
      expect(fused.seen).toHaveLength(5); // global steps 3, 6 and 9, and the end of each of the 2 epochs
      for (let i = 0; i < fused.seen.length; i++) {
        const a = fused.seen[i]!;
        const b = plain.seen[i]!;
        expect(a.reduce((m, x, k) => Math.max(m, Math.abs(x - b[k]!)), 0)).toBeLessThanOrEqual(1e-6);
      }
      // And the weights moved between checkpoints: the comparison is not of untrained copies.
      expect(fused.seen[0]).not.toEqual(fused.seen[1]);
    },
  );

  it('fails with TrainingDiverged (epoch, step, loss) at the first step whose loss is not finite', async () => {
    // An engine whose third step blows up: the loop must stop there, whatever the engine.
    let stepsTaken = 0;
    const engine: ReplicaEngine = {
      size: 0,
      step: () => ({ lossSum: ++stepsTaken === 3 ? Number.POSITIVE_INFINITY : 64, correct: 6 }),
      computeGradients: () => new Float32Array(2),
      applyGradients: () => {},
      readVariables: () => new Float32Array(0),
      writeVariables: () => {},
      syncToModel: async () => {},
      dispose: () => {},
    };
    const model = newModel();
    const error = await replicaLoop({
      ...common,
      engine,
      ring: RING_OF_ONE,
      model,
      optimizer: createOptimizer('adam', 0.003),
      train,
      validation,
      start: { epoch: 1, stepInEpoch: 0, globalStep: 5 },
    }).catch((e: unknown) => e);
    model.dispose();
    expect(error).toBeInstanceOf(TrainingDiverged);
    expect(error).toMatchObject({ epoch: 2, step: 3, loss: Number.POSITIVE_INFINITY });
    expect((error as Error).message).toBe('training diverged: loss is Infinity at epoch 2, step 3');
  });

  it('reports divergence as a non-retryable failure of its own type, with the same message', () => {
    const diverged = asActivityFailure(new TrainingDiverged(3, 7, Number.POSITIVE_INFINITY));
    expect(diverged).toBeInstanceOf(ApplicationFailure);
    expect(diverged).toMatchObject({
      type: 'TrainingDiverged',
      nonRetryable: true,
      message: 'training diverged: loss is Infinity at epoch 3, step 7',
    });
    const replicas = asActivityFailure(new ReplicasDiverged('replicas diverged after step 4: 2 weights differ'));
    expect(replicas).toMatchObject({ type: 'ReplicasDiverged', nonRetryable: true });
    const other = new Error('socket closed');
    expect(asActivityFailure(other)).toBe(other);
  });
});
