/**
 * The names of the server's Prometheus metrics, declared once: serving/metrics.ts registers them
 * and serving/metrics-snapshot.ts reads them back. A module of constants only (no prom-client), so
 * the reader stays free of runtime imports.
 */

/** prom-client's default metrics (process, heap, event loop) carry this prefix too. */
export const METRIC_PREFIX = 'gantry_serving_';

export const METRIC = {
  requests: `${METRIC_PREFIX}requests_total`,
  latency: `${METRIC_PREFIX}request_duration_seconds`,
  batchSize: `${METRIC_PREFIX}batch_size`,
  queueTime: `${METRIC_PREFIX}queue_seconds`,
  modelCall: `${METRIC_PREFIX}model_call_seconds`,
  loadTime: `${METRIC_PREFIX}load_seconds`,
  loadFailures: `${METRIC_PREFIX}load_failures_total`,
  loadedVersions: `${METRIC_PREFIX}loaded_versions`,
  tfjsTensors: `${METRIC_PREFIX}tfjs_tensors`,
  tfjsBytes: `${METRIC_PREFIX}tfjs_bytes`,
  graphSessions: `${METRIC_PREFIX}graph_sessions`,
  available: `${METRIC_PREFIX}version_available`,
  predictedClass: `${METRIC_PREFIX}predicted_class_total`,
  feedback: `${METRIC_PREFIX}feedback_total`,
  feedbackEvictions: `${METRIC_PREFIX}feedback_evictions_total`,
  feedbackMemoryBytes: `${METRIC_PREFIX}feedback_memory_bytes`,
  feedbackMemoryPredictions: `${METRIC_PREFIX}feedback_memory_predictions`,
  onlineAccuracy: `${METRIC_PREFIX}online_accuracy`,
  onlineAccuracySamples: `${METRIC_PREFIX}online_accuracy_samples`,
  feedbackValues: `${METRIC_PREFIX}feedback_values_total`,
  feedbackAbsoluteError: `${METRIC_PREFIX}feedback_absolute_error_total`,
  feedbackSquaredError: `${METRIC_PREFIX}feedback_squared_error_total`,
  onlineError: `${METRIC_PREFIX}online_error`,
  shadow: `${METRIC_PREFIX}shadow_requests_total`,
  shadowLatency: `${METRIC_PREFIX}shadow_duration_seconds`,
  outOfVocabulary: `${METRIC_PREFIX}out_of_vocabulary_total`,
  /** One of the default metrics: tells a restarted server from one whose counters only grew. */
  processStartTime: `${METRIC_PREFIX}process_start_time_seconds`,
} as const;

/**
 * The `model` or `version` label of a request that named a model, version or label this server does not serve:
 * one series for all of them, so a client cannot mint series (and the server's memory and every scrape's size)
 * by inventing names. It cannot collide: model names start with a letter or digit, versions are numbers.
 */
export const UNKNOWN_LABEL = '_unknown';
