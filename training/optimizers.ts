import type * as tfType from '@tensorflow/tfjs';
import { tf } from './backend';

export type OptimizerName = 'adam' | 'sgd' | 'rmsprop';

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
