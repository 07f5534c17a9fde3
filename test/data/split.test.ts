import { describe, expect, it } from 'vitest';
import { sampleIndices, seededPermutation, splitTrainValidation, takeExamples } from '../../data/split';

const sorted = (a: ArrayLike<number>) => Array.from(a).sort((x, y) => x - y);

describe('splitTrainValidation', () => {
  it('is a deterministic function of the seed', () => {
    const a = splitTrainValidation(1000, { seed: 42, validationFraction: 0.2 });
    const b = splitTrainValidation(1000, { seed: 42, validationFraction: 0.2 });
    expect(Array.from(a.train)).toEqual(Array.from(b.train));
    expect(Array.from(a.validation)).toEqual(Array.from(b.validation));
  });

  it('gives a different split for a different seed', () => {
    const a = splitTrainValidation(1000, { seed: 1, validationFraction: 0.2 });
    const b = splitTrainValidation(1000, { seed: 2, validationFraction: 0.2 });
    expect(sorted(a.validation)).not.toEqual(sorted(b.validation));
  });

  it('partitions every index exactly once, with the requested fraction in validation', () => {
    const { train, validation } = splitTrainValidation(1000, { seed: 3, validationFraction: 0.25 });
    expect(validation.length).toBe(250);
    expect(train.length).toBe(750);
    const all = sorted([...train, ...validation]);
    expect(all).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    const inValidation = new Set(validation);
    expect(Array.from(train).some((i) => inValidation.has(i))).toBe(false);
  });

  it('draws a limited pool as a reproducible random subset, not the first N', () => {
    const a = splitTrainValidation(60000, { seed: 9, validationFraction: 0.1, limit: 2000 });
    const b = splitTrainValidation(60000, { seed: 9, validationFraction: 0.1, limit: 2000 });
    expect(a.train.length).toBe(1800);
    expect(a.validation.length).toBe(200);
    expect(Array.from(a.train)).toEqual(Array.from(b.train));
    const pool = new Set([...a.train, ...a.validation]);
    expect(pool.size).toBe(2000);
    expect(Math.max(...pool)).toBeGreaterThan(2000); // spread over the whole set
  });

  it('keeps at least one example on each side and refuses a pool too small to split', () => {
    const tiny = splitTrainValidation(10, { seed: 0, validationFraction: 0.01 });
    expect(tiny.validation.length).toBe(1);
    expect(tiny.train.length).toBe(9);
    expect(() => splitTrainValidation(1, { seed: 0, validationFraction: 0.5 })).toThrow(/at least 2 examples/);
    expect(() => splitTrainValidation(10, { seed: 0, validationFraction: 1 })).toThrow(/validationFraction/);
  });
});

describe('seededPermutation and sampleIndices', () => {
  it('permutes 0..n-1', () => {
    const p = seededPermutation(500, 'x');
    expect(sorted(p)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(Array.from(p)).not.toEqual(Array.from({ length: 500 }, (_, i) => i));
  });

  it('keeps everything, in order, without a limit and a sorted seeded subset with one', () => {
    expect(Array.from(sampleIndices(5, 1))).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(sampleIndices(5, 1, 10))).toEqual([0, 1, 2, 3, 4]);
    const s = Array.from(sampleIndices(10000, 4, 500));
    expect(s).toHaveLength(500);
    expect(new Set(s).size).toBe(500);
    expect(s).toEqual(sorted(s));
    expect(Array.from(sampleIndices(10000, 4, 500))).toEqual(s);
    expect(Array.from(sampleIndices(10000, 5, 500))).not.toEqual(s);
  });
});

describe('takeExamples', () => {
  it('gathers whole examples and their labels in index order', () => {
    const images = Uint8Array.from([10, 11, 20, 21, 30, 31]);
    const labels = Uint8Array.from([1, 2, 3]);
    const taken = takeExamples(images, labels, [2, 0], 2);
    expect(Array.from(taken.images)).toEqual([30, 31, 10, 11]);
    expect(Array.from(taken.labels)).toEqual([3, 1]);
    expect(taken.count).toBe(2);
  });
});
