/**
 * One model's serving metrics as plain data: what a rollout's analysis reads from each server
 * replica. A snapshot holds the cumulative counters of the server's Prometheus text (see
 * serving/metrics.ts) for one model, per version; the difference of two snapshots is a window
 * (the same shape, the counts in between, with Prometheus `increase` semantics), and a window's
 * stats are what thresholds are checked against: error rate, p50/p99 latency, online accuracy
 * from feedback, the predicted-class counts.
 *
 * Everything here is a pure function of its arguments (no I/O, no clock, no imports), so a
 * Temporal workflow may call it; the ServingClient (serving/client.ts) fetches the text.
 * Snapshots are JSON-safe (no Infinity or NaN), so they can travel as activity results.
 *
 * The usual sequence, per server replica r: `s0[r] = parse(text)`, later `s1[r] = parse(text)`;
 * then `windowStats(mergeSnapshots(replicas.map((r) => diffSnapshots(s1[r], s0[r]))))`. Diff each
 * replica first and merge the windows: a restart is detected per replica, and a merged snapshot
 * can hide one replica's reset behind another's growth.
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
  /** :predict and :classify requests that reached this version (any protocol, any outcome). */
  requests: number;
  /** Of those, the ones whose status was not OK. */
  errors: number;
  /** Errors by canonical status code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, …). */
  errorsByStatus: Record<string, number>;
  /** Latency of the successful :predict and :classify requests, in seconds. */
  latency: HistogramCounts;
  /** Labelled predicted rows received as feedback. */
  feedback: { correct: number; incorrect: number };
  /** Predicted rows by class label (the arg-max of a classifier's output). */
  classes: Record<string, number>;
  /** Copies of requests this version answered as a shadow. */
  shadow: { agree: number; disagree: number; error: number };
}

export interface MetricsSnapshot {
  model: string;
  /** Keyed by version number (as a string, as Prometheus labels it). */
  versions: Record<string, VersionCounters>;
  /** Requests that failed before a version was chosen (unknown model, no AVAILABLE version, a body the server could not read). */
  unrouted: { requests: number; errorsByStatus: Record<string, number> };
  /** Server replicas summed into this snapshot (1 for a parsed one). */
  replicas: number;
  /** The server process's start time (process_start_time_seconds), when one replica's; null for merged snapshots. */
  processStartTimeSeconds: number | null;
}

// ---- the text format ----

export interface PrometheusSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus' text exposition format (version 0.0.4) into samples; comments, HELP and TYPE
 * lines are skipped, timestamps ignored.
 *
 * Hand-written on purpose: the npm package parse-prometheus-text-format (1.1.1, its latest) was
 * tried first and gives wrong answers on exactly this server's output. It folds the samples of a
 * histogram family into one series, so a histogram with labels (model, version, api, protocol)
 * comes back as the bucket counts of whichever label set came last, without its labels and
 * without its _sum and _count; and a final sample not followed by a newline is dropped. The
 * grammar we need is one line per sample, which is this short function.
 */
export function parsePrometheusText(text: string): PrometheusSample[] {
  const samples: PrometheusSample[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    samples.push(parseSampleLine(line, n + 1));
  }
  return samples;
}

function parseSampleLine(line: string, lineNumber: number): PrometheusSample {
  const fail = (why: string): never => {
    throw new Error(
      `Prometheus text, line ${lineNumber}: ${why}: ${line.length > 120 ? `${line.slice(0, 120)}…` : line}`,
    );
  };
  let i = 0;
  while (i < line.length && line[i] !== '{' && line[i] !== ' ' && line[i] !== '\t') i++;
  const name = line.slice(0, i);
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) fail('bad metric name');
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++;
      if (line[i] === '}') {
        i++;
        break;
      }
      const eq = line.indexOf('=', i);
      if (eq < 0) fail('label without "="');
      const labelName = line.slice(i, eq).trim();
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(labelName)) fail(`bad label name ${JSON.stringify(labelName)}`);
      i = eq + 1;
      while (line[i] === ' ') i++;
      if (line[i] !== '"') fail(`label ${labelName}: value not quoted`);
      i++;
      let value = '';
      for (;;) {
        if (i >= line.length) fail(`label ${labelName}: unterminated value`);
        const c = line[i]!;
        if (c === '\\') {
          const next = line[i + 1];
          value += next === 'n' ? '\n' : next === '\\' ? '\\' : next === '"' ? '"' : `\\${next ?? ''}`;
          i += 2;
        } else if (c === '"') {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      labels[labelName] = value;
    }
  }
  const rest = line
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  const value = parseValue(rest[0] ?? '');
  if (value === undefined) fail('bad value');
  return { name, labels, value: value! };
}

/** A float as Prometheus (Go's ParseFloat) reads it: NaN and ±Inf in any case — prom-client writes NaN as "Nan". */
function parseValue(text: string): number | undefined {
  const special = /^([-+]?)(inf|infinity|nan)$/i.exec(text);
  if (special) return special[2]!.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity;
  if (text === '' || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

// ---- snapshots ----

const REQUESTS = 'gantry_serving_requests_total';
const LATENCY = 'gantry_serving_request_duration_seconds';
const FEEDBACK = 'gantry_serving_feedback_total';
const PREDICTED_CLASS = 'gantry_serving_predicted_class_total';
const SHADOW = 'gantry_serving_shadow_requests_total';
const START_TIME = 'gantry_serving_process_start_time_seconds';
/** The APIs whose requests are model calls; metadata and status calls are not counted. */
const MODEL_APIS = new Set(['predict', 'classify']);

/** A deep copy (snapshots are JSON-safe; structuredClone is not in every workflow sandbox). */
function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function emptyHistogram(): HistogramCounts {
  return { buckets: [], count: 0, sum: 0 };
}

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

/** One model's counters from a server's Prometheus text, summed over protocols and APIs per version. */
export function parseServingMetrics(text: string, model: string): MetricsSnapshot {
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

  for (const sample of parsePrometheusText(text)) {
    const { name, labels, value } = sample;
    if (name === START_TIME) {
      snapshot.processStartTimeSeconds = value;
      continue;
    }
    if (labels.model !== model || !Number.isFinite(value)) continue;
    const v = labels.version ?? '';
    switch (name) {
      case REQUESTS: {
        if (!MODEL_APIS.has(labels.api ?? '')) break;
        const status = labels.status ?? 'UNKNOWN';
        if (v === '') {
          snapshot.unrouted.requests += value;
          if (status !== 'OK') add(snapshot.unrouted.errorsByStatus, status, value);
          break;
        }
        const c = version(v);
        c.requests += value;
        if (status !== 'OK') {
          c.errors += value;
          add(c.errorsByStatus, status, value);
        }
        break;
      }
      case `${LATENCY}_bucket`:
      case `${LATENCY}_sum`:
      case `${LATENCY}_count`: {
        if (!MODEL_APIS.has(labels.api ?? '') || v === '') break;
        const s = series(labels);
        if (name.endsWith('_sum')) s.sum = value;
        else if (name.endsWith('_count')) s.count = value;
        else {
          const le = parseValue(labels.le ?? '');
          if (le !== undefined && Number.isFinite(le)) s.buckets.set(le, value);
        }
        break;
      }
      case FEEDBACK:
        if (v === '') break;
        if (labels.outcome === 'correct') version(v).feedback.correct += value;
        else if (labels.outcome === 'incorrect') version(v).feedback.incorrect += value;
        break;
      case PREDICTED_CLASS:
        if (v === '' || labels.class === undefined) break;
        add(version(v).classes, labels.class, value);
        break;
      case SHADOW: {
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

/** Prometheus' increase() between two samples: a counter that went down restarted, so its later value is the increase. */
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

// ---- quantiles and stats ----

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

/** histogram_quantile of a HistogramCounts (its +Inf bucket is its count); null when it has no observations. */
export function latencyQuantile(histogram: HistogramCounts, q: number): number | null {
  const value = histogramQuantile([...histogram.buckets, { le: Infinity, count: histogram.count }], q);
  return Number.isFinite(value) ? value : null;
}

export interface VersionStats {
  requests: number;
  errors: number;
  /** errors / requests; 0 when there were no requests (check `requests` before judging). */
  errorRate: number;
  /** Latency quantiles of the successful requests, in milliseconds; null without any. */
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  feedback: { labelled: number; correct: number; accuracy: number | null };
  /** Predicted rows per class, in the order of `classLabels`. */
  classCounts: number[];
  /** The class of each entry of classCounts (the same list for every version of one window). */
  classLabels: string[];
  shadow: { agree: number; disagree: number; error: number; agreement: number | null };
}

/** Numeric labels in numeric order, then the others in code-point order. */
function compareLabels(a: string, b: string): number {
  const na = /^\d+$/.test(a) ? Number(a) : NaN;
  const nb = /^\d+$/.test(b) ? Number(b) : NaN;
  if (!Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  if (!Number.isNaN(na)) return -1;
  if (!Number.isNaN(nb)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
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
    const p50 = latencyQuantile(c.latency, 0.5);
    const p90 = latencyQuantile(c.latency, 0.9);
    const p99 = latencyQuantile(c.latency, 0.99);
    const shadowAnswers = c.shadow.agree + c.shadow.disagree;
    out[v] = {
      requests: c.requests,
      errors: c.errors,
      errorRate: c.requests > 0 ? c.errors / c.requests : 0,
      p50Ms: p50 === null ? null : p50 * 1000,
      p90Ms: p90 === null ? null : p90 * 1000,
      p99Ms: p99 === null ? null : p99 * 1000,
      feedback: {
        labelled,
        correct: c.feedback.correct,
        accuracy: labelled > 0 ? c.feedback.correct / labelled : null,
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
