import { METRIC } from './metric-names';

/**
 * One model's serving metrics as plain data: what a rollout's analysis reads from each server
 * replica. A snapshot holds the cumulative counters of the server's metrics (serving/metrics.ts,
 * read as prom-client's JSON) for one model, per version; the difference of two snapshots is a
 * window (the same shape, the counts in between, with Prometheus `increase` semantics), and a
 * window's stats (serving/metrics-window.ts) are what thresholds are checked against.
 *
 * Everything here is a pure function of its arguments (no I/O, no clock, only constants
 * imported), so a Temporal workflow may call it; the ServingClient (serving/client.ts) fetches the
 * metrics. Snapshots are JSON-safe (no Infinity or NaN), so they can travel as activity results.
 *
 * The usual sequence, per server replica r: `s0[r] = servingSnapshot(metrics, model)`, later
 * `s1[r]` the same; then `windowStats(mergeSnapshots(replicas.map((r) => diffSnapshots(s1[r], s0[r]))))`.
 * Diff each replica first and merge the windows: a restart is detected per replica, and a merged
 * snapshot can hide one replica's reset behind another's growth.
 */

/** A cumulative bucket: observations ≤ `le` (seconds). */
export interface Bucket {
  le: number;
  count: number;
}

/** A histogram's cumulative counts; `buckets` has the finite bounds, ascending; the +Inf bucket is `count`. */
export interface HistogramCounts {
  buckets: Bucket[];
  count: number;
  sum: number;
}

export interface VersionCounters {
  /**
   * :predict and :classify requests the router placed on this version (any protocol), answered or
   * failed by the server (see SERVER_FAILURES); requests that pinned the version (/versions/N,
   * /labels/L), a client's mistakes (4xx) and overload refusals (429) are not counted.
   */
  requests: number;
  /** Of those, the server's failures. */
  errors: number;
  /** Every non-OK status of the routed requests by canonical code, the client's (not in `errors`) included. */
  errorsByStatus: Record<string, number>;
  /** Latency of the successful routed :predict and :classify requests, in seconds. */
  latency: HistogramCounts;
  /**
   * Labelled predicted rows received as feedback; a regression's rows with true values, and the
   * sums of their absolute and squared errors (absent from snapshots taken before they were read).
   */
  feedback: { correct: number; incorrect: number; values?: number; absoluteError?: number; squaredError?: number };
  /** Predicted rows of the routed requests by class label (the arg-max of a classifier's output). */
  classes: Record<string, number>;
  /** Copies of requests this version answered as a shadow. */
  shadow: { agree: number; disagree: number; error: number };
}

export interface MetricsSnapshot {
  model: string;
  /** Keyed by version number (as a string, as Prometheus labels it). */
  versions: Record<string, VersionCounters>;
  /**
   * Requests that failed before a version was chosen (unknown model, no AVAILABLE version, a body
   * the server could not read).
   */
  unrouted: { requests: number; errorsByStatus: Record<string, number> };
  /** Server replicas summed into this snapshot (1 for one read from a server). */
  replicas: number;
  /**
   * The server process's start time (process_start_time_seconds), when one replica's; null for
   * merged snapshots.
   */
  processStartTimeSeconds: number | null;
}

/**
 * A metric family as the server's registry gives it as data (prom-client's `getMetricsAsJSON()`,
 * served at /monitoring/metrics.json), as far as it is read here: a histogram's samples are named
 * `<name>_bucket` (with an `le` label, "+Inf" for the last), `_sum` and `_count` in `metricName`;
 * a NaN value arrives as null after a trip through JSON.
 */
export interface MetricFamily {
  name: string;
  values: readonly {
    value: number | null;
    metricName?: string;
    labels: Readonly<Record<string, string | number | undefined>>;
  }[];
}

// ---- snapshots ----

/**
 * The statuses that are a version's own failure (TF Serving's 5xx, and a deadline the model missed);
 * every other non-OK status is the caller's doing (INVALID_ARGUMENT, NOT_FOUND, …) or overload
 * protection (RESOURCE_EXHAUSTED, 429).
 */
export const SERVER_FAILURES: ReadonlySet<string> = new Set([
  'INTERNAL',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'UNKNOWN',
  'DATA_LOSS',
]);

/** The APIs whose requests are model calls; metadata and status calls are not counted. */
const MODEL_APIS = new Set(['predict', 'classify', 'regress']);

/** A deep copy (snapshots are JSON-safe; structuredClone is not in every workflow sandbox). */
function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function emptyHistogram(): HistogramCounts {
  return { buckets: [], count: 0, sum: 0 };
}

/** A regression's feedback counters: present in a snapshot only once the server reported them. */
const REGRESSION_FEEDBACK = ['values', 'absoluteError', 'squaredError'] as const;

function emptyCounters(): VersionCounters {
  return {
    requests: 0,
    errors: 0,
    errorsByStatus: {},
    latency: emptyHistogram(),
    feedback: { correct: 0, incorrect: 0 },
    classes: {},
    shadow: { agree: 0, disagree: 0, error: 0 },
  };
}

function add(record: Record<string, number>, key: string, value: number): void {
  record[key] = (record[key] ?? 0) + value;
}

/**
 * Sums cumulative histograms. Bounds that only some of them have are filled in from each one's
 * largest bound below (a cumulative count is monotone, so that is a lower bound, exact when the
 * bounds agree — as they do between replicas of the same server).
 */
function sumHistograms(histograms: HistogramCounts[]): HistogramCounts {
  const bounds = [...new Set(histograms.flatMap((h) => h.buckets.map((b) => b.le)))].sort((a, b) => a - b);
  const buckets = bounds.map((le) => ({ le, count: histograms.reduce((sum, h) => sum + cumulativeAt(h, le), 0) }));
  return {
    buckets,
    count: histograms.reduce((s, h) => s + h.count, 0),
    sum: histograms.reduce((s, h) => s + h.sum, 0),
  };
}

function cumulativeAt(h: HistogramCounts, le: number): number {
  let count = 0;
  for (const b of h.buckets) {
    if (b.le > le) break;
    count = b.count;
  }
  return count;
}

/** A sample's labels as Prometheus writes them: every value a string (prom-client keeps numbers as given). */
function labelText(labels: MetricFamily['values'][number]['labels']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (v !== undefined) out[k] = String(v);
  return out;
}

/** The samples of the families, each named as Prometheus' text format would name it. */
function* samples(metrics: readonly MetricFamily[]): Generator<{
  name: string;
  labels: Record<string, string>;
  value: number | null;
}> {
  for (const family of metrics)
    for (const v of family.values)
      yield { name: v.metricName ?? family.name, labels: labelText(v.labels), value: v.value };
}

/** One model's counters from a server's metrics, summed over protocols and APIs per version. */
export function servingSnapshot(metrics: readonly MetricFamily[], model: string): MetricsSnapshot {
  const snapshot: MetricsSnapshot = {
    model,
    versions: {},
    unrouted: { requests: 0, errorsByStatus: {} },
    replicas: 1,
    processStartTimeSeconds: null,
  };
  const version = (v: string) => (snapshot.versions[v] ??= emptyCounters());
  // Latency series, by version then by label set (api/protocol), assembled from _bucket/_sum/_count lines.
  const latency = new Map<string, Map<string, { buckets: Map<number, number>; count: number; sum: number }>>();
  const series = (labels: Record<string, string>) => {
    const v = labels.version ?? '';
    let byKey = latency.get(v);
    if (!byKey) latency.set(v, (byKey = new Map()));
    const key = `${labels.api}\0${labels.protocol}`;
    let s = byKey.get(key);
    if (!s) byKey.set(key, (s = { buckets: new Map(), count: 0, sum: 0 }));
    return s;
  };

  for (const { name, labels, value } of samples(metrics)) {
    if (name === METRIC.processStartTime) {
      if (value !== null) snapshot.processStartTimeSeconds = value;
      continue;
    }
    if (labels.model !== model || value === null || !Number.isFinite(value)) continue;
    const v = labels.version ?? '';
    switch (name) {
      case METRIC.requests: {
        if (!MODEL_APIS.has(labels.api ?? '')) break;
        const status = labels.status ?? 'UNKNOWN';
        if (v === '') {
          snapshot.unrouted.requests += value;
          if (status !== 'OK') add(snapshot.unrouted.errorsByStatus, status, value);
          break;
        }
        // A version's window is the traffic the router placed on it: a caller that pins a version picks its
        // own traffic (and could flood it), so pinned requests are for dashboards, not for canary analysis.
        if (labels.route === 'pinned') break;
        const c = version(v);
        if (status !== 'OK') add(c.errorsByStatus, status, value);
        // A client's mistake (4xx) or overload protection (429) is not the version's failure, and is left
        // out of the request count too, so that garbage can neither raise nor dilute an error rate.
        if (status !== 'OK' && !SERVER_FAILURES.has(status)) break;
        c.requests += value;
        if (status !== 'OK') c.errors += value;
        break;
      }
      case `${METRIC.latency}_bucket`:
      case `${METRIC.latency}_sum`:
      case `${METRIC.latency}_count`: {
        if (!MODEL_APIS.has(labels.api ?? '') || v === '' || labels.route === 'pinned') break;
        const s = series(labels);
        if (name.endsWith('_sum')) s.sum = value;
        else if (name.endsWith('_count')) s.count = value;
        else {
          // The +Inf bucket is the count; the finite bounds arrive as numbers.
          const le = labels.le === undefined || labels.le === '' ? NaN : Number(labels.le);
          if (Number.isFinite(le)) s.buckets.set(le, value);
        }
        break;
      }
      case METRIC.feedback:
        if (v === '') break;
        if (labels.outcome === 'correct') version(v).feedback.correct += value;
        else if (labels.outcome === 'incorrect') version(v).feedback.incorrect += value;
        break;
      case METRIC.feedbackValues:
      case METRIC.feedbackAbsoluteError:
      case METRIC.feedbackSquaredError: {
        if (v === '') break;
        const f = version(v).feedback;
        const field =
          name === METRIC.feedbackValues
            ? 'values'
            : name === METRIC.feedbackAbsoluteError
              ? 'absoluteError'
              : 'squaredError';
        f[field] = (f[field] ?? 0) + value;
        break;
      }
      case METRIC.predictedClass:
        if (v === '' || labels.class === undefined || labels.route === 'pinned') break;
        add(version(v).classes, labels.class, value);
        break;
      case METRIC.shadow: {
        if (v === '') break;
        const outcome = labels.outcome;
        if (outcome === 'agree' || outcome === 'disagree' || outcome === 'error') version(v).shadow[outcome] += value;
        break;
      }
    }
  }
  for (const [v, byKey] of latency) {
    const histograms = [...byKey.values()].map((s) => ({
      buckets: [...s.buckets].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count })),
      count: s.count,
      sum: s.sum,
    }));
    version(v).latency = sumHistograms(histograms);
  }
  return snapshot;
}

function mergeCounters(all: VersionCounters[]): VersionCounters {
  const out = emptyCounters();
  for (const c of all) {
    out.requests += c.requests;
    out.errors += c.errors;
    for (const [k, n] of Object.entries(c.errorsByStatus)) add(out.errorsByStatus, k, n);
    out.feedback.correct += c.feedback.correct;
    out.feedback.incorrect += c.feedback.incorrect;
    for (const field of REGRESSION_FEEDBACK) {
      const n = c.feedback[field];
      if (n !== undefined) out.feedback[field] = (out.feedback[field] ?? 0) + n;
    }
    for (const [k, n] of Object.entries(c.classes)) add(out.classes, k, n);
    out.shadow.agree += c.shadow.agree;
    out.shadow.disagree += c.shadow.disagree;
    out.shadow.error += c.shadow.error;
  }
  out.latency = sumHistograms(all.map((c) => c.latency));
  return out;
}

/** The sum of snapshots (or windows) of the same model, e.g. one per server replica. */
export function mergeSnapshots(snapshots: readonly MetricsSnapshot[]): MetricsSnapshot {
  if (snapshots.length === 0) throw new Error('mergeSnapshots: no snapshots');
  const model = snapshots[0]!.model;
  const other = snapshots.find((s) => s.model !== model);
  if (other) throw new Error(`mergeSnapshots: snapshots of different models ("${model}", "${other.model}")`);
  if (snapshots.length === 1) return clone(snapshots[0]!);
  const versions = [...new Set(snapshots.flatMap((s) => Object.keys(s.versions)))].sort(compareLabels);
  const unrouted = { requests: 0, errorsByStatus: {} as Record<string, number> };
  for (const s of snapshots) {
    unrouted.requests += s.unrouted.requests;
    for (const [k, n] of Object.entries(s.unrouted.errorsByStatus)) add(unrouted.errorsByStatus, k, n);
  }
  return {
    model,
    versions: Object.fromEntries(
      versions.map((v) => [v, mergeCounters(snapshots.flatMap((s) => (s.versions[v] ? [s.versions[v]] : [])))]),
    ),
    unrouted,
    replicas: snapshots.reduce((n, s) => n + s.replicas, 0),
    processStartTimeSeconds: null,
  };
}

// ---- windows ----

/** Every counter of a snapshot as (path, value), for reset detection. */
function counterValues(s: MetricsSnapshot, visit: (key: string, value: number) => void): void {
  visit('unrouted', s.unrouted.requests);
  for (const [v, c] of Object.entries(s.versions)) {
    visit(`${v}.requests`, c.requests);
    visit(`${v}.errors`, c.errors);
    for (const [k, n] of Object.entries(c.errorsByStatus)) visit(`${v}.status.${k}`, n);
    visit(`${v}.latency.count`, c.latency.count);
    visit(`${v}.latency.sum`, c.latency.sum);
    for (const b of c.latency.buckets) visit(`${v}.latency.le.${b.le}`, b.count);
    visit(`${v}.feedback.correct`, c.feedback.correct);
    visit(`${v}.feedback.incorrect`, c.feedback.incorrect);
    for (const field of REGRESSION_FEEDBACK) visit(`${v}.feedback.${field}`, c.feedback[field] ?? 0);
    for (const [k, n] of Object.entries(c.classes)) visit(`${v}.class.${k}`, n);
    visit(`${v}.shadow.agree`, c.shadow.agree);
    visit(`${v}.shadow.disagree`, c.shadow.disagree);
    visit(`${v}.shadow.error`, c.shadow.error);
  }
}

/**
 * Whether the server behind two single-replica snapshots restarted in between: its process start
 * time changed, or any counter went down (all of a process's counters restart together, so one
 * that fell proves a restart even where others grew past their old values again).
 */
export function restartedBetween(later: MetricsSnapshot, earlier: MetricsSnapshot): boolean {
  if (
    later.processStartTimeSeconds !== null &&
    earlier.processStartTimeSeconds !== null &&
    later.processStartTimeSeconds !== earlier.processStartTimeSeconds
  )
    return true;
  const after = new Map<string, number>();
  counterValues(later, (k, n) => after.set(k, n));
  let fell = false;
  // The server never removes a series, so one that vanished went down too.
  counterValues(earlier, (k, n) => {
    if ((after.get(k) ?? 0) < n) fell = true;
  });
  return fell;
}

/**
 * Prometheus' increase() between two samples: a counter that went down restarted, so its later
 * value is the increase.
 */
const increase = (later: number, earlier: number) => (later >= earlier ? later - earlier : later);

function diffRecord(later: Record<string, number>, earlier: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(later)) {
    const d = increase(n, earlier[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

function diffHistogram(later: HistogramCounts, earlier: HistogramCounts): HistogramCounts {
  // A histogram is one series: if any part of it went down it restarted, and all of it is new.
  const reset =
    later.count < earlier.count ||
    later.sum < earlier.sum ||
    later.buckets.some((b) => b.count < cumulativeAt(earlier, b.le));
  if (reset) return clone(later);
  return {
    buckets: later.buckets.map((b) => ({ le: b.le, count: b.count - cumulativeAt(earlier, b.le) })),
    count: later.count - earlier.count,
    sum: later.sum - earlier.sum,
  };
}

function diffCounters(later: VersionCounters, earlier: VersionCounters): VersionCounters {
  return {
    requests: increase(later.requests, earlier.requests),
    errors: increase(later.errors, earlier.errors),
    errorsByStatus: diffRecord(later.errorsByStatus, earlier.errorsByStatus),
    latency: diffHistogram(later.latency, earlier.latency),
    feedback: {
      correct: increase(later.feedback.correct, earlier.feedback.correct),
      incorrect: increase(later.feedback.incorrect, earlier.feedback.incorrect),
      ...Object.fromEntries(
        REGRESSION_FEEDBACK.filter((f) => later.feedback[f] !== undefined).map((f) => [
          f,
          increase(later.feedback[f]!, earlier.feedback[f] ?? 0),
        ]),
      ),
    },
    classes: diffRecord(later.classes, earlier.classes),
    shadow: {
      agree: increase(later.shadow.agree, earlier.shadow.agree),
      disagree: increase(later.shadow.disagree, earlier.shadow.disagree),
      error: increase(later.shadow.error, earlier.shadow.error),
    },
  };
}

/**
 * The window between two snapshots of the same model (and the same server, or the same set of
 * servers): what happened in between, with Prometheus `increase` semantics. When both are one
 * replica's and it restarted in between (see restartedBetween), the whole later snapshot is the
 * window; otherwise each counter on its own: one that went down restarted, its later value is the
 * increase. Versions only in `earlier` are gone from the window.
 */
export function diffSnapshots(later: MetricsSnapshot, earlier: MetricsSnapshot): MetricsSnapshot {
  if (later.model !== earlier.model)
    throw new Error(`diffSnapshots: snapshots of different models ("${later.model}", "${earlier.model}")`);
  const single = later.replicas === 1 && earlier.replicas === 1;
  if (single && restartedBetween(later, earlier)) return clone(later);
  const none = emptyCounters();
  return {
    model: later.model,
    versions: Object.fromEntries(
      Object.entries(later.versions).map(([v, c]) => [v, diffCounters(c, earlier.versions[v] ?? none)]),
    ),
    unrouted: {
      requests: increase(later.unrouted.requests, earlier.unrouted.requests),
      errorsByStatus: diffRecord(later.unrouted.errorsByStatus, earlier.unrouted.errorsByStatus),
    },
    replicas: later.replicas,
    processStartTimeSeconds: later.processStartTimeSeconds,
  };
}

/** Numeric labels in numeric order, then the others in code-point order. */
export function compareLabels(a: string, b: string): number {
  const na = /^\d+$/.test(a) ? Number(a) : NaN;
  const nb = /^\d+$/.test(b) ? Number(b) : NaN;
  if (!Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  if (!Number.isNaN(na)) return -1;
  if (!Number.isNaN(nb)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
