import type { BatchingOptions } from './config';
import { ServingError } from './errors';
import { sliceRows, stringTensor, type DenseTensor } from './tensors';

/**
 * Dynamic batching for one version: requests are merged into one model call of up to
 * `max_batch_size` rows. A batch is cut when it is full, when `batch_timeout_micros` has passed
 * since its first request, or — with the default timeout 0 — at the end of the current
 * event-loop turn. Model calls are synchronous and block the loop, so every request that
 * arrived while the previous batch ran is read in one turn and lands in the next batch: a busy
 * server batches as much as the load offers.
 *
 * An idle version runs a request at once, inside the caller's turn, as TF Serving forms a batch
 * the moment a thread is free: nothing to wait for, so no queue, timer or extra turn. "Idle"
 * means nothing is queued and no model call ran in this event-loop turn or the one before —
 * under load every turn runs a batch, so requests keep queueing and merging; a quiet server
 * answers its next request with no added wait whatever `batch_timeout_micros` says.
 *
 * The queue is bounded (`max_enqueued_batches` × `max_batch_size` rows); beyond it a request is
 * refused with RESOURCE_EXHAUSTED (HTTP 429) instead of growing the latency of everyone queued.
 */

export interface BatchObserver {
  batch(rows: number): void;
  queued(seconds: number): void;
}

interface Task {
  inputs: DenseTensor[];
  rows: number;
  enqueuedAt: number;
  resolve(outputs: DenseTensor[]): void;
  reject(error: Error): void;
}

type Run = (inputs: DenseTensor[]) => DenseTensor[];

export class Batcher {
  private queue: Task[] = [];
  private queuedRows = 0;
  private scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly run: Run,
    private readonly options: BatchingOptions,
    private readonly observer: BatchObserver,
  ) {}

  /**
   * The outputs of `inputs`' rows: at once (an array) when the request ran on the spot, else a
   * promise settled when its batch ran. A request refused (unloading, queue full) or whose
   * on-the-spot call failed throws.
   */
  submit(inputs: DenseTensor[]): DenseTensor[] | Promise<DenseTensor[]> {
    if (this.closed) throw new ServingError('UNAVAILABLE', 'the version is unloading');
    const rows = inputs[0]?.shape[0] ?? 0;
    // Unbatched, or batched with nothing to merge with: one model call for this request, now.
    if (!this.options.enabled || (this.queue.length === 0 && this.scheduled === undefined && this.busyTurns === 0)) {
      this.observer.batch(rows);
      this.observer.queued(0);
      if (this.options.enabled) this.markBusy();
      return this.run(inputs);
    }
    const limit = this.options.max_enqueued_batches * this.options.max_batch_size;
    if (this.queuedRows + rows > limit && this.queue.length > 0) {
      throw new ServingError(
        'RESOURCE_EXHAUSTED',
        `the batch queue of this version is full (${this.queuedRows} rows waiting, limit ${limit}); retry later`,
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ inputs, rows, enqueuedAt: performance.now(), resolve, reject });
      this.queuedRows += rows;
      this.schedule();
    });
  }

  private schedule(): void {
    const full = this.queuedRows >= this.options.max_batch_size;
    if (this.scheduled) {
      // A full batch does not wait for a pending timeout.
      if (!full || this.isImmediate) return;
      this.clear();
    }
    if (full || this.options.batch_timeout_micros === 0) {
      // At the end of this turn, not inline: the caller is still inside its request handler,
      // and other requests read in this turn should join.
      this.isImmediate = true;
      this.scheduled = setImmediate(() => this.flush());
    } else {
      this.isImmediate = false;
      this.scheduled = setTimeout(() => this.flush(), this.options.batch_timeout_micros / 1000);
    }
  }

  private isImmediate = false;

  /**
   * Turns left before the version counts as idle again: a model call sets 2, the check phase
   * of each following event-loop turn takes one off. A call made while the loop reads requests
   * (the idle path) thus keeps the requests read in the next turn queueing, as does a batch run
   * at the end of a turn.
   */
  private busyTurns = 0;
  private busyTicker: NodeJS.Immediate | undefined;

  private markBusy(): void {
    this.busyTurns = 2;
    this.busyTicker ??= setImmediate(this.tick);
  }

  private readonly tick = (): void => {
    this.busyTurns--;
    this.busyTicker = this.busyTurns > 0 ? setImmediate(this.tick) : undefined;
  };

  private clear(): void {
    if (this.scheduled === undefined) return;
    if (this.isImmediate) clearImmediate(this.scheduled as NodeJS.Immediate);
    else clearTimeout(this.scheduled as NodeJS.Timeout);
    this.scheduled = undefined;
  }

  private flush(): void {
    this.scheduled = undefined;
    if (this.queue.length === 0) return;
    // Take whole requests up to max_batch_size rows (always at least one, however large).
    const batch: Task[] = [];
    let rows = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (batch.length > 0 && rows + next.rows > this.options.max_batch_size) break;
      batch.push(this.queue.shift()!);
      rows += next.rows;
    }
    this.queuedRows -= rows;
    this.execute(batch, rows);
    if (this.queue.length > 0) this.schedule();
  }

  private execute(batch: Task[], rows: number): void {
    this.markBusy();
    const started = performance.now();
    for (const task of batch) this.observer.queued((started - task.enqueuedAt) / 1000);
    this.observer.batch(rows);
    let outputs: DenseTensor[];
    try {
      outputs = this.run(batch.length === 1 ? batch[0]!.inputs : concatInputs(batch, rows));
    } catch (error) {
      for (const task of batch) task.reject(error as Error);
      return;
    }
    if (batch.length === 1) {
      batch[0]!.resolve(outputs);
      return;
    }
    let start = 0;
    for (const task of batch) {
      task.resolve(outputs.map((o) => sliceRows(o, start, task.rows)));
      start += task.rows;
    }
  }

  /** Refuses new requests; requests already queued still run (their handles are held). */
  close(): void {
    this.closed = true;
    if (this.queue.length > 0 && !this.scheduled) {
      this.isImmediate = true;
      this.scheduled = setImmediate(() => this.flush());
    }
  }
}

function concatInputs(batch: Task[], rows: number): DenseTensor[] {
  const first = batch[0]!.inputs;
  return first.map((template, i) => {
    if (template.strings)
      return stringTensor(
        [rows, ...template.shape.slice(1)],
        batch.flatMap((task) => task.inputs[i]!.strings!),
      );
    const size = template.data.length / template.shape[0]!;
    const data = template.dtype === 'int32' ? new Int32Array(rows * size) : new Float32Array(rows * size);
    let offset = 0;
    for (const task of batch) {
      const part = task.inputs[i]!.data;
      data.set(part, offset);
      offset += part.length;
    }
    return { dtype: template.dtype, shape: [rows, ...template.shape.slice(1)], data };
  });
}
