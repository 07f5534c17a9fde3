import { setTimeout as sleep } from 'node:timers/promises';
import type * as tfType from '@tensorflow/tfjs';
import { tf } from '../engine/backend';
import { BatchScratch, batchTensors, epochOrder, type Examples, type InputFeed, type Task } from './batches';
import type { EpochMetrics } from './checkpoint';
import { TrainingDiverged } from './diverged';
import { evaluateModel } from './evaluate';
import { setLearningRate } from './optimizers';
import type { ReplicaEngine, StepResult } from './replica-engine';

/**
 * The one training loop: mini-batches written out step by step (not `model.fit`) so that the batch
 * order is reproducible per epoch, the gradients are in hand for the replicas to combine, and the
 * event loop gets a turn after every step for heartbeats and cancellation.
 *
 * Every trainer is a replica of a ring. All replicas walk the same global batches (the epoch order
 * depends on (seed, epoch) only) and each trains on its own shard of each; the ring turns the
 * shards' gradients into one update. A trainer alone is a ring of one: it runs whole steps and
 * nothing is all-reduced. A data-parallel job's ring combines them by its strategy
 * (distributed/strategies.ts).
 */

/** Where training is: epochs finished, and steps done into the next one (a mid-epoch checkpoint). */
export interface DataPosition {
  epoch: number;
  stepInEpoch: number;
  globalStep: number;
}

export interface StepProgress {
  /** 1-based epoch being trained (as in EpochMetrics). */
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  globalStep: number;
  /** Running means over the epoch so far. */
  loss: number;
  accuracy: number;
  /** Examples per second of the whole job (global batch), since this attempt started. */
  samplesPerSecond: number;
}

/** A replica's shard of a global batch, as tensors. */
export interface Shard {
  /** The model's inputs: one tensor, or its named inputs in order (a model with several inputs). */
  xs: tfType.Tensor | tfType.Tensor[];
  ys: tfType.Tensor;
}

/** The replicas a trainer trains with, and how their shards' gradients become one update. */
export interface Ring {
  readonly rank: number;
  readonly worldSize: number;
  /** Before the first step: every replica takes rank 0's variables (a fresh start or a resume). */
  align(engine: ReplicaEngine): Promise<void>;
  /**
   * One step of a global batch from this replica's shard (none when the batch is too small to give
   * every replica one), its loss scaled by `lossScale` (1 / global batch). Resolves to the whole
   * global batch's loss sum and correct count, the same on every replica.
   */
  step(engine: ReplicaEngine, shard: Shard | undefined, lossScale: number, seed: [number, number]): Promise<StepResult>;
  /** After step `globalStep` (when the ring was asked to): fails unless every replica holds rank 0's weights. */
  verify?(engine: ReplicaEngine, globalStep: number): Promise<void>;
}

/** A trainer alone: the engine's whole step (one graph run where it compiles); nothing to combine. */
export const RING_OF_ONE: Ring = {
  rank: 0,
  worldSize: 1,
  align: async () => {},
  step: async (engine, shard, lossScale, seed) => engine.step(shard!.xs, shard!.ys, lossScale, seed),
};

export interface ReplicaLoopOptions {
  engine: ReplicaEngine;
  ring: Ring;
  model: tfType.LayersModel;
  optimizer: tfType.Optimizer;
  train: Examples;
  validation: Examples;
  featureShape: number[];
  numClasses: number;
  /** Classification (softmax cross-entropy) when absent; a regression trains on mean squared error. */
  task?: Task;
  /** A model with several inputs: how the encoded examples are split into them (batches.ts inputFeedOf). */
  feed?: InputFeed;
  epochs: number;
  /** Per replica; the global batch is this × the ring's size. */
  batchSize: number;
  seed: number;
  start: DataPosition;
  /** The learning rate of a step (0-based epoch, fractional progress for warm-up); constant when absent. */
  learningRateAt?(epoch: number, epochProgress: number): number;
  checkpointEverySteps?: number;
  stepDelayMs?: number;
  signal?: AbortSignal;
  onStep(progress: StepProgress): void;
  /** Rank 0 only: a mid-epoch checkpoint point (the engine has synced into the model). */
  onCheckpoint?(position: DataPosition, partial: { loss: number; accuracy: number }): Promise<void>;
  /** Rank 0 only, after validation: the epoch checkpoint, awaited before the next epoch starts. */
  onEpochEnd?(metrics: EpochMetrics, position: DataPosition): Promise<void>;
}

/** What every trainer hands the loop the same way: the model, the data and the spec's loop settings. */
export type LoopInputs = Pick<
  ReplicaLoopOptions,
  | 'model'
  | 'optimizer'
  | 'train'
  | 'validation'
  | 'featureShape'
  | 'numClasses'
  | 'task'
  | 'feed'
  | 'epochs'
  | 'batchSize'
  | 'seed'
> & { stepDelayMs?: number };

/** Shard `rank` of a global batch of `length`: contiguous, sizes differing by at most one. */
export function shardOf(length: number, rank: number, worldSize: number): [number, number] {
  return [Math.floor((length * rank) / worldSize), Math.floor((length * (rank + 1)) / worldSize)];
}

/** Trains from `start` to the last epoch; the history (rank 0 only) and the steps this call trained. */
export async function replicaLoop(options: ReplicaLoopOptions): Promise<{ history: EpochMetrics[]; steps: number }> {
  const { engine, ring, train, featureShape, numClasses } = options;
  const task = options.task ?? 'classification';
  const { rank, worldSize } = ring;
  const globalBatch = options.batchSize * worldSize;
  const stepsPerEpoch = Math.ceil(train.count / globalBatch);
  const history: EpochMetrics[] = [];
  const started = performance.now();
  let trainedSamples = 0;
  let globalStep = options.start.globalStep;
  let steps = 0;
  const scratch = new BatchScratch();

  await ring.align(engine);

  for (let epoch = options.start.epoch; epoch < options.epochs; epoch++) {
    const epochStarted = performance.now();
    const order = epochOrder(train.count, options.seed, epoch);
    const firstStep = epoch === options.start.epoch ? options.start.stepInEpoch : 0;
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    for (let step = firstStep; step < stepsPerEpoch; step++) {
      options.signal?.throwIfAborted();
      if (options.learningRateAt)
        setLearningRate(options.optimizer, options.learningRateAt(epoch, step / stepsPerEpoch));
      const batch = order.subarray(step * globalBatch, Math.min((step + 1) * globalBatch, train.count));
      const [from, to] = shardOf(batch.length, rank, worldSize);
      const shard =
        to > from
          ? batchTensors(train, batch.subarray(from, to), featureShape, numClasses, scratch, task, options.feed)
          : undefined;
      // Dropout masks keyed by (seed, step, rank): a resumed attempt draws the ones the lost one would.
      const seed: [number, number] = [options.seed, globalStep * worldSize + rank];
      let result: StepResult;
      try {
        result = await ring.step(engine, shard, 1 / batch.length, seed);
      } finally {
        if (shard) tf.dispose([shard.xs, shard.ys]);
      }
      await ring.verify?.(engine, globalStep + 1);
      if (!Number.isFinite(result.lossSum))
        throw new TrainingDiverged(epoch + 1, step + 1, result.lossSum / batch.length);
      lossSum += result.lossSum;
      correct += result.correct;
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
      if (options.stepDelayMs) await sleep(options.stepDelayMs);
      else await new Promise((resolve) => setImmediate(resolve));
    }
    // The engine may hold the weights while it trains; the model is what evaluation and checkpoints read.
    await engine.syncToModel();
    if (rank === 0) {
      const validation = await evaluateModel(
        options.model,
        options.validation,
        featureShape,
        numClasses,
        undefined,
        task,
        options.feed,
      );
      const metrics: EpochMetrics = {
        epoch: epoch + 1,
        loss: lossSum / Math.max(1, seen),
        accuracy: correct / Math.max(1, seen),
        valLoss: validation.loss,
        valAccuracy: validation.accuracy,
        valMetrics: validation.metrics,
        seconds: (performance.now() - epochStarted) / 1000,
      };
      history.push(metrics);
      await options.onEpochEnd?.(metrics, { epoch: epoch + 1, stepInEpoch: 0, globalStep });
    }
  }
  return { history, steps };
}
