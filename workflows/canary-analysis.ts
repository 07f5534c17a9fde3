import { jensenShannonDivergence } from '../data/drift';
import type { RolloutThresholds } from '../pipelines/spec';
import type { ShadowWindow, VersionWindow } from '../serving/metrics-window';

/**
 * The canary analysis: judges what a canary did on live traffic against the spec's thresholds,
 * absolute and relative to the champion. Pure and deterministic (the rollout workflow runs it on
 * measurements its activities took), so a replay reaches the same decisions.
 */

// The window types are the serving side's (what the monitor activity measures); types only, so
// no serving code enters a workflow bundle.
export type { ShadowWindow, VersionWindow } from '../serving/metrics-window';

export const EMPTY_WINDOW: VersionWindow = {
  requests: 0,
  errors: 0,
  errorRate: 0,
  p99Ms: null,
  p90Ms: null,
  feedback: { labelled: 0, correct: 0, accuracy: null },
  classCounts: [],
};

export interface Judgement {
  /** Thresholds the canary broke, each naming the metric, its value and the limit. */
  breaches: string[];
  /** Checks that held, in the same words. */
  passed: string[];
  /** Checks that could not be judged yet, and why (too little traffic or feedback). */
  pending: string[];
  /** Whether the canary had the traffic a step needs to be judged (minRequests). */
  enough: boolean;
}

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
const ms = (x: number) => `${x.toFixed(1)} ms`;

function distribution(counts: number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return total > 0 ? counts.map((c) => c / total) : counts.map(() => 0);
}

/**
 * `champion` is the champion's window over the same time, or — when the champion gets no traffic
 * (the 100 % step) — its last window that had enough; null when there is none at all.
 */
export function judgeCanary(
  canary: VersionWindow,
  champion: VersionWindow | null,
  t: RolloutThresholds,
  minRequests: number,
): Judgement {
  const j: Judgement = { breaches: [], passed: [], pending: [], enough: canary.requests >= minRequests };
  const check = (ok: boolean, text: string) => (ok ? j.passed : j.breaches).push(text);
  const championJudged = champion !== null && champion.requests >= minRequests;

  if (!j.enough) {
    j.pending.push(
      `error rate, latency and prediction divergence: ${canary.requests} of ${minRequests} canary requests`,
    );
  } else {
    check(canary.errorRate <= t.maxErrorRate, `error rate ${pct(canary.errorRate)} (max ${pct(t.maxErrorRate)})`);
    if (championJudged) {
      const increase = canary.errorRate - champion.errorRate;
      check(
        increase <= t.maxErrorRateIncrease,
        `error rate ${pct(canary.errorRate)} vs champion ${pct(champion.errorRate)}: ` +
          `+${pct(Math.max(0, increase))} (max +${pct(t.maxErrorRateIncrease)})`,
      );
    }
    judgeLatency(canary, championJudged ? champion : null, t, check, j.pending);
    if (championJudged && canary.classCounts.length && champion.classCounts.length) {
      const divergence = jensenShannonDivergence(distribution(canary.classCounts), distribution(champion.classCounts));
      check(
        divergence <= t.maxPredictionDivergence,
        `prediction divergence ${divergence.toFixed(4)} bits from the champion's class distribution ` +
          `(max ${t.maxPredictionDivergence})`,
      );
    }
  }

  // A regression's feedback is values: its online error is judged, and accuracy does not apply.
  if ((canary.feedback.values ?? 0) > 0 || (champion?.feedback.values ?? 0) > 0) {
    judgeOnlineError(canary, champion, t, check, j.pending);
    return j;
  }
  const accuracy = canary.feedback.accuracy;
  if (accuracy === null || canary.feedback.labelled < t.minFeedback) {
    j.pending.push(`online accuracy: ${canary.feedback.labelled} of ${t.minFeedback} labelled canary predictions`);
  } else {
    if (t.minOnlineAccuracy !== undefined)
      check(accuracy >= t.minOnlineAccuracy, `online accuracy ${pct(accuracy)} (min ${pct(t.minOnlineAccuracy)})`);
    const reference = champion?.feedback;
    if (reference && reference.accuracy !== null && reference.labelled >= t.minFeedback) {
      const drop = reference.accuracy - accuracy;
      check(
        drop <= t.maxAccuracyDrop,
        `online accuracy ${pct(accuracy)} vs champion ${pct(reference.accuracy)}: ` +
          `${drop > 0 ? '−' : '+'}${pct(Math.abs(drop))} (max drop ${pct(t.maxAccuracyDrop)})`,
      );
    } else {
      j.pending.push(
        `online accuracy against the champion: ${reference?.labelled ?? 0} of ${t.minFeedback} ` +
          'labelled champion predictions',
      );
    }
  }
  return j;
}

/** A regression's online RMSE (from feedback values): absolute, and relative to the champion's. */
function judgeOnlineError(
  canary: VersionWindow,
  champion: VersionWindow | null,
  t: RolloutThresholds,
  check: (ok: boolean, text: string) => void,
  pending: string[],
): void {
  const values = canary.feedback.values ?? 0;
  const rmse = canary.feedback.rmse ?? null;
  if (rmse === null || values < t.minFeedback) {
    pending.push(`online error: ${values} of ${t.minFeedback} canary predictions with true values`);
    return;
  }
  if (t.maxOnlineError !== undefined)
    check(rmse <= t.maxOnlineError, `online RMSE ${rmse.toPrecision(4)} (max ${t.maxOnlineError})`);
  const reference = champion?.feedback;
  const championRmse = reference?.rmse ?? null;
  if (championRmse === null || (reference?.values ?? 0) < t.minFeedback) {
    pending.push(
      `online error against the champion: ${reference?.values ?? 0} of ${t.minFeedback} champion predictions ` +
        'with true values',
    );
    return;
  }
  // A perfect champion (RMSE 0) leaves no ratio: any error of the canary is an increase.
  const increase = championRmse > 0 ? (rmse - championRmse) / championRmse : rmse > 0 ? Infinity : 0;
  check(
    increase <= t.maxOnlineErrorIncrease,
    `online RMSE ${rmse.toPrecision(4)} vs champion ${championRmse.toPrecision(4)}: ` +
      `${increase >= 0 ? '+' : '−'}${pct(Math.abs(increase))} (max +${pct(t.maxOnlineErrorIncrease)})`,
  );
}

/**
 * Latency: the p99 where the windows hold enough requests for one (minRequestsForP99), else the
 * p90 — the ratio to the champion is judged on the same quantile of both; against the absolute
 * p99 limit a p90 can only prove a breach (it is a lower bound of the p99).
 */
function judgeLatency(
  canary: VersionWindow,
  champion: VersionWindow | null,
  t: RolloutThresholds,
  check: (ok: boolean, text: string) => void,
  pending: string[],
): void {
  const enoughForP99 = (w: VersionWindow) => w.requests >= t.minRequestsForP99 && w.p99Ms !== null;
  // Windows measured before p90 was recorded have only the p99: judged as before.
  const hasP90 = (w: VersionWindow) => w.p90Ms !== undefined;
  if (canary.p99Ms === null) return;
  if (t.maxP99LatencyMs !== undefined) {
    if (enoughForP99(canary) || !hasP90(canary) || canary.p90Ms === null)
      check(canary.p99Ms <= t.maxP99LatencyMs, `p99 latency ${ms(canary.p99Ms)} (max ${ms(t.maxP99LatencyMs)})`);
    else {
      // A p90 over the limit is a p99 over it; under it, the p99 is judged once it can be.
      check(canary.p90Ms! <= t.maxP99LatencyMs, `p90 latency ${ms(canary.p90Ms!)} (max p99 ${ms(t.maxP99LatencyMs)})`);
      pending.push(`p99 latency limit: ${canary.requests} of ${t.minRequestsForP99} canary requests for a p99`);
    }
  }
  if (!champion) return;
  const useP99 = (enoughForP99(canary) && enoughForP99(champion)) || !hasP90(canary) || !hasP90(champion);
  const [name, mine, theirs] = useP99
    ? ['p99', canary.p99Ms, champion.p99Ms]
    : ['p90', canary.p90Ms ?? null, champion.p90Ms ?? null];
  if (mine === null || theirs === null || theirs <= 0) return;
  const ratio = mine / theirs;
  const why = useP99 ? '' : ` — p90: p99 needs ${t.minRequestsForP99} requests in both windows`;
  check(
    ratio <= t.maxP99LatencyRatio,
    `${name} latency ${ms(mine)} is ${ratio.toFixed(2)}× the champion's ${ms(theirs)} ` +
      `(max ${t.maxP99LatencyRatio}×${why})`,
  );
}

/** The shadow phase: the canary's copies must not error and must mostly agree with the champion. */
export function judgeShadow(shadow: ShadowWindow, t: RolloutThresholds, minRequests: number): Judgement {
  const total = shadow.agree + shadow.disagree + shadow.error;
  const j: Judgement = { breaches: [], passed: [], pending: [], enough: total >= minRequests };
  if (!j.enough) {
    j.pending.push(`shadow: ${total} of ${minRequests} copied requests`);
    return j;
  }
  const errorRate = shadow.error / total;
  (errorRate <= t.maxErrorRate ? j.passed : j.breaches).push(
    `shadow error rate ${pct(errorRate)} (max ${pct(t.maxErrorRate)})`,
  );
  const answered = shadow.agree + shadow.disagree;
  if (answered > 0) {
    const disagreement = shadow.disagree / answered;
    (disagreement <= t.maxShadowDisagreement ? j.passed : j.breaches).push(
      `shadow disagreement ${pct(disagreement)} of answers differ from the champion's ` +
        `(max ${pct(t.maxShadowDisagreement)})`,
    );
  }
  return j;
}
