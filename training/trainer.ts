import type * as tfType from '@tensorflow/tfjs';
import { tf } from './backend';
import { BatchScratch, batchTensors, epochOrder, type Examples } from './batches';
import type { EpochMetrics } from './checkpoint';
import { TrainingDiverged } from './diverged';
import { evaluateModel } from './evaluate';
import { GraphTrainStep } from './graph/graph-step';
import { setLearningRate } from './optimizers';

export interface StepProgress {
  /** 1-based epoch being trained (as in EpochMetrics). */
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  globalStep: number;
  /** Running means over the epoch so far. */
  loss: number;
  accuracy: number;
}

export interface TrainLoopOptions {
  model: tfType.LayersModel;
  optimizer: tfType.Optimizer;
  train: Examples;
  validation: Examples;
  featureShape: number[];
  numClasses: number;
  epochs: number;
  batchSize: number;
  seed: number;
  /** Epochs already done (from a checkpoint): training continues with epoch `startEpoch`. */
  startEpoch: number;
  startGlobalStep: number;
  stepDelayMs?: number;
  /** The learning rate for an epoch (0-based); constant when absent. */
  learningRateAt?: (epoch: number) => number;
  signal?: AbortSignal;
  /**
   * `auto` (default) runs each step as one TensorFlow graph where the backend and model allow
   * (see graph/), else eagerly; `eager` always runs op by op.
   */
  execution?: 'auto' | 'eager';
  /** Told once, before the first step, how the steps run and why. */
  onExecution?(execution: ExecutionReport): void;
  onStep(progress: StepProgress): void;
  /** Awaited before the next epoch starts: the place to write a checkpoint. */
  onEpochEnd(metrics: EpochMetrics, globalStep: number): Promise<void>;
}

export interface ExecutionReport {
  mode: 'graph' | 'eager';
  /** Why the steps run eagerly, when they do. */
  reason?: string;
}

const yieldToEventLoop = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Mini-batch training written out step by step (not `model.fit`) so that the batch order is
 * reproducible per epoch, the gradients are in hand (the distributed engine all-reduces them
 * here), and the event loop gets a turn after every step for heartbeats and cancellation.
 */
export async function trainLoop(options: TrainLoopOptions): Promise<EpochMetrics[]> {
  const { model, optimizer, train, featureShape, numClasses, batchSize } = options;
  const variables = model.trainableWeights.map((w) => w.read() as tfType.Variable);
  const stepsPerEpoch = Math.ceil(train.count / batchSize);
  const history: EpochMetrics[] = [];
  let globalStep = options.startGlobalStep;
  const graph =
    options.execution === 'eager'
      ? { unsupported: 'eager execution requested' }
      : await GraphTrainStep.create(model, optimizer, featureShape, numClasses);
  const execution: ExecutionReport =
    'unsupported' in graph ? { mode: 'eager', reason: graph.unsupported } : { mode: 'graph' };
  options.onExecution?.(execution);
  try {
    return await epochs(graph instanceof GraphTrainStep ? graph : undefined);
  } finally {
    if (graph instanceof GraphTrainStep) graph.dispose();
  }

  async function epochs(graph: GraphTrainStep | undefined): Promise<EpochMetrics[]> {
    const scratch = new BatchScratch();
    for (let epoch = options.startEpoch; epoch < options.epochs; epoch++) {
      const started = performance.now();
      if (options.learningRateAt) setLearningRate(optimizer, options.learningRateAt(epoch));
      const order = epochOrder(train.count, options.seed, epoch);
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      for (let step = 0; step < stepsPerEpoch; step++) {
        options.signal?.throwIfAborted();
        const indices = order.subarray(step * batchSize, Math.min((step + 1) * batchSize, train.count));
        const { xs, ys } = batchTensors(train, indices, featureShape, numClasses, scratch);
        const { loss, hits } = graph ? graphStep(graph, xs, ys, indices.length, globalStep) : await eagerStep(xs, ys);
        tf.dispose([xs, ys]);
        if (!Number.isFinite(loss)) throw new TrainingDiverged(epoch + 1, step + 1, loss);
        lossSum += loss * indices.length;
        correct += hits;
        seen += indices.length;
        globalStep += 1;
        options.onStep({
          epoch: epoch + 1,
          step: step + 1,
          stepsPerEpoch,
          globalStep,
          loss: lossSum / seen,
          accuracy: correct / seen,
        });
        if (options.stepDelayMs) await new Promise((resolve) => setTimeout(resolve, options.stepDelayMs));
        else await yieldToEventLoop();
      }
      // The graph holds the weights while it trains; the model is what evaluation and checkpoints read.
      if (graph) await graph.syncToModel();
      const validation = await evaluateModel(model, options.validation, featureShape, numClasses);
      const metrics: EpochMetrics = {
        epoch: epoch + 1,
        loss: lossSum / seen,
        accuracy: correct / seen,
        valLoss: validation.loss,
        valAccuracy: validation.accuracy,
        seconds: (performance.now() - started) / 1000,
      };
      history.push(metrics);
      await options.onEpochEnd(metrics, globalStep);
    }
    return history;
  }

  function graphStep(graph: GraphTrainStep, xs: tfType.Tensor, ys: tfType.Tensor, size: number, stepIndex: number) {
    // Dropout masks keyed by (seed, global step): a resumed attempt draws the ones the lost one would.
    const { lossSum, correct } = graph.step(xs, ys, 1 / size, [options.seed, stepIndex]);
    return { loss: lossSum / size, hits: correct };
  }

  async function eagerStep(xs: tfType.Tensor, ys: tfType.Tensor) {
    let batchCorrect: tfType.Scalar | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const probabilities = model.apply(xs, { training: true }) as tfType.Tensor;
      batchCorrect = tf.keep(
        tf.sum(tf.equal(tf.argMax(probabilities, -1), tf.argMax(ys, -1))).asType('float32') as tfType.Scalar,
      );
      return tf.mean(tf.metrics.categoricalCrossentropy(ys, probabilities)) as tfType.Scalar;
    }, variables);
    optimizer.applyGradients(grads);
    const [loss] = await value.data();
    const [hits] = await batchCorrect!.data();
    tf.dispose([value, batchCorrect!, ...Object.values(grads)]);
    return { loss: loss!, hits: hits! };
  }
}
