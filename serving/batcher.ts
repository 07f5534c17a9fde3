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
 * means nothing is queued, no model call ran earlier in this event-loop turn, and no batch of
 * queued requests ran in this turn or at the end of the one before (BusyTurns). A request that
 * ran on the spot does not make the next turn busy: at concurrency 1 the next request is read in
 * the turn after the previous answer was written (sooner the busier the machine), and it must run
 * on the spot too, not wait for the end of its turn. Under load every turn runs a batch, so
 * requests keep queueing and merging; a quiet server answers its next request with no added wait
 * whatever `batch_timeout_micros` says.
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

/**
 * Which event-loop turns a version counts as busy in: a pure state machine, told of model calls
 * and of the end of each turn by the batcher (its check-phase callback), so its rule is tested
 * without timing. Turns are counted only while someone is busy; when nobody is, `turn` stands
 * for whatever turn the next call comes in.
 */
export class BusyTurns {
  private turn = 0;
  private busyThrough = -1;

  get busy(): boolean {
    return this.turn <= this.busyThrough;
  }

  /** A request ran on the spot: the rest of this turn queues behind it (they arrived together). */
  ranInline(): void {
    this.busyThrough = Math.max(this.busyThrough, this.turn);
  }

  /**
   * A batch of queued requests ran (at the end of this turn, or on its timeout): this turn and
   * the next queue, so that the requests a loaded server reads next merge instead of the first
   * of them running alone.
   */
  ranBatch(): void {
    this.busyThrough = Math.max(this.busyThrough, this.turn + 1);
  }

  /** The end of a turn; true while the next turn is busy too (so its end must be reported). */
  endTurn(): boolean {
    this.turn++;
    return this.busy;
  }
}

export class Batcher {
  private queue: Task[] = [];
  private queuedRows = 0;
  private closed = false;
  private readonly turns = new BusyTurns();
  /** The check-phase callback of this turn (endOfTurn), when one is pending. */
  private endOfTurnPending: NodeJS.Immediate | undefined;
  /** Whether endOfTurn flushes the queue (timeout 0, or a full batch), else a timer does. */
  private flushAtEndOfTurn = false;
  private timer: NodeJS.Timeout | undefined;

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
    if (!this.options.enabled || (this.queue.length === 0 && !this.turns.busy)) {
      this.observer.batch(rows);
      this.observer.queued(0);
      if (this.options.enabled) {
        this.turns.ranInline();
        this.atEndOfTurn();
      }
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
    if (this.flushAtEndOfTurn) return;
    // A full batch does not wait for a pending timeout.
    if (this.queuedRows >= this.options.max_batch_size || this.options.batch_timeout_micros === 0) {
      // At the end of this turn, not inline: the caller is still inside its request handler,
      // and other requests read in this turn should join.
      this.clearTimer();
      this.flushAtEndOfTurn = true;
      this.atEndOfTurn();
    } else {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.options.batch_timeout_micros / 1000);
    }
  }

  private atEndOfTurn(): void {
    this.endOfTurnPending ??= setImmediate(this.endOfTurn);
  }

  /** The check phase of a turn: runs the batch due now, then tells BusyTurns the turn ended. */
  private readonly endOfTurn = (): void => {
    this.endOfTurnPending = undefined;
    if (this.flushAtEndOfTurn) {
      this.flushAtEndOfTurn = false;
      this.flush();
    }
    if (this.turns.endTurn()) this.atEndOfTurn();
  };

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flush(): void {
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
    this.turns.ranBatch();
    this.atEndOfTurn();
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
    if (this.queue.length > 0) {
      this.clearTimer();
      this.flushAtEndOfTurn = true;
      this.atEndOfTurn();
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
