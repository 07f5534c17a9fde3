import { describe, expect, it } from 'vitest';
import { RolloutSpecSchema, RolloutThresholdsSchema } from '../pipelines/spec';
import { judgeCanary, judgeShadow, type VersionWindow } from '../workflows/canary-analysis';

/** The canary analysis on hand-made windows: each threshold, absolute and relative, and "too little to judge". */

const thresholds = RolloutThresholdsSchema.parse({ minFeedback: 50, maxP99LatencyMs: 50 });
const window = (over: Partial<VersionWindow> & { accuracy?: number; labelled?: number } = {}): VersionWindow => {
  const labelled = over.labelled ?? 200;
  const accuracy = over.accuracy ?? 0.85;
  const requests = over.requests ?? 500;
  const errors = over.errors ?? 0;
  return {
    requests,
    errors,
    errorRate: requests ? errors / requests : 0,
    p99Ms: over.p99Ms ?? 4,
    ...(over.p90Ms === undefined ? {} : { p90Ms: over.p90Ms }),
    feedback: { labelled, correct: Math.round(labelled * accuracy), accuracy },
    classCounts: over.classCounts ?? [50, 50, 50, 50, 50, 50, 50, 50, 50, 50],
  };
};

describe('judgeCanary', () => {
  it('passes a canary like its champion, naming every check', () => {
    const j = judgeCanary(window(), window(), thresholds, 100);
    expect(j.breaches).toEqual([]);
    expect(j.enough).toBe(true);
    expect(j.passed.join('\n')).toMatch(
      new RegExp(
        [
          /error rate 0.00 %.*\n.*vs champion/,
          /p99 latency 4.0 ms \(max 50.0 ms\)/,
          /prediction divergence 0.0000 bits/,
          /online accuracy 85.00 % vs champion 85.00 %/,
        ]
          .map((part) => part.source)
          .join('[\\s\\S]*'),
      ),
    );
  });

  it('names the metric of each breach, absolute and relative', () => {
    expect(judgeCanary(window({ errors: 25 }), window(), thresholds, 100).breaches).toEqual([
      'error rate 5.00 % (max 1.00 %)',
      'error rate 5.00 % vs champion 0.00 %: +5.00 % (max +0.50 %)',
    ]);
    expect(judgeCanary(window({ p99Ms: 60 }), window({ p99Ms: 5 }), thresholds, 100).breaches).toEqual([
      'p99 latency 60.0 ms (max 50.0 ms)',
      "p99 latency 60.0 ms is 12.00× the champion's 5.0 ms (max 2×)",
    ]);
    expect(judgeCanary(window({ accuracy: 0.6 }), window({ accuracy: 0.85 }), thresholds, 100).breaches).toEqual([
      'online accuracy 60.00 % vs champion 85.00 %: −25.00 % (max drop 5.00 %)',
    ]);
    const skewed = [410, 10, 10, 10, 10, 10, 10, 10, 10, 10];
    expect(judgeCanary(window({ classCounts: skewed }), window(), thresholds, 100).breaches[0]).toMatch(
      /^prediction divergence 0\.\d+ bits from the champion's class distribution \(max 0.1\)$/,
    );
  });

  it('judges latency on the p90 until both windows hold enough requests for a p99', () => {
    const ratio = { ...thresholds, maxP99LatencyMs: undefined, maxP99LatencyRatio: 5 };
    // ~90 canary requests, one of them slow: its p99 is that one request; the p90 is not moved by it.
    const hiccup = window({ requests: 90, p99Ms: 13.8, p90Ms: 1.9 });
    const champion = window({ requests: 800, p99Ms: 1.7, p90Ms: 1.5 });
    const small = judgeCanary(hiccup, champion, ratio, 50);
    expect(small.breaches).toEqual([]);
    expect(small.passed).toContain(
      "p90 latency 1.9 ms is 1.27× the champion's 1.5 ms (max 5× — p90: p99 needs 1000 requests in both windows)",
    );
    // A canary that is really slower is slower at the p90 too.
    expect(judgeCanary(window({ requests: 90, p99Ms: 40, p90Ms: 12 }), champion, ratio, 50).breaches).toEqual([
      "p90 latency 12.0 ms is 8.00× the champion's 1.5 ms (max 5× — p90: p99 needs 1000 requests in both windows)",
    ]);
    // With enough requests on both sides the p99 is judged.
    const big = judgeCanary(
      window({ requests: 2000, p99Ms: 13.8, p90Ms: 1.9 }),
      window({ requests: 2000, p99Ms: 1.7, p90Ms: 1.5 }),
      ratio,
      50,
    );
    expect(big.breaches).toEqual(["p99 latency 13.8 ms is 8.12× the champion's 1.7 ms (max 5×)"]);
    // The absolute p99 limit: a p90 above it is a breach already; below it, the p99 is awaited.
    expect(judgeCanary(window({ requests: 90, p99Ms: 80, p90Ms: 60 }), null, thresholds, 50).breaches).toEqual([
      'p90 latency 60.0 ms (max p99 50.0 ms)',
    ]);
    expect(judgeCanary(window({ requests: 90, p99Ms: 80, p90Ms: 3 }), null, thresholds, 50).pending).toContain(
      'p99 latency limit: 90 of 1000 canary requests for a p99',
    );
  });

  it('does not judge what it has too little traffic or feedback for', () => {
    const j = judgeCanary(window({ requests: 40, errors: 40, labelled: 10, accuracy: 0 }), window(), thresholds, 100);
    expect(j.breaches).toEqual([]);
    expect(j.enough).toBe(false);
    expect(j.pending).toEqual([
      'error rate, latency and prediction divergence: 40 of 100 canary requests',
      'online accuracy: 10 of 50 labelled canary predictions',
    ]);
    // Without a champion window (nothing to compare with) only the absolute thresholds apply.
    const alone = judgeCanary(window({ accuracy: 0.5 }), null, { ...thresholds, minOnlineAccuracy: 0.7 }, 100);
    expect(alone.breaches).toEqual(['online accuracy 50.00 % (min 70.00 %)']);
    expect(alone.pending).toEqual(['online accuracy against the champion: 0 of 50 labelled champion predictions']);
  });
});

describe('judgeShadow', () => {
  it('judges errors and disagreement of the copies once there are enough', () => {
    expect(judgeShadow({ agree: 10, disagree: 10, error: 0 }, thresholds, 100).enough).toBe(false);
    expect(judgeShadow({ agree: 90, disagree: 10, error: 0 }, thresholds, 100).breaches).toEqual([]);
    expect(judgeShadow({ agree: 50, disagree: 45, error: 5 }, thresholds, 100).breaches).toEqual([
      'shadow error rate 5.00 % (max 1.00 %)',
      "shadow disagreement 47.37 % of answers differ from the champion's (max 20.00 %)",
    ]);
  });
});

describe('the rollout spec', () => {
  it('refuses steps that do not grow, naming the step', () => {
    const parsed = RolloutSpecSchema.safeParse({
      steps: [
        { percent: 50, bake: '1m' },
        { percent: 25, bake: '1m' },
      ],
    });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues[0]!.path).toEqual(['steps', 1, 'percent']);
    expect(parsed.error!.issues[0]!.message).toBe("must be more than the previous step's 50 %");
    expect(RolloutSpecSchema.safeParse({ analysisInterval: 'soon' }).success).toBe(false);
  });
});

describe('judgeCanary on a regression (online error from feedback values)', () => {
  const regression = (rmse: number, values = 100): VersionWindow => ({
    ...window(),
    feedback: { labelled: 0, correct: 0, accuracy: null, values, mae: rmse * 0.8, rmse },
    classCounts: [],
  });
  const t = RolloutThresholdsSchema.parse({ minFeedback: 50, maxOnlineError: 4, maxOnlineErrorIncrease: 0.1 });

  it('passes a canary whose RMSE is within the limit and near the champion, without judging accuracy', () => {
    const j = judgeCanary(regression(3.1), regression(3.0), t, 100);
    expect(j.breaches).toEqual([]);
    expect(j.passed.join('\n')).toMatch(
      /online RMSE 3.100 \(max 4\)[\s\S]*online RMSE 3.100 vs champion 3.000: \+3.33 %/,
    );
    expect(j.pending.join('\n')).not.toMatch(/accuracy/);
  });

  it('breaches an absolute RMSE over the limit and an increase over the champion', () => {
    expect(judgeCanary(regression(4.5), regression(4.4), t, 100).breaches.join('\n')).toMatch(
      /online RMSE 4.500 \(max 4\)/,
    );
    expect(judgeCanary(regression(3.6), regression(3.0), t, 100).breaches.join('\n')).toMatch(
      /online RMSE 3.600 vs champion 3.000: \+20.00 % \(max \+10.00 %\)/,
    );
  });

  it('waits for enough values, from the canary and from the champion', () => {
    expect(judgeCanary(regression(9, 10), regression(3.0), t, 100).pending.join('\n')).toMatch(
      /online error: 10 of 50 canary predictions with true values/,
    );
    const j = judgeCanary(regression(3.5), regression(3.0, 5), t, 100);
    expect(j.breaches).toEqual([]);
    expect(j.pending.join('\n')).toMatch(/online error against the champion: 5 of 50/);
  });
});
