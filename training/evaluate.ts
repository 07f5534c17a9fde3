import type * as tfType from '@tensorflow/tfjs';
import { z } from 'zod';
import { tf } from '../engine/backend';
import { batchTensors, type Examples } from './batches';

export const ModelMetricsSchema = z.object({
  count: z.number().int(),
  loss: z.number(),
  accuracy: z.number(),
  perClassAccuracy: z.array(z.number()),
});
export type ModelMetrics = z.infer<typeof ModelMetricsSchema>;

/** Mean cross-entropy, accuracy and per-class accuracy of `model` over every example, in batches. */
export async function evaluateModel(
  model: tfType.LayersModel,
  examples: Examples,
  featureShape: number[],
  numClasses: number,
  batchSize = 1000,
): Promise<ModelMetrics> {
  let lossSum = 0;
  let correct = 0;
  const classCorrect = new Array<number>(numClasses).fill(0);
  const classTotal = new Array<number>(numClasses).fill(0);
  for (let start = 0; start < examples.count; start += batchSize) {
    const end = Math.min(start + batchSize, examples.count);
    const indices = Array.from({ length: end - start }, (_, i) => start + i);
    const { xs, ys, labels } = batchTensors(examples, indices, featureShape, numClasses);
    const [lossTensor, predictedTensor] = tf.tidy(() => {
      const probabilities = model.predict(xs) as tfType.Tensor;
      return [tf.sum(tf.metrics.categoricalCrossentropy(ys, probabilities)), tf.argMax(probabilities, -1)];
    });
    lossSum += (await lossTensor.data())[0]!;
    const predicted = await predictedTensor.data();
    tf.dispose([xs, ys, lossTensor, predictedTensor]);
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
  return {
    count: examples.count,
    loss: lossSum / Math.max(1, examples.count),
    accuracy: correct / Math.max(1, examples.count),
    perClassAccuracy: classCorrect.map((c, i) => (classTotal[i] ? c / classTotal[i]! : 0)),
  };
}
