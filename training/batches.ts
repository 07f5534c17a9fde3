import type * as tfType from '@tensorflow/tfjs';
import { seededPermutation } from '../data/split';
import { tf } from './backend';

/** Examples held as raw bytes (pixels 0..255, one label byte each), as the ingest shards store them. */
export interface Examples {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

/**
 * The order of epoch `epoch`: a permutation that depends only on (seed, epoch), so a resumed
 * attempt replays exactly the batches the lost one would have seen.
 */
export function epochOrder(count: number, seed: number, epoch: number): Uint32Array {
  return seededPermutation(count, `gantry:${seed}:${epoch}`);
}

/** Gathers the examples at `indices` into float32 inputs of `featureShape` and one-hot labels. */
export function batchTensors(
  examples: Examples,
  indices: ArrayLike<number>,
  featureShape: number[],
  numClasses: number,
): { xs: tfType.Tensor; ys: tfType.Tensor2D; labels: Int32Array } {
  const size = featureShape.reduce((a, b) => a * b, 1);
  const pixels = new Float32Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  for (let b = 0; b < indices.length; b++) {
    const index = indices[b]!;
    const source = examples.images.subarray(index * size, (index + 1) * size);
    pixels.set(source, b * size);
    labels[b] = examples.labels[index]!;
  }
  const xs = tf.tensor(pixels, [indices.length, ...featureShape]);
  const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses) as tfType.Tensor2D;
  return { xs, ys, labels };
}
