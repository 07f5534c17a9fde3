import type * as tfType from '@tensorflow/tfjs';
import { tf } from '../engine/backend';

export type OptimizerName = 'adam' | 'sgd' | 'rmsprop';
export type LearningRateSchedule = 'constant' | 'cosine';

export function createOptimizer(name: OptimizerName, learningRate: number): tfType.Optimizer {
  switch (name) {
    case 'adam':
      return tf.train.adam(learningRate);
    case 'sgd':
      return tf.train.sgd(learningRate);
    case 'rmsprop':
      return tf.train.rmsprop(learningRate);
  }
}

/** Cosine decay ends here, as a fraction of the base rate, rather than at zero. */
const COSINE_FLOOR = 0.05;

/**
 * The learning rate of epoch `epoch` (0-based). A function of the epoch alone, so an attempt
 * that resumes from a checkpoint uses exactly the rates the lost attempt would have.
 */
export function learningRateAt(schedule: LearningRateSchedule, base: number, epoch: number, epochs: number): number {
  if (schedule === 'constant' || epochs <= 1) return base;
  const progress = epoch / (epochs - 1);
  return base * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** tfjs optimizers read their rate at every step; SGD keeps it in a tensor behind a setter. */
export function setLearningRate(optimizer: tfType.Optimizer, learningRate: number): void {
  const settable = optimizer as unknown as { setLearningRate?: (lr: number) => void; learningRate: number };
  if (typeof settable.setLearningRate === 'function') settable.setLearningRate(learningRate);
  else settable.learningRate = learningRate;
}
