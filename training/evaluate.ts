import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import { tf } from '../engine/backend';
import { batchTensors, type Examples, type InputFeed, type Task } from './batches';
import { classifierAuc, METRIC_NAMES, regressionMetrics } from './metrics';

export const ModelMetricsSchema = z.object({
  task: z.enum(['classification', 'regression']).default('classification'),
  count: z.number().int(),
  /** The training loss: mean cross-entropy (classification) or mean squared error (regression). */
  loss: z.number(),
  /** Classification only (0 for a regression). */
  accuracy: z.number(),
  /** Classification only (empty for a regression). */
  perClassAccuracy: z.array(z.number()),
  /** The task's metrics by name (TASK_METRICS); one that cannot be measured (AUC of one class) is absent. */
  metrics: z.partialRecord(z.enum(METRIC_NAMES), z.number()).default({}),
});
export type ModelMetrics = z.infer<typeof ModelMetricsSchema>;

/** What evaluation runs: a layers model, or anything that predicts like one (an imported SavedModel's signature). */
export type Predictor = Pick<tfType.LayersModel, 'predict'>;

/** Keeps every example's probabilities for AUC up to this many values; past it AUC is not measured. */
const MAX_AUC_VALUES = 10_000_000;

/**
 * The task's metrics of `model` over every example, in batches: classification — mean
 * cross-entropy (loss = logLoss), accuracy, per-class accuracy and AUC; regression — mean squared
 * error (loss), RMSE, MAE and R². `feed`: a model with several inputs (batches.ts inputFeedOf).
 */
export async function evaluateModel(
  model: Predictor,
  examples: Examples,
  featureShape: number[],
  numClasses: number,
  batchSize = 1000,
  task: Task = 'classification',
  feed?: InputFeed,
): Promise<ModelMetrics> {
  if (task === 'regression') return evaluateRegression(model, examples, featureShape, batchSize, feed);
  let lossSum = 0;
  let correct = 0;
  const classCorrect = new Array<number>(numClasses).fill(0);
  const classTotal = new Array<number>(numClasses).fill(0);
  const keepProbabilities = examples.count * numClasses <= MAX_AUC_VALUES;
  const probabilities = new Float32Array(keepProbabilities ? examples.count * numClasses : 0);
  const allLabels = new Int32Array(examples.count);
  for (let start = 0; start < examples.count; start += batchSize) {
    const end = Math.min(start + batchSize, examples.count);
    const indices = Array.from({ length: end - start }, (_, i) => start + i);
    const { xs, ys, labels } = batchTensors(examples, indices, featureShape, numClasses, undefined, task, feed);
    const [lossTensor, predictedTensor, probabilityTensor] = tf.tidy(() => {
      const output = model.predict(xs) as tfType.Tensor;
      return [tf.sum(tf.metrics.categoricalCrossentropy(ys, output)), tf.argMax(output, -1), output];
    });
    lossSum += (await lossTensor.data())[0]!;
    const predicted = await predictedTensor.data();
    if (keepProbabilities) probabilities.set(await probabilityTensor.data(), start * numClasses);
    allLabels.set(labels, start);
    tf.dispose([xs, ys, lossTensor, predictedTensor, probabilityTensor]);
    for (let i = 0; i < labels.length; i++) {
      const label = labels[i]!;
      classTotal[label]! += 1;
      if (predicted[i] === label) {
        correct += 1;
        classCorrect[label]! += 1;
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  const loss = lossSum / Math.max(1, examples.count);
  const accuracy = correct / Math.max(1, examples.count);
  const auc = keepProbabilities ? classifierAuc(probabilities, allLabels, numClasses) : undefined;
  return {
    task: 'classification',
    count: examples.count,
    loss,
    accuracy,
    perClassAccuracy: classCorrect.map((c, i) => (classTotal[i] ? c / classTotal[i]! : 0)),
    metrics: { accuracy, logLoss: loss, ...(auc === undefined ? {} : { auc }) },
  };
}

async function evaluateRegression(
  model: Predictor,
  examples: Examples,
  featureShape: number[],
  batchSize: number,
  feed: InputFeed | undefined,
): Promise<ModelMetrics> {
  const predicted = new Float32Array(examples.count);
  const actual = new Float32Array(examples.count);
  for (let start = 0; start < examples.count; start += batchSize) {
    const end = Math.min(start + batchSize, examples.count);
    const indices = Array.from({ length: end - start }, (_, i) => start + i);
    const { xs, ys, values } = batchTensors(examples, indices, featureShape, 1, undefined, 'regression', feed);
    const output = tf.tidy(() => tf.reshape(model.predict(xs) as tfType.Tensor, [-1]));
    const batch = await output.data();
    if (batch.length !== indices.length)
      throw new Error(`the model gives ${batch.length / indices.length} values per example; a regression needs 1`);
    predicted.set(batch, start);
    actual.set(values, start);
    tf.dispose([xs, ys, output]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const { mse, rmse, mae, r2 } = regressionMetrics(predicted, actual);
  return {
    task: 'regression',
    count: examples.count,
    loss: mse,
    accuracy: 0,
    perClassAccuracy: [],
    metrics: { rmse, mae, r2 },
  };
}
