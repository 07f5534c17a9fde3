import type { EvaluationSpecSchema } from '../pipelines/spec';
import type { ModelMetrics } from '../training/evaluate';
import { HIGHER_IS_BETTER, type MetricName } from '../training/metrics';
import type { z } from 'zod';

type Gate = z.output<typeof EvaluationSpecSchema>;
type MetricGate = Gate['gates'][number];

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

/** Accuracies are ratios of counts: a difference in the 12th decimal is float rounding, not a change. */
const ROUNDING = 1e-12;

/** How a metric's value reads in a reason: ratios as percentages, the rest to four decimals. */
function show(metric: MetricName, value: number): string {
  return metric === 'accuracy' ? pct(value) : value.toFixed(4);
}

/**
 * The blessing decision: absolute gates first, then the change gates against the champion (when
 * there is one). Every gate writes a reason, passed or not, so a decision can be audited later.
 *
 * A classifier is held to minAccuracy / maxLoss / minAccuracyDelta and to `gates`; a regression to
 * `gates` alone, and when none of them compares with the champion, to an RMSE no worse than the
 * champion's.
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
  const regression = candidate.task === 'regression';

  if (!regression) {
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
  }
  for (const metricGate of gate.gates) absoluteGate(candidate, metricGate, check);

  if (champion) {
    if (!regression) {
      const delta = candidate.accuracy - champion.metrics.accuracy;
      const sign = delta >= 0 ? '+' : '−';
      check(
        delta >= gate.minAccuracyDelta - ROUNDING,
        `accuracy change against champion v${champion.version} (${pct(champion.metrics.accuracy)}) is ` +
          `${sign}${(Math.abs(delta) * 100).toFixed(2)} points; ` +
          `the gate requires at least ` +
          `${gate.minAccuracyDelta >= 0 ? '+' : '−'}${(Math.abs(gate.minAccuracyDelta) * 100).toFixed(2)}`,
      );
    }
    const changeGates = gate.gates.filter((g) => g.maxWorsening !== undefined);
    // A regression compared with nothing would replace a better champion: by default its RMSE may not be worse.
    if (regression && changeGates.length === 0) changeGates.push({ metric: 'rmse', maxWorsening: 0 });
    for (const metricGate of changeGates) changeGate(candidate, champion, metricGate, check);
  } else {
    reasons.push('pass: no champion yet, so only the absolute gates apply');
  }
  return { blessed, reasons };
}

type Check = (passed: boolean, reason: string) => void;

/** `min` / `max` of one metric gate; a metric the evaluation could not measure fails it. */
function absoluteGate(candidate: ModelMetrics, gate: MetricGate, check: Check): void {
  if (gate.min === undefined && gate.max === undefined) return;
  const value = candidate.metrics[gate.metric];
  if (value === undefined) {
    check(false, `test ${gate.metric} was not measured for this ${candidate.task}, so its gate cannot pass`);
    return;
  }
  if (gate.min !== undefined) {
    const passed = value >= gate.min;
    check(passed, `test ${gate.metric} ${show(gate.metric, value)} ${passed ? '≥' : '<'} minimum ${gate.min}`);
  }
  if (gate.max !== undefined) {
    const passed = value <= gate.max;
    check(passed, `test ${gate.metric} ${show(gate.metric, value)} ${passed ? '≤' : '>'} maximum ${gate.max}`);
  }
}

/** `maxWorsening` of one metric gate: how much worse than the champion's, in the metric's units, it may be. */
function changeGate(
  candidate: ModelMetrics,
  champion: { version: number; metrics: ModelMetrics },
  gate: MetricGate,
  check: Check,
): void {
  const value = candidate.metrics[gate.metric];
  const championValue = champion.metrics.metrics[gate.metric];
  if (value === undefined || championValue === undefined) {
    check(false, `${gate.metric} against champion v${champion.version}: not measured for both models`);
    return;
  }
  const worsening = HIGHER_IS_BETTER.has(gate.metric) ? championValue - value : value - championValue;
  const allowed = gate.maxWorsening ?? 0;
  check(
    worsening <= allowed + ROUNDING,
    `${gate.metric} ${show(gate.metric, value)} against champion v${champion.version}'s ` +
      `${show(gate.metric, championValue)}: ${worsening > 0 ? `worse by ${worsening.toFixed(4)}` : 'no worse'}; ` +
      `the gate allows ${allowed === 0 ? 'no worsening' : `worse by up to ${allowed}`}`,
  );
}
