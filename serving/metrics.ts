import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';
import { tf } from '../engine/backend';
import { openGraphSessions } from '../engine/graph-session';
import { METRIC, METRIC_PREFIX } from './metric-names';

/**
 * The server's Prometheus metrics, on a registry of its own so that several servers in one
 * process (tests, an embedding application) never share or collide on series.
 */

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
const LOAD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export type Api = 'predict' | 'classify' | 'regress' | 'metadata' | 'status' | 'feedback';
export type Protocol = 'rest' | 'grpc';
/**
 * How a request reached its version: `routed` by the router (traffic split, sticky key, latest), or
 * `pinned` by the caller (/versions/N, /labels/L). Canary windows count routed requests only: a caller
 * that pins a version chooses its own traffic, and must not be able to steer that version's numbers.
 */
export type Route = 'routed' | 'pinned';

/** A metric with a series per label set that can be read back and removed (counters, gauges, histograms). */
interface Removable {
  get(): Promise<{ values: { labels: Record<string, string | number> }[] }>;
  remove(labels: Record<string, string>): void;
}

export class ServingMetrics {
  readonly registry = new Registry();
  /** The metrics labelled by model and version (declared first: the fields below fill it). */
  private readonly perVersion: Removable[] = [];

  readonly requests = this.counter(
    METRIC.requests,
    'Requests by model, version, API, protocol, outcome (the canonical status code, OK on success) and route ' +
      '(routed: placed by the traffic split or latest; pinned: the request named a version or label)',
    ['model', 'version', 'api', 'protocol', 'status', 'route'],
  );

  readonly latency = this.histogram(
    METRIC.latency,
    'Time from a request being read to its answer being ready, by model, version, API, protocol and route',
    ['model', 'version', 'api', 'protocol', 'route'],
    LATENCY_BUCKETS,
  );

  readonly batchSize = this.histogram(
    METRIC.batchSize,
    'Rows per model call (merged requests), by model and version',
    ['model', 'version'],
    BATCH_BUCKETS,
  );

  readonly queueTime = this.histogram(
    METRIC.queueTime,
    'Time a request waited in the batch queue before its model call started',
    ['model', 'version'],
    LATENCY_BUCKETS,
  );

  /**
   * TF Serving's runtime latency: what the model itself takes per call. A request's latency less this (and its
   * queue time) is the server's own work — decoding, routing, answering — which this split makes visible.
   */
  readonly modelCall = this.histogram(
    METRIC.modelCall,
    'Time of each model call (one batch: building its input tensors, running the model, reading its outputs), ' +
      'by model and version',
    ['model', 'version'],
    LATENCY_BUCKETS,
  );

  readonly loadTime = this.histogram(
    METRIC.loadTime,
    'Time to load a version (read, deserialize, warm up), by model',
    ['model'],
    LOAD_BUCKETS,
  );

  readonly loadFailures = this.counter(METRIC.loadFailures, 'Versions that failed to load, by model', ['model']);

  readonly loadedVersions = this.gauge(METRIC.loadedVersions, 'Versions AVAILABLE now, by model', ['model']);

  readonly available = this.gauge(METRIC.available, '1 while a version is AVAILABLE, 0 after it unloaded', [
    'model',
    'version',
  ]);

  readonly predictedClass = this.counter(
    METRIC.predictedClass,
    'Predicted classes (arg-max of a classifier output) by model, version and route, for prediction drift',
    ['model', 'version', 'class', 'route'],
  );

  readonly feedback = this.counter(
    METRIC.feedback,
    'Labelled predictions received as feedback, by model, version, outcome (correct, incorrect; refused: ' +
      'items of a call without a valid feedback token, version ""), client (the token\'s name, or anonymous) ' +
      'and trusted (whether a token vouched for it)',
    ['model', 'version', 'outcome', 'client', 'trusted'],
  );

  readonly feedbackEvictions = this.counter(
    METRIC.feedbackEvictions,
    'Predictions forgotten before their feedback arrived, to keep the feedback memory within its bytes, by model',
    ['model'],
  );

  readonly feedbackMemoryBytes = this.gauge(
    METRIC.feedbackMemoryBytes,
    'Bytes the predictions remembered for feedback take (an estimate: ids, rows and bookkeeping)',
    [],
  );

  readonly feedbackMemoryPredictions = this.gauge(
    METRIC.feedbackMemoryPredictions,
    'Predictions remembered for feedback now (bounded by --feedback-memory-mb and a count)',
    [],
  );

  readonly onlineAccuracy = this.gauge(
    METRIC.onlineAccuracy,
    'Accuracy over the most recent labelled predictions of each version (the feedback window)',
    ['model', 'version'],
  );

  readonly onlineAccuracySamples = this.gauge(
    METRIC.onlineAccuracySamples,
    'Labelled predictions the online accuracy is computed over',
    ['model', 'version'],
  );

  readonly feedbackValues = this.counter(
    METRIC.feedbackValues,
    'True values of regression predictions received as feedback, by model and version',
    ['model', 'version'],
  );

  readonly feedbackAbsoluteError = this.counter(
    METRIC.feedbackAbsoluteError,
    'Sum of |true − predicted| over the regression feedback, by model and version (÷ values = MAE)',
    ['model', 'version'],
  );

  readonly feedbackSquaredError = this.counter(
    METRIC.feedbackSquaredError,
    'Sum of (true − predicted)² over the regression feedback, by model and version (÷ values, √ = RMSE)',
    ['model', 'version'],
  );

  readonly onlineError = this.gauge(
    METRIC.onlineError,
    "A regression's error over its most recent feedback (the feedback window), by measure (mae, rmse)",
    ['model', 'version', 'measure'],
  );

  readonly shadow = this.counter(
    METRIC.shadow,
    'Copies of requests sent to a shadow version, by model, shadow version and outcome ' +
      '(agree / disagree with the served answer, error)',
    ['model', 'version', 'outcome'],
  );

  readonly shadowLatency = this.histogram(
    METRIC.shadowLatency,
    'Time a shadow version took to answer a copied request',
    ['model', 'version'],
    LATENCY_BUCKETS,
  );

  readonly outOfVocabulary = this.counter(
    METRIC.outOfVocabulary,
    'Record values whose category was not in the training vocabulary (answered through the out-of-vocabulary ' +
      'slot), by model and column',
    ['model', 'column'],
  );

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    // Read at each scrape: a leak across hot swaps (bench/soak.ts) shows as a count that keeps rising.
    new Gauge({
      name: METRIC.tfjsTensors,
      help: 'tfjs tensors alive in this process (tf.memory().numTensors)',
      registers: [this.registry],
      collect() {
        this.set(tf.memory().numTensors);
      },
    });
    new Gauge({
      name: METRIC.tfjsBytes,
      help: 'bytes held by tfjs tensors in this process (tf.memory().numBytes)',
      registers: [this.registry],
      collect() {
        this.set(tf.memory().numBytes);
      },
    });
    // A version's graph session holds its weights outside tfjs's tensor count: a leaked one shows here.
    new Gauge({
      name: METRIC.graphSessions,
      help: 'TensorFlow graph sessions open in this process (a graph-executed version holds one)',
      registers: [this.registry],
      collect() {
        this.set(openGraphSessions());
      },
    });
  }

  /**
   * Removes every series of one version of a model: a version unloaded for good must not be exported
   * forever, or each hot swap adds its series (a few dozen: latency and batch histograms, classes,
   * feedback) to the registry and to every scrape. The manager calls this for versions retired long enough.
   */
  async forgetVersion(model: string, version: number): Promise<void> {
    const wanted = String(version);
    for (const metric of this.perVersion) {
      const removed = new Set<string>();
      for (const { labels } of (await metric.get()).values) {
        if (labels.model !== model || String(labels.version) !== wanted) continue;
        // A histogram's bucket samples carry `le` besides the series' own labels.
        const { le: _bucket, ...series } = labels;
        const key = JSON.stringify(series);
        if (removed.has(key)) continue;
        removed.add(key);
        metric.remove(Object.fromEntries(Object.entries(series).map(([k, v]) => [k, String(v)])));
      }
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The same metrics as data (prom-client's JSON form): what the rollout's monitor reads. */
  json(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.registry.getMetricsAsJSON();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  // Each metric lives on this server's registry only.
  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return this.track(new Counter({ name, help, labelNames, registers: [this.registry] }), labelNames);
  }

  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
    return this.track(new Gauge({ name, help, labelNames, registers: [this.registry] }), labelNames);
  }

  private histogram<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    buckets: number[],
  ): Histogram<L> {
    return this.track(new Histogram({ name, help, labelNames, buckets, registers: [this.registry] }), labelNames);
  }

  private track<M>(metric: M, labelNames: readonly string[]): M {
    if (labelNames.includes('model') && labelNames.includes('version'))
      this.perVersion.push(metric as unknown as Removable);
    return metric;
  }
}
