import { describe, expect, it } from 'vitest';
import { compareStatistics, DriftReportSchema, jensenShannonDivergence } from '../../data/drift';
import type { DatasetStatistics } from '../../data/statistics';

function stats(histogram: number[], pixelMean = 73, pixelStd = 90): DatasetStatistics {
  const count = histogram.reduce((a, b) => a + b, 0);
  return { count, pixelMean, pixelStd, labelHistogram: histogram, labelDistribution: histogram.map((n) => n / count) };
}

const uniform = stats(Array(10).fill(100));
const baseline = { fingerprint: 'a'.repeat(64), statistics: uniform };

/** Entropy in bits: JS(P, Q) = H((P+Q)/2) - (H(P) + H(Q)) / 2, an independent route to the value. */
const entropy = (p: number[]) => -p.filter((x) => x > 0).reduce((s, x) => s + x * Math.log2(x), 0);

describe('jensenShannonDivergence', () => {
  it('is 0 for identical, 1 for disjoint, and matches the entropy form otherwise', () => {
    expect(jensenShannonDivergence([0.3, 0.7], [0.3, 0.7])).toBe(0);
    expect(jensenShannonDivergence([1, 0], [0, 1])).toBeCloseTo(1, 12);
    const p = [0.5, 0.5];
    const q = [1, 0];
    const m = [0.75, 0.25];
    expect(jensenShannonDivergence(p, q)).toBeCloseTo(entropy(m) - (entropy(p) + entropy(q)) / 2, 12);
  });
});

describe('compareStatistics', () => {
  it('reports a first run as not drifted', () => {
    const report = compareStatistics(null, uniform);
    expect(report).toMatchObject({
      previousFingerprint: null,
      drifted: false,
      metrics: null,
      reasons: ['no previous statistics'],
    });
  });

  it('finds no drift between identical statistics', () => {
    const report = compareStatistics(baseline, uniform);
    expect(report.drifted).toBe(false);
    expect(report.reasons).toEqual([]);
    expect(report.previousFingerprint).toBe(baseline.fingerprint);
    expect(report.metrics).toEqual({
      pixelMeanShift: 0,
      pixelStdRatio: 1,
      labelDistributionJsDivergence: 0,
      maxLabelShareChange: 0,
    });
  });

  it('flags a shifted label distribution, naming the metrics', () => {
    // Class 0 goes from 10% to 30% of the data.
    const shifted = stats([300, ...Array(9).fill(700 / 9)]);
    const report = compareStatistics(baseline, shifted);
    expect(report.drifted).toBe(true);
    expect(report.metrics!.maxLabelShareChange).toBeCloseTo(0.2, 10);
    expect(report.metrics!.labelDistributionJsDivergence).toBeGreaterThan(0.01);
    expect(report.reasons.some((r) => r.startsWith('labelDistributionJsDivergence'))).toBe(true);
    expect(report.reasons.some((r) => r.startsWith('maxLabelShareChange 0.2 exceeds 0.05 (class 0: 0.1 -> 0.3)'))).toBe(
      true,
    );
    expect(report.reasons.some((r) => r.startsWith('pixel'))).toBe(false);
  });

  it('flags pixel mean and spread changes in units of the previous std', () => {
    const brighter = stats(Array(10).fill(100), 73 + 18, 90 * 1.5);
    const report = compareStatistics(baseline, brighter);
    expect(report.metrics!.pixelMeanShift).toBeCloseTo(0.2, 10);
    expect(report.metrics!.pixelStdRatio).toBeCloseTo(1.5, 10);
    expect(report.reasons).toHaveLength(2);
    expect(report.reasons[0]).toMatch(/^pixelMeanShift 0.2 std exceeds 0.1/);
    expect(report.reasons[1]).toMatch(/^pixelStdRatio 1.5 is outside/);
  });

  it('honours custom thresholds and stays plain JSON', () => {
    const slightlyBrighter = stats(Array(10).fill(100), 73 + 18);
    expect(compareStatistics(baseline, slightlyBrighter, { maxPixelMeanShift: 0.5 }).drifted).toBe(false);
    const report = compareStatistics(baseline, slightlyBrighter);
    expect(DriftReportSchema.parse(JSON.parse(JSON.stringify(report)))).toEqual(report);
  });

  it('notices a change in the number of classes', () => {
    const report = compareStatistics(baseline, stats(Array(11).fill(100)));
    expect(report.drifted).toBe(true);
    expect(report.reasons[0]).toBe('number of classes changed from 10 to 11');
  });
});
