import { compareLabels, type Bucket, type HistogramCounts, type MetricsSnapshot } from './metrics-snapshot';

/**
 * A window's numbers per version (the difference of two snapshots, see serving/metrics-snapshot.ts):
 * what thresholds are checked against — error rate, p50/p90/p99 latency, online accuracy (or a
 * regression's online error) from feedback, the predicted-class counts, shadow agreement. Pure
 * functions, like the snapshots; the window types live here, on the serving side, and the
 * workflows import them as types only.
 */

/**
 * Prometheus' histogram_quantile over cumulative buckets (any order; the last bound must be +Inf,
 * else NaN): the bucket holding rank q × total, linear interpolation inside it, the lowest
 * bucket starting at 0 (or answering its bound when that is ≤ 0), and the highest finite bound
 * when the rank falls in the +Inf bucket. q < 0 → -Inf, q > 1 → +Inf, no observations → NaN.
 * Non-monotonic counts (a scrape racing an observation) are evened out as Prometheus does.
 */
export function histogramQuantile(buckets: readonly Bucket[], q: number): number {
  if (Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  if (sorted.length === 0 || sorted[sorted.length - 1]!.le !== Infinity) return NaN;
  // Coalesce equal bounds, then force monotonic counts.
  const coalesced: Bucket[] = [];
  for (const b of sorted) {
    const last = coalesced[coalesced.length - 1];
    if (last && last.le === b.le) last.count += b.count;
    else coalesced.push({ le: b.le, count: b.count });
  }
  let max = -Infinity;
  for (const b of coalesced) {
    if (b.count < max) b.count = max;
    else max = b.count;
  }
  if (coalesced.length < 2) return NaN;
  const observations = coalesced[coalesced.length - 1]!.count;
  if (observations === 0) return NaN;
  let rank = q * observations;
  let b = coalesced.length - 1;
  for (let i = 0; i < coalesced.length - 1; i++) {
    if (coalesced[i]!.count >= rank) {
      b = i;
      break;
    }
  }
  if (b === coalesced.length - 1) return coalesced[coalesced.length - 2]!.le;
  if (b === 0 && coalesced[0]!.le <= 0) return coalesced[0]!.le;
  let start = 0;
  const end = coalesced[b]!.le;
  let count = coalesced[b]!.count;
  if (b > 0) {
    start = coalesced[b - 1]!.le;
    count -= coalesced[b - 1]!.count;
    rank -= coalesced[b - 1]!.count;
  }
  return start + (end - start) * (rank / count);
}

/**
 * histogram_quantile of a latency HistogramCounts in seconds (its +Inf bucket is its count), in milliseconds;
 * null when it has no observations.
 */
function latencyMs(histogram: HistogramCounts, q: number): number | null {
  const seconds = histogramQuantile([...histogram.buckets, { le: Infinity, count: histogram.count }], q);
  return Number.isFinite(seconds) ? seconds * 1000 : null;
}

/**
 * One version's traffic over a window (since a step began), summed over every server: what the
 * canary analysis (workflows/canary-analysis.ts) judges. The rollout keeps these in its history,
 * so the shape is the one activities have always returned.
 */
export interface VersionWindow {
  requests: number;
  errors: number;
  /** errors / requests; 0 when there were no requests (check `requests` before judging). */
  errorRate: number;
  /** Latency quantiles of the successful requests, in milliseconds; null without any. */
  p99Ms: number | null;
  /** Absent in measurements taken before it was recorded: then p99 is the only quantile. */
  p90Ms?: number | null;
  /**
   * A classifier's labelled rows and accuracy; a regression's rows with true values and its error
   * over them (MAE, RMSE; null without any). The regression fields are absent from windows measured
   * before they were recorded.
   */
  feedback: {
    labelled: number;
    correct: number;
    accuracy: number | null;
    values?: number;
    mae?: number | null;
    rmse?: number | null;
  };
  /** Predicted-class counts, index = class (see windowStats for the order). */
  classCounts: number[];
}

/** Copies of requests sent to a shadow version over a window. */
export interface ShadowWindow {
  agree: number;
  disagree: number;
  error: number;
}

/** A version's window with what windowStats knows besides: the p50, the class labels, shadow agreement. */
export interface VersionStats extends VersionWindow {
  p50Ms: number | null;
  p90Ms: number | null;
  /** The class of each entry of classCounts (the same list for every version of one window). */
  classLabels: string[];
  shadow: ShadowWindow & { agreement: number | null };
}

/** The part of a version's stats the canary analysis judges, as the monitor activity returns it. */
export function versionWindow(stats: VersionStats): VersionWindow {
  const { requests, errors, errorRate, p90Ms, p99Ms, feedback, classCounts } = stats;
  return { requests, errors, errorRate, p90Ms, p99Ms, feedback, classCounts };
}

/** The shadow counts of a version's stats, without the derived agreement. */
export function shadowWindow(stats: VersionStats): ShadowWindow {
  const { agree, disagree, error } = stats.shadow;
  return { agree, disagree, error };
}

/**
 * Per version of a window: the numbers a canary analysis compares. Class counts are aligned over
 * all versions, so two versions' counts compare index by index: `classLabels` (e.g. the model's
 * class names, in model order) first, then any other label seen. Without `classLabels` and with
 * numeric labels (a model published without class names labels classes by index), the list is
 * 0..the largest class seen, so index = class.
 */
export function windowStats(
  window: MetricsSnapshot,
  options: { classLabels?: readonly string[] } = {},
): Record<string, VersionStats> {
  const seen = new Set(Object.values(window.versions).flatMap((c) => Object.keys(c.classes)));
  const given = options.classLabels ?? [];
  // Class indices as labels (a model published without class names): 0..max, so index = class.
  if (given.length === 0 && seen.size > 0 && [...seen].every((l) => /^(0|[1-9]\d{0,4})$/.test(l))) {
    const largest = Math.max(...[...seen].map(Number));
    for (let k = 0; k < largest; k++) seen.add(String(k));
  }
  const classLabels = [...given, ...[...seen].filter((l) => !given.includes(l)).sort(compareLabels)];
  const out: Record<string, VersionStats> = {};
  for (const v of Object.keys(window.versions).sort(compareLabels)) {
    const c = window.versions[v]!;
    const labelled = c.feedback.correct + c.feedback.incorrect;
    const values = c.feedback.values ?? 0;
    const shadowAnswers = c.shadow.agree + c.shadow.disagree;
    out[v] = {
      requests: c.requests,
      errors: c.errors,
      errorRate: c.requests > 0 ? c.errors / c.requests : 0,
      p50Ms: latencyMs(c.latency, 0.5),
      p90Ms: latencyMs(c.latency, 0.9),
      p99Ms: latencyMs(c.latency, 0.99),
      feedback: {
        labelled,
        correct: c.feedback.correct,
        accuracy: labelled > 0 ? c.feedback.correct / labelled : null,
        values,
        mae: values > 0 ? (c.feedback.absoluteError ?? 0) / values : null,
        rmse: values > 0 ? Math.sqrt(Math.max(0, c.feedback.squaredError ?? 0) / values) : null,
      },
      classCounts: classLabels.map((l) => c.classes[l] ?? 0),
      classLabels,
      shadow: {
        agree: c.shadow.agree,
        disagree: c.shadow.disagree,
        error: c.shadow.error,
        agreement: shadowAnswers > 0 ? c.shadow.agree / shadowAnswers : null,
      },
    };
  }
  return out;
}
