import { createHash, randomInt } from 'node:crypto';
import { existsSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { CollectiveError } from './frames';

/**
 * The same-host transport of the collectives: ranks that share a host all-reduce through shared
 * memory instead of loopback TCP, as NCCL's and Gloo's shared-memory transports do.
 *
 * Why: over loopback every byte is copied twice by the kernel (sender's buffer → socket, socket →
 * receiver's buffer), and in a ring each rank sends and receives at once, so on a small machine
 * the copies alone use every core; here a rank reads its peers' gradients where they lie.
 *
 * Each rank owns one segment (a /dev/shm file, mapped by every rank of the ring, then unlinked so
 * that nothing outlives the processes): a control page of futex words, then two data buffers used
 * by alternate operations. All-reduce number k, buffer b = k mod 2:
 *   1. copy the input into my buffer b; publish arrive = k
 *   2. wait until every rank has arrived; sum shard `rank` of every rank's buffer b (in rank
 *      order) into my buffer b's shard and into the output; publish done = k
 *   3. wait until every rank is done; copy every other shard from its owner's buffer b
 * Every shard is summed once, by its owner, and everyone copies those bytes: every rank ends
 * bit-identical. Two buffers make the next operation's step 1 safe without a third wait: a rank
 * that writes buffer b again (operation k+2) has seen every rank arrive at k+1, which each does
 * only after its own step 3 of k.
 *
 * Waiting polls briefly, then blocks in futex waits of a few ms at a time (a peer's wake-up is a
 * futex wake, not a socket round trip), yielding to the event loop between them so that the ring's
 * TCP connections still report a peer that died and deadlines still hold. A rank that fails
 * raises its abort word; every operation of the group announces itself in the control page, so a
 * rank that runs a different one than its peers is a protocol error, not a hang.
 */

/** The native part (collectives/native/shared_memory.c). */
export interface SharedMemoryAddon {
  map(path: string, byteLength: number, create: boolean): ArrayBuffer;
  wait(array: Int32Array, index: number, expected: number, timeoutMs: number): 'ok' | 'timed-out';
  wake(array: Int32Array, index: number): number;
  /** outputs[j][i] = (inputs[0][i] + … + inputs[n−1][i]) × scale, float32, added in that order. */
  sum(outputs: Float32Array[], inputs: Float32Array[], scale: number): void;
}

/** Where segments live: a tmpfs every process of the host sees. */
export const SHARED_MEMORY_DIR = '/dev/shm';
const ADDON_ENV = 'GANTRY_SHARED_MEMORY_ADDON';
const DEFAULT_ADDON_PATH = fileURLToPath(new URL('../.tools/shm/gantry_shared_memory.node', import.meta.url));

type Loaded = { addon: SharedMemoryAddon } | { unavailable: string };
const loadedByPath = new Map<string, Loaded>();

/** The addon ($GANTRY_SHARED_MEMORY_ADDON, else the one scripts/setup.sh builds), or why it cannot be used here. */
export function sharedMemoryAddon(): Loaded {
  const path = process.env[ADDON_ENV] || DEFAULT_ADDON_PATH;
  let loaded = loadedByPath.get(path);
  if (loaded) return loaded;
  if (process.platform !== 'linux')
    loaded = { unavailable: `shared-memory collectives need Linux futexes (this is ${process.platform})` };
  else if (!existsSync(path))
    loaded = { unavailable: `the shared-memory addon is not built (${path}; scripts/setup.sh builds it)` };
  else {
    try {
      loaded = { addon: createRequire(import.meta.url)(path) as SharedMemoryAddon };
    } catch (error) {
      loaded = { unavailable: `the shared-memory addon at ${path} does not load: ${(error as Error).message}` };
    }
  }
  loadedByPath.set(path, loaded);
  return loaded;
}

// Control page: int32 words, each on its own 64-byte cache line where they are written by different
// operations' phases (a waiter spinning on one does not bounce the other's line).
const CONTROL_BYTES = 4096;
const W_MAGIC = 0;
const W_VERSION = 1;
const W_NONCE = 2;
const W_CAPACITY = 3;
const W_RANK = 4;
const W_WORLD = 5;
/** The operation this rank is in (its sequence number and kind, see OPERATION_KINDS): announced by every operation. */
const W_OPERATION = 8;
const W_KIND = 9;
/** The length of this rank's current all-reduce. */
const W_LENGTH = 10;
const W_ARRIVE = 16;
const W_DONE = 32;
const W_ABORT = 48;
const OPERATION_KINDS = ['allReduce', 'broadcast', 'reduce', 'barrier'];
const MAGIC = 0x4753484d; // "GSHM"
const VERSION = 1;
/** Longest single futex wait before the event loop gets a turn (socket events, timers). */
const WAIT_SLICE_MS = 2;

export interface SegmentIdentity {
  jobId: string;
  attempt: number;
  rank: number;
  worldSize: number;
  /** Random, < 2^24 (exchanged as a float32), announced over TCP: proves a mapped file is the peer's. */
  nonce: number;
}

export function segmentPath(dir: string, identity: Omit<SegmentIdentity, 'worldSize'>): string {
  return `${dir}/${segmentPrefix(identity.jobId)}a${identity.attempt}-r${identity.rank}-${identity.nonce.toString(16)}`;
}

/** Every segment file of a job starts with this. */
export function segmentPrefix(jobId: string): string {
  return `gantry-${createHash('sha256').update(jobId).digest('hex').slice(0, 16)}-`;
}

/** A nonce for a new segment: 1 … 2^24−1 (0 means "this rank has no segment"). */
export function newNonce(): number {
  return randomInt(1, 1 << 24);
}

export class Segment {
  readonly control: Int32Array;
  readonly buffers: [Float32Array, Float32Array];

  private constructor(
    readonly path: string,
    readonly nonce: number,
    readonly capacity: number,
    memory: ArrayBuffer,
  ) {
    this.control = new Int32Array(memory, 0, CONTROL_BYTES / 4);
    this.buffers = [
      new Float32Array(memory, CONTROL_BYTES, capacity),
      new Float32Array(memory, CONTROL_BYTES + capacity * 4, capacity),
    ];
  }

  static byteLength(capacity: number): number {
    return CONTROL_BYTES + 2 * capacity * 4;
  }

  /** This rank's own segment, created with its identity in the control page. */
  static create(addon: SharedMemoryAddon, dir: string, identity: SegmentIdentity, capacity: number): Segment {
    const path = segmentPath(dir, identity);
    const segment = new Segment(path, identity.nonce, capacity, addon.map(path, Segment.byteLength(capacity), true));
    const c = segment.control;
    c[W_VERSION] = VERSION;
    c[W_NONCE] = identity.nonce;
    c[W_CAPACITY] = capacity;
    c[W_RANK] = identity.rank;
    c[W_WORLD] = identity.worldSize;
    Atomics.store(c, W_MAGIC, MAGIC);
    return segment;
  }

  /**
   * A peer's segment; throws unless it is exactly the one the peer announced.
   *
   * No HMAC proof here, because none is needed: the path and the nonce in it were announced over
   * the ring's connections, which passed the secret's handshake first; segments are created 0600
   * with O_EXCL, so only this user can map them (and this user's processes can ptrace the trainer
   * anyway). What is left is a file another user planted at that path ahead of the peer (the dir
   * is sticky, so it cannot be swapped afterwards): it must be ours and private, or it is refused.
   */
  static attach(addon: SharedMemoryAddon, dir: string, identity: SegmentIdentity, capacity: number): Segment {
    const path = segmentPath(dir, identity);
    // (A missing file is left to map(), whose error says so.)
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat && typeof process.getuid === 'function' && stat.uid !== process.getuid())
      throw new Error(`${path} belongs to uid ${stat.uid}, not this user: not a peer's segment`);
    if (stat && (stat.mode & 0o077) !== 0)
      throw new Error(`${path} is open to other users (mode ${(stat.mode & 0o777).toString(8)}): not a peer's segment`);
    const segment = new Segment(path, identity.nonce, capacity, addon.map(path, Segment.byteLength(capacity), false));
    const c = segment.control;
    const found = {
      magic: Atomics.load(c, W_MAGIC),
      version: c[W_VERSION],
      nonce: c[W_NONCE],
      capacity: c[W_CAPACITY],
      rank: c[W_RANK],
      world: c[W_WORLD],
    };
    const wanted = {
      magic: MAGIC,
      version: VERSION,
      nonce: identity.nonce,
      capacity,
      rank: identity.rank,
      world: identity.worldSize,
    };
    for (const key of Object.keys(wanted) as Array<keyof typeof wanted>) {
      if (found[key] !== wanted[key])
        throw new Error(
          `${path} is not rank ${identity.rank}'s segment: its ${key} is ${found[key]}, not ${wanted[key]}`,
        );
    }
    return segment;
  }

  /** Remove the file; the mappings stay valid until every process drops them. */
  unlink(): void {
    try {
      unlinkSync(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

/** The group's operation that runs an all-reduce here: what its waits check between futex slices. */
export interface OperationContext {
  label: string;
  /** Its sequence number in the group (the frames' tag). */
  operation: number;
  timeoutMs: number;
  /** Throws when the operation must stop: the group failed, or a ring connection closed. */
  check(): void;
}

/** All-reduce through every rank's segment; see the file's comment for the protocol. */
export class SharedMemoryAllReduce {
  /** Operations run so far: the next one is number `sequence + 1`. Identical on every rank. */
  private sequence = 0;

  constructor(
    private readonly addon: SharedMemoryAddon,
    readonly rank: number,
    /** Every rank's segment, by rank; this rank's own among them. */
    private readonly segments: readonly Segment[],
    /**
     * How long a wait polls before it sleeps in the kernel. Waking a sleeping process costs tens
     * of µs (more on a VM, where its idle vCPU may be halted) — as much as moving a whole MLP's
     * gradients — while a peer is usually that close behind. Only worth it with a core per rank:
     * polling on a shared core delays the very peer being waited for.
     */
    private readonly spinMs: number = 0,
  ) {}

  get capacity(): number {
    return this.segments[this.rank]!.capacity;
  }

  /**
   * Every operation of the group says which it is (whatever its transport): a peer waiting here
   * for this rank's all-reduce then sees at once that this rank runs something else.
   */
  announce(operation: number, kind: string): void {
    const control = this.segments[this.rank]!.control;
    control[W_KIND] = OPERATION_KINDS.indexOf(kind) + 1;
    Atomics.store(control, W_OPERATION, operation | 0);
  }

  async allReduce(
    data: Float32Array,
    shards: ReadonlyArray<readonly [number, number]>,
    mean: boolean,
    context: OperationContext,
  ): Promise<void> {
    if (data.length > this.capacity)
      throw new RangeError(`${context.label}: ${data.length} floats exceed the shared segment's ${this.capacity}`);
    const k = (this.sequence = (this.sequence + 1) | 0);
    const b = (k & 1) as 0 | 1;
    const n = this.segments.length;
    const r = this.rank;
    const mine = this.segments[r]!;
    const own = mine.buffers[b];
    own.set(data);
    mine.control[W_LENGTH] = data.length;
    this.publish(W_ARRIVE, k);
    await this.waitForAll(W_ARRIVE, k, context, 'to arrive');
    for (let q = 0; q < n; q++) {
      const length = this.segments[q]!.control[W_LENGTH]!;
      if (length !== data.length) {
        throw new CollectiveError(
          'protocol',
          `protocol error: rank ${q} all-reduces ${length} floats where ${context.label} on rank ${r} ` +
            `has ${data.length}; do all ranks pass the same length?`,
        );
      }
    }

    // My shard: the sum over ranks in rank order, written to the output and to my buffer (the
    // copy the others take), in one native pass.
    const parts = this.segments.map((segment) => segment.buffers[b]);
    const [start, end] = shards[r]!;
    if (end > start) {
      this.addon.sum(
        [data.subarray(start, end), own.subarray(start, end)],
        parts.map((part) => part.subarray(start, end)),
        mean ? 1 / n : 1,
      );
    }
    this.publish(W_DONE, k);
    await this.waitForAll(W_DONE, k, context, 'to finish its shard');

    for (let q = 0; q < n; q++) {
      if (q === r) continue;
      const [s, e] = shards[q]!;
      data.set(parts[q]!.subarray(s, e), s);
    }
  }

  /** Tell every peer this rank has failed: their waits end at once. */
  abort(): void {
    const control = this.segments[this.rank]!.control;
    Atomics.store(control, W_ABORT, 1);
    this.addon.wake(control, W_ARRIVE);
    this.addon.wake(control, W_DONE);
  }

  private publish(word: number, k: number): void {
    const control = this.segments[this.rank]!.control;
    Atomics.store(control, word, k);
    this.addon.wake(control, word);
  }

  /**
   * Until every other rank's `word` reaches k: poll (spinMs), then give the event loop one turn
   * (other ranks of this very process, in tests, and socket events), then sleep on the futex in
   * slices, with an event-loop turn after each slice that ends without a wake-up.
   */
  private async waitForAll(word: number, k: number, context: OperationContext, what: string): Promise<void> {
    const deadline = performance.now() + context.timeoutMs;
    for (let q = 0; q < this.segments.length; q++) {
      if (q === this.rank) continue;
      const control = this.segments[q]!.control;
      if (this.spinMs > 0) {
        const until = performance.now() + this.spinMs;
        while (((Atomics.load(control, word) - k) | 0) < 0 && performance.now() < until);
      }
      for (let turn = 0; ; turn++) {
        const seen = Atomics.load(control, word);
        if (((seen - k) | 0) >= 0) break;
        const failedPeer = this.checkPeers(context);
        if (failedPeer !== undefined) {
          // A peer gave up: usually because a rank died, which this rank's own sockets report too. One event-loop
          // turn lets that report fail the operation first, so the error names the rank that died, not the peer
          // that noticed before us.
          await yieldToEventLoop();
          context.check();
          throw new CollectiveError('aborted', `rank ${failedPeer} failed (it raised its shared-memory abort flag)`);
        }
        const left = deadline - performance.now();
        if (left <= 0)
          throw new CollectiveError(
            'timeout',
            `timed out after ${context.timeoutMs} ms waiting for rank ${q} ${what} in ${context.label} (shared memory)`,
          );
        if (turn === 0 || this.addon.wait(control, word, seen, Math.min(WAIT_SLICE_MS, left)) === 'timed-out')
          await yieldToEventLoop();
      }
    }
  }

  /** Throws on this operation's own failure or a protocol mismatch; returns a peer that raised its abort flag. */
  private checkPeers(context: OperationContext): number | undefined {
    context.check();
    for (let q = 0; q < this.segments.length; q++) {
      if (q === this.rank) continue;
      const control = this.segments[q]!.control;
      if (Atomics.load(control, W_ABORT) !== 0) return q;
      const kind = OPERATION_KINDS[control[W_KIND]! - 1];
      if (Atomics.load(control, W_OPERATION) === (context.operation | 0) && kind !== 'allReduce') {
        throw new CollectiveError(
          'protocol',
          `protocol error: rank ${q} runs ${kind} #${context.operation} where this rank runs ${context.label}; ` +
            'do all ranks run the same operations in the same order?',
        );
      }
    }
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
