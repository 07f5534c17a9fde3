import type { EvaluationSpecSchema } from '../pipelines/spec';
import type { ModelMetrics } from '../training/evaluate';
import type { z } from 'zod';

type Gate = z.output<typeof EvaluationSpecSchema>;

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

/** Accuracies are ratios of counts: a difference in the 12th decimal is float rounding, not a change. */
const ROUNDING = 1e-12;

/**
 * The blessing decision: absolute gates first, then the change gate against the champion (when
 * there is one). Every gate writes a reason, passed or not, so a decision can be audited later.
 */
export function decideBlessing(
  candidate: ModelMetrics,
  champion: { version: number; metrics: ModelMetrics } | null,
  gate: Gate,
): { blessed: boolean; reasons: string[] } {
  const reasons: string[] = [];
  let blessed = true;
  const check = (passed: boolean, reason: string) => {
    if (!passed) blessed = false;
    reasons.push(`${passed ? 'pass' : 'FAIL'}: ${reason}`);
  };

  check(
    candidate.accuracy >= gate.minAccuracy,
    `test accuracy ${pct(candidate.accuracy)} ${candidate.accuracy >= gate.minAccuracy ? '≥' : '<'} minimum ` +
      `${pct(gate.minAccuracy)}`,
  );
  if (gate.maxLoss !== undefined) {
    check(
      candidate.loss <= gate.maxLoss,
      `test loss ${candidate.loss.toFixed(4)} ${candidate.loss <= gate.maxLoss ? '≤' : '>'} maximum ${gate.maxLoss}`,
    );
  }
  if (champion) {
    const delta = candidate.accuracy - champion.metrics.accuracy;
    const sign = delta >= 0 ? '+' : '−';
    check(
      delta >= gate.minAccuracyDelta - ROUNDING,
      `accuracy change against champion v${champion.version} (${pct(champion.metrics.accuracy)}) is ` +
        `${sign}${(Math.abs(delta) * 100).toFixed(2)} points; ` +
        `the gate requires at least ` +
        `${gate.minAccuracyDelta >= 0 ? '+' : '−'}${(Math.abs(gate.minAccuracyDelta) * 100).toFixed(2)}`,
    );
  } else {
    reasons.push('pass: no champion yet, so only the absolute gates apply');
  }
  return { blessed, reasons };
}
