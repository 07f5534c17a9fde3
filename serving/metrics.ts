import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The server's Prometheus metrics, on a registry of its own so that several servers in one
 * process (tests, an embedding application) never share or collide on series.
 */

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
const LOAD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export type Api = 'predict' | 'classify' | 'metadata' | 'status' | 'feedback';
export type Protocol = 'rest' | 'grpc';

export class ServingMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'gantry_serving_requests_total',
    help: 'Requests by model, version, API, protocol and outcome (the canonical status code, OK on success)',
    labelNames: ['model', 'version', 'api', 'protocol', 'status'] as const,
    registers: [this.registry],
  });

  readonly latency = new Histogram({
    name: 'gantry_serving_request_duration_seconds',
    help: 'Time from a request being read to its answer being ready, by model, version, API and protocol',
    labelNames: ['model', 'version', 'api', 'protocol'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly batchSize = new Histogram({
    name: 'gantry_serving_batch_size',
    help: 'Rows per model call (merged requests), by model and version',
    labelNames: ['model', 'version'] as const,
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });

  readonly queueTime = new Histogram({
    name: 'gantry_serving_queue_seconds',
    help: 'Time a request waited in the batch queue before its model call started',
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly loadTime = new Histogram({
    name: 'gantry_serving_load_seconds',
    help: 'Time to load a version (read, deserialize, warm up), by model',
    labelNames: ['model'] as const,
    buckets: LOAD_BUCKETS,
    registers: [this.registry],
  });

  readonly loadFailures = new Counter({
    name: 'gantry_serving_load_failures_total',
    help: 'Versions that failed to load, by model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly loadedVersions = new Gauge({
    name: 'gantry_serving_loaded_versions',
    help: 'Versions AVAILABLE now, by model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly available = new Gauge({
    name: 'gantry_serving_version_available',
    help: '1 while a version is AVAILABLE, 0 after it unloaded',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });

  readonly predictedClass = new Counter({
    name: 'gantry_serving_predicted_class_total',
    help: 'Predicted classes (arg-max of a classifier output) by model and version, for prediction drift',
    labelNames: ['model', 'version', 'class'] as const,
    registers: [this.registry],
  });

  readonly feedback = new Counter({
    name: 'gantry_serving_feedback_total',
    help: 'Labelled predictions received as feedback, by model, version and outcome (correct, incorrect)',
    labelNames: ['model', 'version', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly onlineAccuracy = new Gauge({
    name: 'gantry_serving_online_accuracy',
    help: 'Accuracy over the most recent labelled predictions of each version (the feedback window)',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });

  readonly onlineAccuracySamples = new Gauge({
    name: 'gantry_serving_online_accuracy_samples',
    help: 'Labelled predictions the online accuracy is computed over',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });

  readonly shadow = new Counter({
    name: 'gantry_serving_shadow_requests_total',
    help: 'Copies of requests sent to a shadow version, by model, shadow version and outcome (agree / disagree with the served answer, error)',
    labelNames: ['model', 'version', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly shadowLatency = new Histogram({
    name: 'gantry_serving_shadow_duration_seconds',
    help: 'Time a shadow version took to answer a copied request',
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'gantry_serving_' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
