import { z } from 'zod';

/**
 * Summary statistics of one split: small, plain numbers, so they travel in the DatasetRef and are
 * kept between runs to detect drift.
 */
/** A numeric column (or a regression label) of one split: its present values' moments and range. */
export const NumericSummarySchema = z.object({
  mean: z.number(),
  /** Population standard deviation. */
  std: z.number().nonnegative(),
  min: z.number(),
  max: z.number(),
});
export type NumericSummary = z.infer<typeof NumericSummarySchema>;

/** Most frequent values of a categorical or boolean column, with their counts. */
export const MAX_TOP_VALUES = 50;
const TopValuesSchema = z.array(z.object({ value: z.string(), count: z.number().int().nonnegative() }));

const featureCounts = {
  name: z.string(),
  /** Rows of the split. */
  count: z.number().int().nonnegative(),
  /** Rows whose value was missing (before imputation). */
  missing: z.number().int().nonnegative(),
};

/** One column of a tabular split (tabular sources only). */
export const FeatureStatisticsSchema = z.discriminatedUnion('kind', [
  z.object({ ...featureCounts, kind: z.literal('numeric'), ...NumericSummarySchema.shape }),
  z.object({
    ...featureCounts,
    kind: z.enum(['categorical', 'boolean']),
    /** Distinct present values (a lower bound when the column had more than Gantry counts). */
    distinct: z.number().int().nonnegative(),
    /** At most MAX_TOP_VALUES, most frequent first; the rest of the present values are `count - missing - Σ`. */
    top: TopValuesSchema.max(MAX_TOP_VALUES),
  }),
]);
export type FeatureStatistics = z.infer<typeof FeatureStatisticsSchema>;

export const DatasetStatisticsSchema = z.object({
  count: z.number().int().nonnegative(),
  /** Images: mean pixel value over every pixel of every example, on the raw 0..255 scale. */
  pixelMean: z.number().min(0).max(255).optional(),
  /** Images: population standard deviation of pixel values, 0..255 scale. */
  pixelStd: z.number().nonnegative().optional(),
  /** Examples per class, index = label (a regression has one bin: every example). */
  labelHistogram: z.array(z.number().int().nonnegative()),
  /** labelHistogram / count (all zeros for an empty split). */
  labelDistribution: z.array(z.number().min(0).max(1)),
  /** Tabular sources: one entry per feature column, in the source's column order. */
  features: z.array(FeatureStatisticsSchema).max(10_000).optional(),
  /** Regression: the label's values. */
  labelSummary: NumericSummarySchema.optional(),
});
export type DatasetStatistics = z.infer<typeof DatasetStatisticsSchema>;

export function computeStatistics(images: Uint8Array, labels: Uint8Array, numClasses: number): DatasetStatistics {
  const count = labels.length;
  if (count > 0 && images.length % count !== 0) {
    throw new RangeError(`${images.length} image bytes do not divide evenly into ${count} examples`);
  }

  // A 256-bin histogram first: integer counting is exact and fast, and mean and variance then
  // come from 256 terms instead of accumulating rounding error over 47 million floats.
  const pixelCounts = new Float64Array(256);
  for (let i = 0; i < images.length; i++) pixelCounts[images[i]!]!++;
  let sum = 0;
  for (let v = 0; v < 256; v++) sum += v * pixelCounts[v]!;
  const pixelMean = images.length > 0 ? sum / images.length : 0;
  let squaredDeviations = 0;
  for (let v = 0; v < 256; v++) squaredDeviations += pixelCounts[v]! * (v - pixelMean) ** 2;
  const pixelStd = images.length > 0 ? Math.sqrt(squaredDeviations / images.length) : 0;

  const labelHistogram = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < count; i++) {
    const label = labels[i]!;
    if (label >= numClasses) throw new RangeError(`label ${label} at index ${i} is outside [0, ${numClasses})`);
    labelHistogram[label]!++;
  }
  const labelDistribution = labelHistogram.map((n) => (count > 0 ? n / count : 0));

  return { count, pixelMean, pixelStd, labelHistogram, labelDistribution };
}
