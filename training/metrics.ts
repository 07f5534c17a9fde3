/**
 * Which metrics each task measures (and so which an evaluation gate may name: pipelines/spec.ts
 * re-exports these names, since pipelines imports training, not the other way round).
 */
export const TASK_METRICS = {
  classification: ['accuracy', 'auc', 'logLoss'],
  regression: ['rmse', 'mae', 'r2'],
} as const;
export const METRIC_NAMES = [...TASK_METRICS.classification, ...TASK_METRICS.regression] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** Higher is better for these; lower for the rest (losses and errors). */
export const HIGHER_IS_BETTER: ReadonlySet<MetricName> = new Set(['accuracy', 'auc', 'r2']);

export function taskOfMetric(metric: MetricName): 'classification' | 'regression' {
  return (TASK_METRICS.classification as readonly string[]).includes(metric) ? 'classification' : 'regression';
}

/**
 * The task metrics as plain functions of predictions and targets, so they can be checked by hand
 * and against independent definitions (test/metrics.test.ts). Evaluation (evaluate.ts) feeds them.
 */

/**
 * ROC AUC of `scores` for the examples where `positive` is true: the probability that a random
 * positive scores above a random negative, ties counting half (the Mann–Whitney U statistic from
 * average ranks). Undefined when one of the two groups is empty.
 */
export function rocAuc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number | undefined {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let positives = 0;
  let positiveRankSum = 0;
  for (let start = 0; start < n; ) {
    let end = start + 1;
    while (end < n && scores[order[end]!] === scores[order[start]!]) end++;
    // Ranks start..end-1 (1-based: start+1..end) tie: each gets their mean.
    const rank = (start + 1 + end) / 2;
    for (let k = start; k < end; k++) {
      if (positive[order[k]!]) {
        positives += 1;
        positiveRankSum += rank;
      }
    }
    start = end;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return undefined;
  return (positiveRankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/**
 * AUC of a classifier from its class probabilities (`probabilities[i * numClasses + c]`): binary —
 * the ROC AUC of class 1's probability; multi-class — the macro mean of each class against the rest
 * over the classes with both positives and negatives. Undefined when no class has both.
 */
export function classifierAuc(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
  numClasses: number,
): number | undefined {
  const n = labels.length;
  const column = (c: number) => Float64Array.from({ length: n }, (_, i) => probabilities[i * numClasses + c]!);
  const is = (c: number) => Array.from({ length: n }, (_, i) => labels[i] === c);
  if (numClasses === 2) return rocAuc(column(1), is(1));
  const aucs: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    const auc = rocAuc(column(c), is(c));
    if (auc !== undefined) aucs.push(auc);
  }
  return aucs.length ? aucs.reduce((a, b) => a + b, 0) / aucs.length : undefined;
}

export interface RegressionMetrics {
  mse: number;
  rmse: number;
  mae: number;
  /** 1 − SS_res / SS_tot; with constant targets 1 for a perfect fit, else 0 (as scikit-learn). */
  r2: number;
}

export function regressionMetrics(predicted: ArrayLike<number>, actual: ArrayLike<number>): RegressionMetrics {
  const n = actual.length;
  if (predicted.length !== n) throw new RangeError(`${predicted.length} predictions for ${n} targets`);
  if (n === 0) return { mse: 0, rmse: 0, mae: 0, r2: 0 };
  let mean = 0;
  for (let i = 0; i < n; i++) mean += actual[i]!;
  mean /= n;
  let squared = 0;
  let absolute = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const error = predicted[i]! - actual[i]!;
    squared += error * error;
    absolute += Math.abs(error);
    total += (actual[i]! - mean) ** 2;
  }
  const mse = squared / n;
  return {
    mse,
    rmse: Math.sqrt(mse),
    mae: absolute / n,
    r2: total > 0 ? 1 - squared / total : squared === 0 ? 1 : 0,
  };
}
