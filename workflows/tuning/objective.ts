import type { EpochMetrics } from '../../training/checkpoint';

/**
 * The value a trial is ranked by after an epoch: the validation loss, or a task metric of the validation split
 * (accuracy falls back to the epoch's valAccuracy, which every classifier's epoch reports). Undefined when the
 * epoch did not measure it (a regression metric of a classifier).
 */
export function objectiveValue(metrics: EpochMetrics, metric: string): number | undefined {
  if (metric === 'loss') return metrics.valLoss;
  const value = metrics.valMetrics?.[metric as keyof NonNullable<EpochMetrics['valMetrics']>];
  if (value !== undefined) return value;
  return metric === 'accuracy' ? metrics.valAccuracy : undefined;
}
