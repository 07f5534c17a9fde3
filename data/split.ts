import seedrandom from 'seedrandom';
import { z } from 'zod';
import { DatasetError } from './errors';

export const SPLIT_NAMES = ['train', 'validation', 'test'] as const;
export const SplitNameSchema = z.enum(SPLIT_NAMES);
export type SplitName = z.infer<typeof SplitNameSchema>;

/** Indices 0..count-1 in an order fixed by `seed` (Fisher-Yates over a seeded ARC4 stream). */
export function seededPermutation(count: number, seed: string): Uint32Array {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  const random = seedrandom(seed);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = order[i]!;
    order[i] = order[j]!;
    order[j] = swap;
  }
  return order;
}

export interface SplitOptions {
  seed: number;
  /** Share of the (limited) pool that goes to validation, in (0, 1). */
  validationFraction: number;
  /** Keep at most this many examples of the pool, chosen by the same seeded shuffle. */
  limit?: number;
}

export interface SplitIndices {
  train: Uint32Array;
  validation: Uint32Array;
}

/**
 * Splits `count` examples into train and validation. The pool is shuffled by seed, cut to `limit`,
 * and the first `validationFraction` of it becomes validation, so a limit picks a random but
 * reproducible subset and the same seed always yields the same split. Indices stay in shuffled
 * order: shards written from them then each hold a representative mix of classes, which matters
 * when data-parallel trainers each read different shards.
 */
export function splitTrainValidation(count: number, options: SplitOptions): SplitIndices {
  const { seed, validationFraction, limit } = options;
  if (!(validationFraction > 0 && validationFraction < 1)) {
    throw new RangeError(`validationFraction must be in (0, 1), got ${validationFraction}`);
  }
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new RangeError(`limit must be a positive integer, got ${limit}`);
  }
  const pool = seededPermutation(count, `gantry/split/${seed}`).subarray(0, Math.min(count, limit ?? count));
  if (pool.length < 2) {
    throw new RangeError(`need at least 2 examples to split into train and validation, have ${pool.length}`);
  }
  // Both sides get at least one example, whatever the rounding.
  const validationCount = Math.min(pool.length - 1, Math.max(1, Math.round(pool.length * validationFraction)));
  return { validation: pool.slice(0, validationCount), train: pool.slice(validationCount) };
}

/**
 * A reproducible subset of at most `limit` indices, in original order (for the test set: with no
 * limit it stays exactly the published test set; with one, a seeded sample rather than the first
 * N, because some sources are sorted by class).
 */
export function sampleIndices(count: number, seed: number, limit?: number): Uint32Array {
  if (limit === undefined || limit >= count) {
    const all = new Uint32Array(count);
    for (let i = 0; i < count; i++) all[i] = i;
    return all;
  }
  return seededPermutation(count, `gantry/sample/${seed}`).slice(0, limit).sort();
}

/** Copies the chosen examples (and their labels) into new contiguous arrays. */
export function takeExamples(
  images: Uint8Array,
  labels: Uint8Array,
  indices: ArrayLike<number>,
  exampleBytes: number,
): { images: Uint8Array; labels: Uint8Array; count: number } {
  const count = indices.length;
  const outImages = new Uint8Array(count * exampleBytes);
  const outLabels = new Uint8Array(count);
  for (let k = 0; k < count; k++) {
    const index = indices[k]!;
    outImages.set(images.subarray(index * exampleBytes, (index + 1) * exampleBytes), k * exampleBytes);
    outLabels[k] = labels[index]!;
  }
  return { images: outImages, labels: outLabels, count };
}

/**
 * Holds `fraction` of `count` examples out as the test split, for sources without one of their own: a seeded
 * shuffle picks them (at least one each side). Both index lists come back in ascending order, so the split
 * depends only on the seed and the count, not on how the source ordered its files.
 */
export function holdOutTest(count: number, fraction: number, seed: number): { train: Uint32Array; test: Uint32Array } {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`testFraction must be in (0, 1), got ${fraction}`);
  if (count < 2) throw new RangeError(`need at least 2 examples to hold out a test split, have ${count}`);
  const testCount = Math.min(count - 1, Math.max(1, Math.round(count * fraction)));
  const order = seededPermutation(count, `gantry/test-split/${seed}`);
  return { test: order.slice(0, testCount).sort(), train: order.slice(testCount).sort() };
}

/** Splits a source's only split into train and a seeded held-out test split (see holdOutTest); `what` names it. */
export function holdOutTestSplit(
  all: { images: Uint8Array; labels: Uint8Array; count: number },
  exampleBytes: number,
  options: { testFraction: number; seed: number },
  what: string,
): { train: { images: Uint8Array; labels: Uint8Array; count: number }; test: typeof all } {
  if (all.count < 2) {
    throw new DatasetError(what, `holds ${all.count} examples; at least 2 are needed to hold out a test split`);
  }
  const indices = holdOutTest(all.count, options.testFraction, options.seed);
  return {
    train: takeExamples(all.images, all.labels, indices.train, exampleBytes),
    test: takeExamples(all.images, all.labels, indices.test, exampleBytes),
  };
}
