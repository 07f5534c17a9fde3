import { z } from 'zod';
import {
  DatasetStatisticsSchema,
  type DatasetStatistics,
  type FeatureStatistics,
  type NumericSummary,
} from './statistics';

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
  /**
   * Tabular features (and a regression label): |mean change| in units of the previous std. Two random halves of a
   * few hundred rows differ by about 0.1 from sampling alone.
   */
  maxFeatureMeanShift: z.number().nonnegative().default(0.25),
  /** Tabular categorical and boolean features: Jensen-Shannon divergence (bits) of the value distributions. */
  maxFeatureJsDivergence: z.number().nonnegative().default(0.05),
});
export type DriftThresholds = z.infer<typeof DriftThresholdsSchema>;
export const DEFAULT_DRIFT_THRESHOLDS: DriftThresholds = DriftThresholdsSchema.parse({});

export const DriftMetricsSchema = z.object({
  /** Images only. */
  pixelMeanShift: z.number().nonnegative().optional(),
  pixelStdRatio: z.number().nonnegative().optional(),
  labelDistributionJsDivergence: z.number().nonnegative(),
  maxLabelShareChange: z.number().nonnegative(),
});
export type DriftMetrics = z.infer<typeof DriftMetricsSchema>;

/** One tabular feature (or the regression label) against the previous run's. */
export const FeatureDriftSchema = z.object({
  name: z.string(),
  kind: z.enum(['numeric', 'categorical', 'boolean', 'label']),
  metric: z.enum(['meanShift', 'jsDivergence']),
  value: z.number().nonnegative(),
  threshold: z.number().nonnegative(),
  drifted: z.boolean(),
});
export type FeatureDrift = z.infer<typeof FeatureDriftSchema>;

export const DriftReportSchema = z.object({
  /** Fingerprint of the dataset compared against; null on the first run. */
  previousFingerprint: z.string().nullable(),
  drifted: z.boolean(),
  /** null when there was nothing to compare with. */
  metrics: DriftMetricsSchema.nullable(),
  thresholds: DriftThresholdsSchema,
  /** One sentence per breached threshold (or why nothing was compared). Empty when all is well. */
  reasons: z.array(z.string()),
  /** Tabular sources: every feature present in both runs, drifted or not. */
  features: z.array(FeatureDriftSchema).default([]),
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
      features: [],
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
  const metrics: DriftMetrics = { labelDistributionJsDivergence: jensenShannonDivergence(p, q), maxLabelShareChange };
  const pixels =
    before.pixelMean !== undefined &&
    before.pixelStd !== undefined &&
    current.pixelMean !== undefined &&
    current.pixelStd !== undefined
      ? {
          before: { mean: before.pixelMean, std: before.pixelStd },
          now: { mean: current.pixelMean, std: current.pixelStd },
        }
      : undefined;
  if (pixels) {
    metrics.pixelMeanShift = Math.abs(pixels.now.mean - pixels.before.mean) / Math.max(pixels.before.std, STD_FLOOR);
    metrics.pixelStdRatio = Math.max(pixels.now.std, STD_FLOOR) / Math.max(pixels.before.std, STD_FLOOR);
  }

  const reasons: string[] = [];
  if (p.length !== q.length) {
    reasons.push(`number of classes changed from ${p.length} to ${q.length}`);
  }
  if (pixels && metrics.pixelMeanShift !== undefined && metrics.pixelMeanShift > limits.maxPixelMeanShift) {
    reasons.push(
      `pixelMeanShift ${fixed(metrics.pixelMeanShift)} std exceeds ${limits.maxPixelMeanShift} ` +
        `(mean ${fixed(pixels.before.mean, 2)} -> ${fixed(pixels.now.mean, 2)}, previous std ` +
        `${fixed(pixels.before.std, 2)})`,
    );
  }
  const ratio = metrics.pixelStdRatio;
  if (pixels && ratio !== undefined && (ratio > limits.maxPixelStdRatio || ratio < 1 / limits.maxPixelStdRatio)) {
    reasons.push(
      `pixelStdRatio ${fixed(ratio)} is outside [${fixed(1 / limits.maxPixelStdRatio)}, ` +
        `${limits.maxPixelStdRatio}] ` +
        `(std ${fixed(pixels.before.std, 2)} -> ${fixed(pixels.now.std, 2)})`,
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
  const features = compareFeatures(before, current, limits);
  for (const feature of features) {
    if (feature.drifted) {
      reasons.push(
        `feature ${JSON.stringify(feature.name)}: ${feature.metric} ${fixed(feature.value)} exceeds ` +
          `${feature.threshold}`,
      );
    }
  }
  return {
    previousFingerprint: previous.fingerprint,
    drifted: reasons.length > 0,
    metrics,
    thresholds: limits,
    reasons,
    features,
  };
}

/** Drift of each tabular feature present in both runs (with the same kind), and of a regression label. */
export function compareFeatures(
  before: DatasetStatistics,
  current: DatasetStatistics,
  limits: DriftThresholds,
): FeatureDrift[] {
  const previous = new Map((before.features ?? []).map((feature) => [feature.name, feature]));
  const drifts: FeatureDrift[] = [];
  for (const feature of current.features ?? []) {
    const old = previous.get(feature.name);
    if (!old || old.kind !== feature.kind) continue; // a new or retyped column is an anomaly, not drift
    if (feature.kind === 'numeric' && old.kind === 'numeric') {
      drifts.push(meanShift(feature.name, 'numeric', old, feature, limits.maxFeatureMeanShift));
    } else if (feature.kind !== 'numeric' && old.kind !== 'numeric') {
      const value = jensenShannonDivergence(...alignedDistributions(old, feature));
      const threshold = limits.maxFeatureJsDivergence;
      drifts.push({
        name: feature.name,
        kind: feature.kind,
        metric: 'jsDivergence',
        value,
        threshold,
        drifted: value > threshold,
      });
    }
  }
  if (before.labelSummary && current.labelSummary) {
    drifts.push(meanShift('label', 'label', before.labelSummary, current.labelSummary, limits.maxFeatureMeanShift));
  }
  return drifts;
}

function meanShift(
  name: string,
  kind: 'numeric' | 'label',
  before: NumericSummary,
  now: NumericSummary,
  threshold: number,
): FeatureDrift {
  const value = Math.abs(now.mean - before.mean) / Math.max(before.std, STD_FLOOR);
  return { name, kind, metric: 'meanShift', value, threshold, drifted: value > threshold };
}

type Categorical = Exclude<FeatureStatistics, { kind: 'numeric' }>;

/**
 * The two runs' value shares over the union of their top values, plus one bucket for the values past the top lists
 * and one for missing values, so each vector sums to 1.
 */
function alignedDistributions(before: Categorical, now: Categorical): [number[], number[]] {
  const values = [...new Set([...before.top.map((t) => t.value), ...now.top.map((t) => t.value)])];
  const shares = (feature: Categorical): number[] => {
    const counts = new Map(feature.top.map((t) => [t.value, t.count]));
    const listed = feature.top.reduce((sum, t) => sum + t.count, 0);
    const total = Math.max(feature.count, 1);
    const other = Math.max(0, feature.count - feature.missing - listed);
    return [...values.map((value) => (counts.get(value) ?? 0) / total), other / total, feature.missing / total];
  };
  return [shares(before), shares(now)];
}
