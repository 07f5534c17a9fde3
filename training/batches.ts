import type * as tfType from '@tensorflow/tfjs';
import { type Preprocessing, splitEncoded, type TabularInputLayout, tabularInputsOf } from '../data/preprocessing';
import { seededPermutation } from '../data/split';
import { tf } from '../engine/backend';

/** What a model predicts: a class (softmax over numClasses, one-hot targets) or one value (targets [n, 1]). */
export type Task = 'classification' | 'regression';

/** Examples as the ingest shards store them (see data/shards.ts LoadedSplit). */
export interface Examples {
  images: Uint8Array | Float32Array;
  labels: Uint8Array | Float32Array;
  count: number;
}

/**
 * How a model with several inputs is fed (data/preprocessing.ts NUMERIC_INPUT): the encoded examples are split into
 * its named inputs, given in the model's input order. A one-input model has none: it takes the encoded vector.
 */
export interface InputFeed {
  layout: TabularInputLayout;
  /** The model's input names, in its order. */
  order: string[];
}

/**
 * The feed of `model`: undefined for a model with one input; for several, each input checked against the named
 * inputs of the data's tabular preprocessing (throws naming the input that does not fit).
 */
export function inputFeedOf(model: tfType.LayersModel, preprocessing: Preprocessing | null): InputFeed | undefined {
  if (model.inputs.length <= 1) return undefined;
  const names = model.inputs.map((t) => t.sourceLayer.name);
  if (preprocessing?.kind !== 'tabular')
    throw new Error(
      `the model has several inputs (${names.join(', ')}); only tabular data feeds several inputs ` +
        '(numeric + one per categorical column)',
    );
  const layout = tabularInputsOf(preprocessing);
  const known = new Map(layout.inputs.map((i) => [i.name, i.width]));
  model.inputs.forEach((t, i) => {
    const width = known.get(names[i]!);
    if (width === undefined)
      throw new Error(
        `the model's input ${JSON.stringify(names[i])} is none of the data's named inputs: ` +
          `${layout.inputs.map((n) => JSON.stringify(n.name)).join(', ')}`,
      );
    if (t.shape.length !== 2 || t.shape[1] !== width)
      throw new Error(
        `the model's input ${JSON.stringify(names[i])} has shape [${t.shape}]; it takes [null, ${width}]`,
      );
  });
  return { layout, order: names };
}

/**
 * The order of epoch `epoch`: a permutation that depends only on (seed, epoch), so a resumed
 * attempt replays exactly the batches the lost one would have seen.
 */
export function epochOrder(count: number, seed: number, epoch: number): Uint32Array {
  return seededPermutation(count, `gantry:${seed}:${epoch}`);
}

/**
 * Reusable memory for the batches of a training loop. A fresh Float32Array per batch (400 KB for
 * 128 Fashion-MNIST images) is external memory V8 must account for, and at hundreds of steps a
 * second that churn keeps its garbage-collector threads busy on the very cores training needs.
 * A batch built from it is valid until the next one is built.
 */
export class BatchScratch {
  private pixels = new Float32Array(0);
  private labels = new Int32Array(0);
  private values = new Float32Array(0);

  /** Views of `count` examples' room, growing the buffers when needed. */
  take(count: number, size: number): { pixels: Float32Array; labels: Int32Array; values: Float32Array } {
    if (this.pixels.length < count * size) this.pixels = new Float32Array(count * size);
    if (this.labels.length < count) this.labels = new Int32Array(count);
    if (this.values.length < count) this.values = new Float32Array(count);
    return {
      pixels: this.pixels.subarray(0, count * size),
      labels: this.labels.subarray(0, count),
      values: this.values.subarray(0, count),
    };
  }
}

/** The named inputs of `rows` encoded examples, as tensors in the model's input order. */
function feedTensors(feed: InputFeed, encoded: Float32Array, rows: number): tfType.Tensor[] {
  const parts = splitEncoded(feed.layout, encoded, rows);
  const widths = new Map(feed.layout.inputs.map((i) => [i.name, i.width]));
  return feed.order.map((name) => tf.tensor2d(parts.get(name)!, [rows, widths.get(name)!]));
}

/**
 * Gathers the examples at `indices` into float32 inputs of `featureShape` and targets: one-hot
 * labels for a classification, the values as [n, 1] for a regression. Into `scratch`'s memory when
 * given (then `labels` and `values` are only valid until its next batch). `labels` holds the class
 * indices (classification), `values` the targets as float32 (regression). With a `feed` (a model with several
 * inputs) `xs` is the named inputs, in the model's order.
 */
export function batchTensors(
  examples: Examples,
  indices: ArrayLike<number>,
  featureShape: number[],
  numClasses: number,
  scratch?: BatchScratch,
  task: Task = 'classification',
  feed?: InputFeed,
): { xs: tfType.Tensor | tfType.Tensor[]; ys: tfType.Tensor2D; labels: Int32Array; values: Float32Array } {
  const size = featureShape.reduce((a, b) => a * b, 1);
  const { pixels, labels, values } = scratch
    ? scratch.take(indices.length, size)
    : {
        pixels: new Float32Array(indices.length * size),
        labels: new Int32Array(indices.length),
        values: new Float32Array(indices.length),
      };
  for (let b = 0; b < indices.length; b++) {
    const index = indices[b]!;
    const source = examples.images.subarray(index * size, (index + 1) * size);
    pixels.set(source, b * size);
    if (task === 'regression') values[b] = examples.labels[index]!;
    else labels[b] = examples.labels[index]!;
  }
  const xs = feed ? feedTensors(feed, pixels, indices.length) : tf.tensor(pixels, [indices.length, ...featureShape]);
  const ys =
    task === 'regression'
      ? tf.tensor2d(values, [indices.length, 1])
      : tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses) as tfType.Tensor2D);
  return { xs, ys, labels, values };
}
