import { FrameType, type FramedSocket } from './frames';
import type { Operation } from './lifecycle';

/**
 * The collectives over the TCP ring: all-reduce, broadcast, reduce and barrier. Each is a pipeline
 * around the ring, so every link carries the same bytes and no rank is a hot spot. Data flows
 * r+1 → r → r−1: a rank receives from `upstream` (rank r+1) and sends to `downstream` (rank r−1).
 * (The shared-memory all-reduce is in shared-memory.ts; transport.ts picks between the two.)
 */

/** One rank's place in a formed ring: what the algorithms run over. */
export interface RingLinks {
  rank: number;
  size: number;
  /** Dialled to rank+1: data arrives here. */
  upstream: FramedSocket;
  /** Accepted from rank−1: data leaves here. */
  downstream: FramedSocket;
  /** Data frames carry at most this many bytes. */
  chunkBytes: number;
}

/**
 * In place: every rank ends with the element-wise sum (or mean), bit-identical everywhere. Ring
 * reduce-scatter then all-gather: each rank sends and receives 2(N−1)/N × the bytes, in chunks
 * that are pipelined (a chunk is forwarded as soon as it has been reduced).
 */
export async function ringAllReduce(ring: RingLinks, data: Float32Array, mean: boolean, run: Operation): Promise<void> {
  const n = ring.size;
  const r = ring.rank;
  const { upstream, downstream } = ring;
  const segments = splitEvenly(data.length, n);
  const chunkFloats = ring.chunkBytes / 4;
  const steps = 2 * (n - 1);
  // Step t (0 ≤ t < 2(N−1)): send segment r+t, receive segment r+t+1 (which rank r+1 sends as
  // its own "r+t"). Steps < N−1 reduce-scatter (add what arrives), the rest all-gather (copy
  // it). The segment sent at step t is the one received at step t−1, chunk for chunk, so chunk c
  // of step t goes out as soon as chunk c of step t−1 has arrived. Each segment's sum is built
  // once, in ring order starting at its own index, by the ranks that hold it in turn; its owner
  // (rank segment+1) finishes it (and applies the mean) and everyone else receives those very
  // bytes: every rank ends bit-identical.
  const receives: Chunk[] = [];
  const firstReceiveOfStep: number[] = [];
  for (let t = 0; t < steps; t++) {
    firstReceiveOfStep.push(receives.length);
    const [start, end] = segments[mod(r + t + 1, n)]!;
    for (const [s, e] of chunkRanges(start, end, chunkFloats)) receives.push({ step: t, start: s, end: e, after: 0 });
  }
  const sends: Chunk[] = [];
  for (let t = 0; t < steps; t++) {
    const [start, end] = segments[mod(r + t, n)]!;
    let c = 0;
    for (const [s, e] of chunkRanges(start, end, chunkFloats)) {
      sends.push({ step: t, start: s, end: e, after: t === 0 ? 0 : firstReceiveOfStep[t - 1]! + c + 1 });
      c++;
    }
  }
  const progress = new Progress();
  run.onAbort((error) => progress.fail(error));
  const scale = 1 / n;
  const what = (chunk: Chunk): string =>
    `${run.label} (step ${chunk.step + 1} of ${steps}, floats ${chunk.start}–${chunk.end})`;

  const receiveAll = async (): Promise<void> => {
    await pipelinedReceives(
      receives.length,
      (i) => {
        const chunk = receives[i]!;
        const region = data.subarray(chunk.start, chunk.end);
        const base = { type: FrameType.AllReduce, tag: run.tag, what: what(chunk), timeoutMs: run.timeoutMs };
        if (chunk.step >= n - 1) return upstream.receive({ ...base, into: bytesOf(region) });
        // The last reduce-scatter step completes the segment's sum: the mean is applied there, once.
        return upstream.receive({ ...base, addInto: region, ...(mean && chunk.step === n - 2 ? { scale } : {}) });
      },
      () => progress.advance(),
    );
  };
  const sendAll = async (): Promise<void> => {
    for (const chunk of sends) {
      if (progress.value < chunk.after) await progress.until(chunk.after);
      run.check();
      if (!downstream.send(FrameType.AllReduce, run.tag, data.subarray(chunk.start, chunk.end)))
        await downstream.drain(run.timeoutMs, what(chunk));
    }
    // The frames are views of `data`: it may not change until they have left.
    await downstream.flush(run.timeoutMs, `the end of ${run.label}`);
  };
  await Promise.all([sendAll(), receiveAll()]);
}

/** In place: every rank ends with `root`'s data. Chunks are pipelined along the ring from root. */
export async function ringBroadcast(ring: RingLinks, data: Float32Array, root: number, run: Operation): Promise<void> {
  const n = ring.size;
  const { upstream, downstream } = ring;
  const chunks = chunkRanges(0, data.length, ring.chunkBytes / 4);
  const what = (i: number): string => `${run.label} from root ${root} (chunk ${i + 1} of ${chunks.length})`;
  const send = async (i: number): Promise<void> => {
    const [start, end] = chunks[i]!;
    run.check();
    if (!downstream.send(FrameType.Broadcast, run.tag, data.subarray(start, end)))
      await downstream.drain(run.timeoutMs, what(i));
  };
  if (ring.rank === root) {
    for (let i = 0; i < chunks.length; i++) await send(i);
  } else {
    // Forward each chunk as soon as it has arrived, unless the next rank down is the root.
    const forward = mod(ring.rank - 1, n) !== root;
    await pipelinedReceives(
      chunks.length,
      (i) => {
        const [start, end] = chunks[i]!;
        return upstream.receive({
          type: FrameType.Broadcast,
          tag: run.tag,
          what: what(i),
          timeoutMs: run.timeoutMs,
          into: bytesOf(data.subarray(start, end)),
        });
      },
      forward ? send : undefined,
    );
    if (!forward) return;
  }
  await downstream.flush(run.timeoutMs, `the end of ${run.label}`);
}

/**
 * `root`'s data becomes the sum (or mean) over all ranks; the other ranks' data is left as it
 * was. Partial sums flow down the ring from root−1 to root, pipelined in chunks.
 */
export async function ringReduce(
  ring: RingLinks,
  data: Float32Array,
  root: number,
  mean: boolean,
  run: Operation,
): Promise<void> {
  const n = ring.size;
  const { upstream, downstream } = ring;
  const chunks = chunkRanges(0, data.length, ring.chunkBytes / 4);
  // Position along the chain root−1 → root−2 → … → root+1 → root; the sum is accumulated in
  // that order.
  const position = mod(root - 1 - ring.rank, n);
  const what = (i: number): string => `${run.label} to root ${root} (chunk ${i + 1} of ${chunks.length})`;
  const send = async (i: number, payload: Float32Array): Promise<void> => {
    run.check();
    if (!downstream.send(FrameType.Reduce, run.tag, payload)) await downstream.drain(run.timeoutMs, what(i));
  };
  if (position === 0) {
    for (let i = 0; i < chunks.length; i++) await send(i, data.subarray(chunks[i]![0], chunks[i]![1]));
  } else if (position < n - 1) {
    // Partial sums go into fresh buffers: this rank's own data stays as it was.
    const partials: Float32Array[] = [];
    await pipelinedReceives(
      chunks.length,
      (i) => {
        const [start, end] = chunks[i]!;
        const partial = data.slice(start, end);
        partials[i] = partial;
        return upstream.receive({
          type: FrameType.Reduce,
          tag: run.tag,
          what: what(i),
          timeoutMs: run.timeoutMs,
          addInto: partial,
        });
      },
      async (i) => {
        await send(i, partials[i]!);
        delete partials[i];
      },
    );
  } else {
    const scale = 1 / n;
    await pipelinedReceives(chunks.length, (i) => {
      const [start, end] = chunks[i]!;
      return upstream.receive({
        type: FrameType.Reduce,
        tag: run.tag,
        what: what(i),
        timeoutMs: run.timeoutMs,
        addInto: data.subarray(start, end),
        ...(mean ? { scale } : {}),
      });
    });
    return;
  }
  await downstream.flush(run.timeoutMs, `the end of ${run.label}`);
}

/**
 * N−1 rounds of passing a token down the ring; a rank forwards token k only after receiving
 * token k−1, so receiving token N−1 proves that all N−1 other ranks have entered.
 */
export async function ringBarrier(ring: RingLinks, run: Operation): Promise<void> {
  const rounds = ring.size - 1;
  for (let round = 1; round <= rounds; round++) {
    run.check();
    ring.downstream.send(FrameType.Barrier, run.tag);
    await ring.upstream.receive({
      type: FrameType.Barrier,
      tag: run.tag,
      byteLength: 0,
      what: `${run.label} (round ${round} of ${rounds})`,
      timeoutMs: run.timeoutMs,
    });
  }
  await ring.downstream.flush(run.timeoutMs, `the end of ${run.label}`);
}

/** [start, end) of N nearly equal segments: the first length % N get one element more. */
export function splitEvenly(length: number, parts: number): Array<[number, number]> {
  const base = Math.floor(length / parts);
  const extra = length % parts;
  const segments: Array<[number, number]> = [];
  for (let i = 0, start = 0; i < parts; i++) {
    const end = start + base + (i < extra ? 1 : 0);
    segments.push([start, end]);
    start = end;
  }
  return segments;
}

/** a modulo n, never negative: positions around the ring. */
export function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** How many chunks the receiving side has finished: the sending side waits on it. */
class Progress {
  value = 0;
  private waiter: { target: number; resolve: () => void; reject: (error: Error) => void } | undefined;
  private error: Error | undefined;

  advance(): void {
    this.value++;
    if (this.waiter && this.value >= this.waiter.target) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve();
    }
  }

  until(target: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.value >= target) return Promise.resolve();
    return new Promise((resolve, reject) => (this.waiter = { target, resolve, reject }));
  }

  fail(error: Error): void {
    this.error = error;
    this.waiter?.reject(error);
    this.waiter = undefined;
  }
}

interface Chunk {
  step: number;
  start: number;
  end: number;
  /** Sends only: how many receives must have completed first. */
  after: number;
}

/**
 * Receive `count` frames in order, always keeping the next receive posted while one is being
 * handled, so that a frame that arrives during `handle` streams straight into its destination
 * instead of being buffered and copied twice.
 */
async function pipelinedReceives(
  count: number,
  post: (i: number) => Promise<unknown>,
  handle?: (i: number) => void | Promise<void>,
): Promise<void> {
  const posted = (i: number): Promise<unknown> | undefined => {
    if (i >= count) return undefined;
    const promise = post(i);
    promise.catch(() => undefined); // awaited below; this keeps an early rejection from counting as unhandled
    return promise;
  };
  let next = posted(0);
  for (let i = 0; i < count; i++) {
    const current = next!;
    next = posted(i + 1);
    await current;
    await handle?.(i);
  }
}

function chunkRanges(start: number, end: number, size: number): Array<[number, number]> {
  const chunks: Array<[number, number]> = [];
  for (let s = start; s < end; s += size) chunks.push([s, Math.min(s + size, end)]);
  return chunks;
}

function bytesOf(array: Float32Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}
