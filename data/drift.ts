import { z } from 'zod';
import { DatasetStatisticsSchema, type DatasetStatistics } from './statistics';

/**
 * When the data a pipeline trains on changes shape between runs, the report says so and why.
 * The defaults are tuned so that two random subsets of a few thousand Fashion-MNIST images do not
 * trip them (sampling noise alone gives JS ≈ 0.002 and mean shifts ≈ 0.01 std at n = 2,000),
 * while a visibly different dataset does.
 */
export const DriftThresholdsSchema = z.object({
  /** |mean change| in units of the previous pixel std. */
  maxPixelMeanShift: z.number().nonnegative().default(0.1),
  /** current std / previous std must stay within [1/x, x]. */
  maxPixelStdRatio: z.number().min(1).default(1.1),
  /** Jensen-Shannon divergence (base 2, so in [0, 1]) between label distributions. */
  maxLabelJsDivergence: z.number().nonnegative().default(0.01),
  /** Largest absolute change of any one class's share (0.05 = 5 percentage points). */
  maxLabelShareChange: z.number().nonnegative().default(0.05),
});
export type DriftThresholds = z.infer<typeof DriftThresholdsSchema>;
export const DEFAULT_DRIFT_THRESHOLDS: DriftThresholds = DriftThresholdsSchema.parse({});

export const DriftMetricsSchema = z.object({
  pixelMeanShift: z.number().nonnegative(),
  pixelStdRatio: z.number().nonnegative(),
  labelDistributionJsDivergence: z.number().nonnegative(),
  maxLabelShareChange: z.number().nonnegative(),
});
export type DriftMetrics = z.infer<typeof DriftMetricsSchema>;

export const DriftReportSchema = z.object({
  /** Fingerprint of the dataset compared against; null on the first run. */
  previousFingerprint: z.string().nullable(),
  drifted: z.boolean(),
  /** null when there was nothing to compare with. */
  metrics: DriftMetricsSchema.nullable(),
  thresholds: DriftThresholdsSchema,
  /** One sentence per breached threshold (or why nothing was compared). Empty when all is well. */
  reasons: z.array(z.string()),
});
export type DriftReport = z.infer<typeof DriftReportSchema>;

/** What a run leaves behind for the next one to compare with. */
export const StatisticsBaselineSchema = z.object({
  fingerprint: z.string(),
  statistics: DatasetStatisticsSchema,
});
export type StatisticsBaseline = z.infer<typeof StatisticsBaselineSchema>;

/** Keeps ratios and shifts finite (JSON has no Infinity) for a degenerate, constant-pixel dataset. */
const STD_FLOOR = 1e-6;

/** Jensen-Shannon divergence in bits; vectors of different length are padded with zeros. */
export function jensenShannonDivergence(p: readonly number[], q: readonly number[]): number {
  const length = Math.max(p.length, q.length);
  let divergence = 0;
  for (let i = 0; i < length; i++) {
    const pi = p[i] ?? 0;
    const qi = q[i] ?? 0;
    const mi = (pi + qi) / 2;
    if (pi > 0) divergence += 0.5 * pi * Math.log2(pi / mi);
    if (qi > 0) divergence += 0.5 * qi * Math.log2(qi / mi);
  }
  // Rounding can leave a -1e-17 for identical inputs.
  return Math.max(0, divergence);
}

function fixed(value: number, digits = 4): string {
  return Number(value.toFixed(digits)).toString();
}

export function compareStatistics(
  previous: StatisticsBaseline | null,
  current: DatasetStatistics,
  thresholds: Partial<DriftThresholds> = {},
): DriftReport {
  const limits = DriftThresholdsSchema.parse(thresholds);
  if (previous === null) {
    return {
      previousFingerprint: null,
      drifted: false,
      metrics: null,
      thresholds: limits,
      reasons: ['no previous statistics'],
    };
  }
  const before = previous.statistics;
  const p = before.labelDistribution;
  const q = current.labelDistribution;
  let maxLabelShareChange = 0;
  let maxChangeClass = 0;
  for (let i = 0; i < Math.max(p.length, q.length); i++) {
    const change = Math.abs((q[i] ?? 0) - (p[i] ?? 0));
    if (change > maxLabelShareChange) {
      maxLabelShareChange = change;
      maxChangeClass = i;
    }
  }
  const metrics: DriftMetrics = {
    pixelMeanShift: Math.abs(current.pixelMean - before.pixelMean) / Math.max(before.pixelStd, STD_FLOOR),
    pixelStdRatio: Math.max(current.pixelStd, STD_FLOOR) / Math.max(before.pixelStd, STD_FLOOR),
    labelDistributionJsDivergence: jensenShannonDivergence(p, q),
    maxLabelShareChange,
  };

  const reasons: string[] = [];
  if (p.length !== q.length) {
    reasons.push(`number of classes changed from ${p.length} to ${q.length}`);
  }
  if (metrics.pixelMeanShift > limits.maxPixelMeanShift) {
    reasons.push(
      `pixelMeanShift ${fixed(metrics.pixelMeanShift)} std exceeds ${limits.maxPixelMeanShift} ` +
        `(mean ${fixed(before.pixelMean, 2)} -> ${fixed(current.pixelMean, 2)}, previous std ` +
        `${fixed(before.pixelStd, 2)})`,
    );
  }
  if (metrics.pixelStdRatio > limits.maxPixelStdRatio || metrics.pixelStdRatio < 1 / limits.maxPixelStdRatio) {
    reasons.push(
      `pixelStdRatio ${fixed(metrics.pixelStdRatio)} is outside [${fixed(1 / limits.maxPixelStdRatio)}, ` +
        `${limits.maxPixelStdRatio}] ` +
        `(std ${fixed(before.pixelStd, 2)} -> ${fixed(current.pixelStd, 2)})`,
    );
  }
  if (metrics.labelDistributionJsDivergence > limits.maxLabelJsDivergence) {
    reasons.push(
      `labelDistributionJsDivergence ${fixed(metrics.labelDistributionJsDivergence)} exceeds ` +
        `${limits.maxLabelJsDivergence}`,
    );
  }
  if (metrics.maxLabelShareChange > limits.maxLabelShareChange) {
    reasons.push(
      `maxLabelShareChange ${fixed(metrics.maxLabelShareChange)} exceeds ${limits.maxLabelShareChange} ` +
        `(class ${maxChangeClass}: ${fixed(p[maxChangeClass] ?? 0)} -> ${fixed(q[maxChangeClass] ?? 0)})`,
    );
  }
  return {
    previousFingerprint: previous.fingerprint,
    drifted: reasons.length > 0,
    metrics,
    thresholds: limits,
    reasons,
  };
}
