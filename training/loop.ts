import type * as tfType from '@tensorflow/tfjs';
import { tf } from './backend';
import { BatchScratch, batchTensors, epochOrder, type Examples } from './batches';
import type { EpochMetrics } from './checkpoint';
import { evaluateModel } from './evaluate';
import { setLearningRate } from './optimizers';
import type { StepProgress } from './trainer';
import { ReplicasDiverged, TrainingDiverged } from './diverged';
import type { ReplicaEngine } from './replica-engine';

/**
 * One replica's share of synchronous data-parallel training. Every replica walks the same global
 * batches (the epoch order depends on (seed, epoch) only) and computes the gradients of its own
 * shard of each, scaled by 1 / global batch; the strategy then combines them:
 *
 * - `multi-worker-mirrored` / `mirrored`: ring all-reduce (sum) of the gradients, and every replica
 *   applies the same update to its own copy of the variables — they stay bit-identical, because
 *   the all-reduce leaves the same bytes on every rank.
 * - `central-storage`: the gradients are reduced to rank 0, which alone holds the optimizer state
 *   and applies the update; the new variables are broadcast back.
 *
 * The summed gradient is exactly the gradient one trainer would compute on the whole global
 * batch, so N replicas reach the weights one replica reaches (up to float summation order).
 */

export type StrategyName = 'mirrored' | 'multi-worker-mirrored' | 'central-storage';

/** The collective operations a replica uses (training/collectives' CollectiveGroup). */
export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(data: Float32Array, options?: { op?: 'sum' | 'mean' }): Promise<Float32Array>;
  broadcast(data: Float32Array, root: number): Promise<Float32Array>;
  reduce(data: Float32Array, root: number, options?: { op?: 'sum' | 'mean' }): Promise<Float32Array>;
}

/** Where training is: epochs finished, and steps done into the next one (a mid-epoch checkpoint). */
export interface DataPosition {
  epoch: number;
  stepInEpoch: number;
  globalStep: number;
}

export interface ReplicaProgress extends StepProgress {
  /** Examples per second of the whole job (global batch), since this attempt started. */
  samplesPerSecond: number;
}

export interface ReplicaLoopOptions {
  engine: ReplicaEngine;
  collective: Collective;
  strategy: StrategyName;
  model: tfType.LayersModel;
  optimizer: tfType.Optimizer;
  train: Examples;
  validation: Examples;
  featureShape: number[];
  numClasses: number;
  epochs: number;
  /** Per replica; the global batch is this × worldSize. */
  batchSize: number;
  seed: number;
  start: DataPosition;
  /** The learning rate of a step (0-based epoch, fractional progress for warm-up). */
  learningRateAt(epoch: number, epochProgress: number): number;
  checkpointEverySteps?: number;
  /** Compare every replica's weights with rank 0's after each step; a difference fails the job. */
  verifyReplicas?: boolean;
  stepDelayMs?: number;
  signal?: AbortSignal;
  onStep(progress: ReplicaProgress): void;
  /** Rank 0 only: a mid-epoch checkpoint point (the engine has synced into the model). */
  onCheckpoint?(position: DataPosition, partial: { loss: number; accuracy: number }): Promise<void>;
  /** Rank 0 only, after validation: the epoch checkpoint. */
  onEpochEnd?(metrics: EpochMetrics, position: DataPosition): Promise<void>;
}

/** Shard `rank` of a global batch of `length`: contiguous, sizes differing by at most one. */
export function shardOf(length: number, rank: number, worldSize: number): [number, number] {
  return [Math.floor((length * rank) / worldSize), Math.floor((length * (rank + 1)) / worldSize)];
}

export async function replicaLoop(options: ReplicaLoopOptions): Promise<{ history: EpochMetrics[]; steps: number }> {
  const { engine, collective, strategy, train, featureShape, numClasses } = options;
  const { rank, worldSize } = collective;
  const globalBatch = options.batchSize * worldSize;
  const stepsPerEpoch = Math.ceil(train.count / globalBatch);
  const history: EpochMetrics[] = [];
  const started = performance.now();
  let trainedSamples = 0;
  let globalStep = options.start.globalStep;
  let steps = 0;
  const scratch = new BatchScratch();

  // Rank 0's variables are the truth: a fresh start or a resume begins from identical copies.
  const initial = rank === 0 ? engine.readVariables() : new Float32Array(engine.size);
  await collective.broadcast(initial, 0);
  if (rank !== 0) engine.writeVariables(initial);

  for (let epoch = options.start.epoch; epoch < options.epochs; epoch++) {
    const epochStarted = performance.now();
    const order = epochOrder(train.count, options.seed, epoch);
    const firstStep = epoch === options.start.epoch ? options.start.stepInEpoch : 0;
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for (let step = firstStep; step < stepsPerEpoch; step++) {
      options.signal?.throwIfAborted();
      setLearningRate(options.optimizer, options.learningRateAt(epoch, step / stepsPerEpoch));
      const batch = order.subarray(step * globalBatch, Math.min((step + 1) * globalBatch, train.count));
      const [from, to] = shardOf(batch.length, rank, worldSize);
      let gradients: Float32Array;
      if (to > from) {
        const { xs, ys } = batchTensors(train, batch.subarray(from, to), featureShape, numClasses, scratch);
        gradients = engine.computeGradients(xs, ys, 1 / batch.length, [options.seed, globalStep * worldSize + rank]);
        tf.dispose([xs, ys]);
      } else {
        gradients = new Float32Array(engine.size + 2); // an empty shard adds nothing
      }
      if (strategy === 'central-storage') {
        await collective.reduce(gradients, 0, { op: 'sum' });
        if (rank === 0) engine.applyGradients(gradients);
        const variables = rank === 0 ? engine.readVariables() : new Float32Array(engine.size);
        await collective.broadcast(variables, 0);
        if (rank !== 0) engine.writeVariables(variables);
        // Only rank 0 saw the summed loss: share it so every replica reports the same.
        const totals = Float32Array.of(gradients[engine.size]!, gradients[engine.size + 1]!);
        await collective.broadcast(totals, 0);
        gradients[engine.size] = totals[0]!;
        gradients[engine.size + 1] = totals[1]!;
      } else {
        await collective.allReduce(gradients, { op: 'sum' });
        engine.applyGradients(gradients);
      }
      if (options.verifyReplicas) await verify(engine, collective, globalStep + 1);
      if (!Number.isFinite(gradients[engine.size]!))
        throw new TrainingDiverged(epoch + 1, step + 1, gradients[engine.size]!);
      lossSum += gradients[engine.size]!;
      correct += gradients[engine.size + 1]!;
      seen += batch.length;
      trainedSamples += batch.length;
      globalStep += 1;
      steps += 1;
      options.onStep({
        epoch: epoch + 1,
        step: step + 1,
        stepsPerEpoch,
        globalStep,
        loss: lossSum / seen,
        accuracy: correct / seen,
        samplesPerSecond: trainedSamples / Math.max(1e-3, (performance.now() - started) / 1000),
      });
      const every = options.checkpointEverySteps;
      if (rank === 0 && every && globalStep % every === 0 && step + 1 < stepsPerEpoch && options.onCheckpoint) {
        await engine.syncToModel();
        await options.onCheckpoint(
          { epoch, stepInEpoch: step + 1, globalStep },
          { loss: lossSum / seen, accuracy: correct / seen },
        );
      }
      if (options.stepDelayMs) await new Promise((resolve) => setTimeout(resolve, options.stepDelayMs));
      else await new Promise((resolve) => setImmediate(resolve));
    }
    await engine.syncToModel();
    if (rank === 0) {
      const validation = await evaluateModel(options.model, options.validation, featureShape, numClasses);
      const metrics: EpochMetrics = {
        epoch: epoch + 1,
        loss: lossSum / Math.max(1, seen),
        accuracy: correct / Math.max(1, seen),
        valLoss: validation.loss,
        valAccuracy: validation.accuracy,
        seconds: (performance.now() - epochStarted) / 1000,
      };
      history.push(metrics);
      await options.onEpochEnd?.(metrics, { epoch: epoch + 1, stepInEpoch: 0, globalStep });
    }
  }
  return { history, steps };
}

/** Rank 0 broadcasts its variables; every other rank must hold the same bytes. */
async function verify(engine: ReplicaEngine, collective: Collective, globalStep: number): Promise<void> {
  const mine = engine.readVariables();
  const reference = collective.rank === 0 ? Float32Array.from(mine) : new Float32Array(mine.length);
  await collective.broadcast(reference, 0);
  let differing = 0;
  for (let i = 0; i < mine.length; i++) if (mine[i] !== reference[i]) differing++;
  const total = Float32Array.of(differing);
  await collective.allReduce(total, { op: 'sum' });
  if (total[0]! > 0)
    throw new ReplicasDiverged(`replicas diverged after step ${globalStep}: ${total[0]} weights differ from rank 0's`);
}
