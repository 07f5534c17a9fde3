import { describe, expect, it } from 'vitest';
import { computeStatistics, DatasetStatisticsSchema } from '../../data/statistics';

describe('computeStatistics', () => {
  it('matches a direct two-pass computation on a small array', () => {
    // 4 examples of 3 pixels each, 3 classes.
    const pixels = [0, 255, 10, 20, 30, 40, 100, 100, 100, 7, 8, 250];
    const labelList = [2, 0, 2, 2];
    const stats = computeStatistics(Uint8Array.from(pixels), Uint8Array.from(labelList), 3);

    const mean = pixels.reduce((a, b) => a + b, 0) / pixels.length;
    const std = Math.sqrt(pixels.reduce((a, b) => a + (b - mean) ** 2, 0) / pixels.length);
    expect(stats.count).toBe(4);
    expect(stats.pixelMean).toBeCloseTo(mean, 10);
    expect(stats.pixelStd).toBeCloseTo(std, 10);
    expect(stats.labelHistogram).toEqual([1, 0, 3]);
    expect(stats.labelDistribution).toEqual([0.25, 0, 0.75]);
    expect(DatasetStatisticsSchema.parse(JSON.parse(JSON.stringify(stats)))).toEqual(stats);
  });

  it('gives zeros, not NaN, for an empty split', () => {
    const stats = computeStatistics(new Uint8Array(0), new Uint8Array(0), 2);
    expect(stats).toEqual({ count: 0, pixelMean: 0, pixelStd: 0, labelHistogram: [0, 0], labelDistribution: [0, 0] });
  });

  it('refuses labels outside the class range and ragged image data', () => {
    expect(() => computeStatistics(new Uint8Array(4), Uint8Array.from([0, 5]), 3)).toThrow(/label 5 at index 1/);
    expect(() => computeStatistics(new Uint8Array(5), Uint8Array.from([0, 1]), 3)).toThrow(/divide evenly/);
  });
});
