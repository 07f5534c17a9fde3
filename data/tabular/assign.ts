import type { SplitName } from '../split';

/**
 * The split of row `index` from a seeded hash of the index alone, so both ingest passes (and every rerun with the
 * same seed) agree without holding a permutation of the file in memory. test gets `testFraction` of the rows,
 * validation `validationFraction` of the rest, train the remainder.
 */
export function splitOfRow(index: number, seed: number, testFraction: number, validationFraction: number): SplitName {
  const u = hashUnit(index, seed);
  if (u < testFraction) return 'test';
  return u < testFraction + (1 - testFraction) * validationFraction ? 'validation' : 'train';
}

/** A uniform number in [0, 1) from (index, seed): murmur3's 32-bit finaliser over both. */
export function hashUnit(index: number, seed: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ index;
  h ^= Math.floor(index / 0x1_0000_0000); // indices past 2^32 still differ
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 0x1_0000_0000;
}
