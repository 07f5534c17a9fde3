import { z } from 'zod';
import { ANONYMOUS_CLIENT, type FeedbackCaller } from './feedback-auth';
import type { ServingMetrics } from './metrics';

const ANONYMOUS: FeedbackCaller = { client: ANONYMOUS_CLIENT, trusted: false };

/**
 * Online accuracy from feedback. Each classifier prediction is remembered by its request id
 * (the predicted class of every row, and the version that answered); when the true labels
 * arrive, each row counts as correct or not for that version. A regression's predicted values
 * are remembered the same way, and the true `values` sent back give the version's online error
 * (MAE and RMSE over its window; the sums of absolute and squared errors as counters). The accuracy is over the last
 * `window` labelled rows of each version, so it follows the model as the traffic changes.
 */

export const FeedbackBodySchema = z
  .object({
    feedback: z
      .array(
        z
          .object({
            request_id: z.string().min(1).max(256),
            /** The true class of each row of that request (a number when it had one row): a classifier's. */
            labels: z.union([z.number().int().min(0), z.array(z.number().int().min(0)).min(1)]).optional(),
            /** The true value of each row (a number when it had one row): a regression's. */
            values: z.union([z.number(), z.array(z.number()).min(1)]).optional(),
          })
          .strict()
          .refine((item) => (item.labels === undefined) !== (item.values === undefined), {
            message: 'give exactly one of "labels" (a classifier) or "values" (a regression)',
          }),
      )
      .min(1)
      .max(100_000),
  })
  .strict();
export type FeedbackBody = z.infer<typeof FeedbackBodySchema>;

interface Remembered {
  model: string;
  version: number;
  /** A classifier's predicted classes, or a regression's predicted values, one per row. */
  classes: Int32Array | Float32Array;
}

/** The last `size` absolute errors of a regression version, with running sums for MAE and RMSE. */
class ErrorWindow {
  private readonly errors: Float64Array;
  private next = 0;
  count = 0;
  absolute = 0;
  squared = 0;

  constructor(size: number) {
    this.errors = new Float64Array(size);
  }

  add(error: number): void {
    const e = Math.abs(error);
    if (this.count === this.errors.length) {
      const old = this.errors[this.next]!;
      this.absolute -= old;
      this.squared -= old * old;
    } else this.count++;
    this.errors[this.next] = e;
    this.absolute += e;
    this.squared += e * e;
    this.next = (this.next + 1) % this.errors.length;
  }

  get mae(): number {
    return this.absolute / this.count;
  }

  get rmse(): number {
    // Running sums drift below 0 by rounding when every error left is 0.
    return Math.sqrt(Math.max(0, this.squared) / this.count);
  }
}

class Window {
  private readonly outcomes: Uint8Array;
  private next = 0;
  count = 0;
  correct = 0;

  constructor(size: number) {
    this.outcomes = new Uint8Array(size);
  }

  add(correct: boolean): void {
    if (this.count === this.outcomes.length) this.correct -= this.outcomes[this.next]!;
    else this.count++;
    this.outcomes[this.next] = correct ? 1 : 0;
    this.correct += correct ? 1 : 0;
    this.next = (this.next + 1) % this.outcomes.length;
  }
}

export interface FeedbackResult {
  accepted: number;
  rows: number;
  unknown_request_ids: string[];
  rejected: { request_id: string; reason: string }[];
}

/**
 * What one remembered prediction costs beyond its rows: the id (a UUID, two bytes a character), the
 * Map entry, the record and its typed array's header, the order entry. An estimate on the high side,
 * so that the bound holds for the heap, not just for the rows.
 */
export const PREDICTION_OVERHEAD_BYTES = 320;

export class FeedbackStore {
  private readonly predictions = new Map<string, Remembered & { seq: number; bytes: number }>();
  /**
   * The order predictions were first remembered in, oldest first (from `head`). Not the Map's own
   * order: taking the Map's first key after deleting from its front scans every deleted slot
   * since V8 last rehashed it — tens of µs per request once the memory is full. An entry whose
   * prediction was since labelled (deleted) or remembered again is stale and skipped.
   */
  private order: { id: string; seq: number }[] = [];
  private head = 0;
  private seq = 0;
  /** Bytes the remembered predictions take (see PREDICTION_OVERHEAD_BYTES), kept ≤ memoryBytes. */
  private bytes = 0;
  private readonly windows = new Map<string, Window>();
  private readonly errorWindows = new Map<string, ErrorWindow>();

  /**
   * `memoryBytes` bounds the predictions remembered by what they take (rows × row size and a fixed
   * cost each), oldest forgotten first; `memoryEntries` bounds their count as well.
   */
  constructor(
    private readonly metrics: ServingMetrics,
    private readonly window: number,
    private readonly memoryEntries: number,
    private readonly memoryBytes: number = 64 * 1024 * 1024,
  ) {}

  /** Bytes the remembered predictions take now. */
  get memoryUsed(): number {
    return this.bytes;
  }

  /** Predictions remembered now. */
  get remembered(): number {
    return this.predictions.size;
  }

  /**
   * `requestId` is the server's own (random, unguessable: a caller cannot name another's prediction).
   * `classes`: a classifier's predicted class per row (Int32Array), or a regression's value (Float32Array).
   */
  remember(requestId: string, model: string, version: number, classes: Int32Array | Float32Array): void {
    const bytes = PREDICTION_OVERHEAD_BYTES + 2 * requestId.length + classes.byteLength;
    if (bytes > this.memoryBytes) {
      // Larger than the whole memory: never remembered (its feedback will be an unknown id).
      this.metrics.feedbackEvictions.inc({ model });
      return;
    }
    const existing = this.predictions.get(requestId);
    // Remembered again (the same id): it keeps its place, as a Map key would.
    const seq = existing ? existing.seq : this.seq++;
    if (existing) this.bytes -= existing.bytes;
    this.predictions.set(requestId, { model, version, classes, seq, bytes });
    this.bytes += bytes;
    if (!existing) this.order.push({ id: requestId, seq });
    // Forget the oldest while over memory.
    while (this.predictions.size > this.memoryEntries || this.bytes > this.memoryBytes) {
      const oldest = this.order[this.head++]!;
      const prediction = this.predictions.get(oldest.id);
      if (prediction?.seq === oldest.seq) {
        this.forget(oldest.id, prediction);
        this.metrics.feedbackEvictions.inc({ model: prediction.model });
      }
    }
    const pending = this.order.length - this.head;
    if (pending > 2 * this.predictions.size + 1024) {
      // Mostly stale (most predictions got their feedback): rebuild from the live ones, in order.
      this.order = [...this.predictions].map(([id, p]) => ({ id, seq: p.seq })).sort((a, b) => a.seq - b.seq);
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    this.gauges();
  }

  private gauges(): void {
    this.metrics.feedbackMemoryBytes.set(this.bytes);
    this.metrics.feedbackMemoryPredictions.set(this.predictions.size);
  }

  /**
   * Forgets a version retired for good (the manager says when): its accuracy and error windows, and its
   * predictions still awaiting labels — their feedback now finds an unknown id, as an evicted one's does,
   * instead of bringing back the version's windows and series. A scan of the memory, once per retired version.
   */
  forgetVersion(model: string, version: number): void {
    const key = `${model}\0${version}`;
    this.windows.delete(key);
    this.errorWindows.delete(key);
    for (const [id, prediction] of this.predictions)
      if (prediction.version === version && prediction.model === model) this.forget(id, prediction);
    this.gauges();
  }

  private forget(id: string, prediction: { bytes: number }): void {
    this.predictions.delete(id);
    this.bytes -= prediction.bytes;
  }

  /** Items of a :feedback call refused (no valid token): counted, never looked up. */
  refused(model: string, body: unknown, caller: string): void {
    const items = (body as { feedback?: unknown } | null)?.feedback;
    const n = Array.isArray(items) ? Math.min(items.length, 100_000) : 1;
    this.metrics.feedback.inc({ model, version: '', outcome: 'refused', client: caller, trusted: 'false' }, n);
  }

  record(model: string, body: FeedbackBody, caller: FeedbackCaller = ANONYMOUS): FeedbackResult {
    const result: FeedbackResult = { accepted: 0, rows: 0, unknown_request_ids: [], rejected: [] };
    const touched = new Set<string>();
    const who = { client: caller.client, trusted: String(caller.trusted) };
    for (const item of body.feedback) {
      const prediction = this.predictions.get(item.request_id);
      if (!prediction || prediction.model !== model) {
        result.unknown_request_ids.push(item.request_id);
        continue;
      }
      const regression = prediction.classes instanceof Float32Array;
      if (regression !== (item.values !== undefined)) {
        result.rejected.push({
          request_id: item.request_id,
          reason: regression
            ? 'the prediction is a regression: send "values"'
            : 'the prediction is a classification: send "labels"',
        });
        continue;
      }
      if (item.values !== undefined) {
        const values = typeof item.values === 'number' ? [item.values] : item.values;
        if (values.length !== prediction.classes.length || !values.every(Number.isFinite)) {
          result.rejected.push({
            request_id: item.request_id,
            reason: `${values.length} values for a prediction of ${prediction.classes.length} rows (finite numbers)`,
          });
          continue;
        }
        this.forget(item.request_id, prediction);
        this.recordValues(model, prediction, values);
        result.accepted++;
        result.rows += values.length;
        continue;
      }
      const labels = typeof item.labels === 'number' ? [item.labels] : item.labels!;
      if (labels.length !== prediction.classes.length) {
        result.rejected.push({
          request_id: item.request_id,
          reason: `${labels.length} labels for a prediction of ${prediction.classes.length} rows`,
        });
        continue;
      }
      // Each prediction is labelled once: a retried feedback call does not count twice.
      this.forget(item.request_id, prediction);
      const key = `${model}\0${prediction.version}`;
      let window = this.windows.get(key);
      if (!window) this.windows.set(key, (window = new Window(this.window)));
      const version = String(prediction.version);
      labels.forEach((label, i) => {
        const correct = label === prediction.classes[i];
        window.add(correct);
        this.metrics.feedback.inc({ model, version, outcome: correct ? 'correct' : 'incorrect', ...who });
      });
      touched.add(key);
      result.accepted++;
      result.rows += labels.length;
    }
    this.gauges();
    for (const key of touched) {
      const [m, version] = key.split('\0') as [string, string];
      const w = this.windows.get(key)!;
      this.metrics.onlineAccuracy.set({ model: m, version }, w.correct / w.count);
      this.metrics.onlineAccuracySamples.set({ model: m, version }, w.count);
    }
    return result;
  }

  /** A regression's true values against its predictions: the error window, the counters and gauges. */
  private recordValues(model: string, prediction: Remembered, values: number[]): void {
    const key = `${model}\0${prediction.version}`;
    let window = this.errorWindows.get(key);
    if (!window) this.errorWindows.set(key, (window = new ErrorWindow(this.window)));
    const labels = { model, version: String(prediction.version) };
    let absolute = 0;
    let squared = 0;
    values.forEach((value, i) => {
      const error = value - prediction.classes[i]!;
      window.add(error);
      absolute += Math.abs(error);
      squared += error * error;
    });
    this.metrics.feedbackValues.inc(labels, values.length);
    this.metrics.feedbackAbsoluteError.inc(labels, absolute);
    this.metrics.feedbackSquaredError.inc(labels, squared);
    this.metrics.onlineError.set({ ...labels, measure: 'mae' }, window.mae);
    this.metrics.onlineError.set({ ...labels, measure: 'rmse' }, window.rmse);
  }

  /** A regression version's error over its feedback window. */
  error(model: string, version: number): { mae: number; rmse: number; samples: number } | undefined {
    const w = this.errorWindows.get(`${model}\0${version}`);
    return w && w.count > 0 ? { mae: w.mae, rmse: w.rmse, samples: w.count } : undefined;
  }

  accuracy(model: string, version: number): { accuracy: number; samples: number } | undefined {
    const w = this.windows.get(`${model}\0${version}`);
    return w && w.count > 0 ? { accuracy: w.correct / w.count, samples: w.count } : undefined;
  }
}
