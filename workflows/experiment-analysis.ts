import { errorFunction } from 'simple-statistics';

/**
 * The A/B decision: which arm's online accuracy (labelled predictions from feedback) is better
 * beyond chance. The best arm is compared with every other by a two-sided two-proportion z-test,
 * at `alpha` divided by the number of comparisons (Bonferroni), and wins only if it beats them
 * all. Pure, so the experiment workflow replays to the same verdict.
 */

export interface ArmOutcome {
  version: number;
  labelled: number;
  correct: number;
}

export interface Comparison {
  against: number;
  z: number;
  pValue: number;
  significant: boolean;
}

export interface ExperimentVerdict {
  winner: number | null;
  /** In words, e.g. "v2 wins: 81.3 % vs 9.8 % (p = 1e-40)" or "no significant difference". */
  summary: string;
  best: number | null;
  alpha: number;
  comparisons: Comparison[];
  arms: (ArmOutcome & { accuracy: number | null })[];
}

const normalCdf = (z: number) => 0.5 * (1 + errorFunction(z / Math.SQRT2));

/** Two-sided two-proportion z-test with the pooled proportion. */
export function twoProportionTest(
  a: { correct: number; labelled: number },
  b: { correct: number; labelled: number },
): { z: number; pValue: number } {
  const p1 = a.correct / a.labelled;
  const p2 = b.correct / b.labelled;
  const pooled = (a.correct + b.correct) / (a.labelled + b.labelled);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / a.labelled + 1 / b.labelled));
  if (se === 0) return { z: 0, pValue: 1 };
  const z = (p1 - p2) / se;
  return { z, pValue: Math.min(1, 2 * (1 - normalCdf(Math.abs(z)))) };
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

export function decideExperiment(
  arms: ArmOutcome[],
  options: { alpha: number; minFeedback: number },
): ExperimentVerdict {
  const withAccuracy = arms.map((a) => ({ ...a, accuracy: a.labelled > 0 ? a.correct / a.labelled : null }));
  const verdict = (
    winner: number | null,
    summary: string,
    best: number | null,
    comparisons: Comparison[] = [],
  ): ExperimentVerdict => ({
    winner,
    summary,
    best,
    alpha: options.alpha,
    comparisons,
    arms: withAccuracy,
  });
  const short = withAccuracy.filter((a) => a.labelled < options.minFeedback);
  if (short.length) {
    return verdict(
      null,
      `no winner: too little feedback (${short.map((a) => `v${a.version} ${a.labelled}`).join(', ')} of ` +
        `${options.minFeedback} labelled predictions needed per arm)`,
      null,
    );
  }
  const best = [...withAccuracy].sort((a, b) => b.accuracy! - a.accuracy! || a.version - b.version)[0]!;
  const corrected = options.alpha / Math.max(1, arms.length - 1);
  const comparisons = withAccuracy
    .filter((a) => a.version !== best.version)
    .map((other) => {
      const { z, pValue } = twoProportionTest(best, other);
      return { against: other.version, z, pValue, significant: pValue < corrected };
    });
  const accuracies = withAccuracy.map((a) => `v${a.version} ${pct(a.accuracy!)} of ${a.labelled}`).join(' vs ');
  const worstP = Math.max(...comparisons.map((c) => c.pValue));
  if (comparisons.every((c) => c.significant)) {
    return verdict(
      best.version,
      `v${best.version} wins: ${accuracies} (two-proportion z-test, p ≤ ${worstP.toExponential(2)} < ${corrected})`,
      best.version,
      comparisons,
    );
  }
  return verdict(
    null,
    `no significant difference: ${accuracies} (p = ${worstP.toPrecision(3)} ≥ ${corrected})`,
    best.version,
    comparisons,
  );
}
