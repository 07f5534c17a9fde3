import net, { type AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { CollectiveError, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_TIMEOUT_MS, FrameType, FramedSocket } from './frames';
import { acceptHandshake, HANDSHAKE_MAX_BYTES, offerHandshake, type Handshake } from './handshake';
import {
  newNonce,
  Segment,
  SHARED_MEMORY_DIR,
  SharedMemoryAllReduce,
  sharedMemoryAddon,
  type OperationContext,
} from './shared-memory';

/**
 * One trainer's membership in a ring of N ranks for synchronous data-parallel training.
 *
 * Rank r has exactly two connections: one it dialled to rank r+1 and one it accepted from rank
 * r−1. Data flows down the ring, r+1 → r → r−1: a rank receives on the connection it dialled and
 * sends on the one it accepted. (That way round because only a dialled socket can read straight
 * into our buffers — Node's `onread` — which saves a copy and an allocation per read on the
 * receiving side, the side that does the work.) Every collective is a pipeline around that ring,
 * so each link carries the same bytes and no rank is a hot spot.
 *
 * Lifecycle: `listen()` first (the trainer reports the address to the rendezvous before it knows
 * its rank), then `connect()` with the rank and everyone's address, then operations, then
 * `close()`. Operations are collective: every rank must call the same ones, in the same order,
 * with the same lengths. Any failure — a peer's error, disconnect, or silence past the timeout —
 * rejects the operation with an error naming this rank, the operation and the peer, and closes the
 * group (telling the neighbours why, so the whole ring fails fast): the trainer fails its attempt
 * and the next attempt builds a new ring. Nothing waits without a deadline.
 *
 * Where every rank of the ring runs on the same host, all-reduce moves its data through shared
 * memory instead (shared-memory.ts: no kernel copies); the ring's connections then carry only the
 * set-up, the other operations and failures. Ranks agree on the transport in connect()
 * (`sharedMemory` option; TCP wherever any rank cannot map every other rank's segment).
 */

/** Data frames carry at most this much; smaller chunks pipeline better, larger ones cost fewer syscalls. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Socket send buffer (writable high-water mark): how far ahead of the network a sender may run. */
export const DEFAULT_SEND_BUFFER_BYTES = 4 * 1024 * 1024;

export interface CollectiveGroupOptions {
  jobId: string;
  attempt: number;
  /** Interface to listen on (default 127.0.0.1); report one the peers can reach. */
  host?: string;
  /** 0 (default): any free port. */
  port?: number;
  /** Deadline for every receive and every wait for a peer to read (default 30 s). */
  timeoutMs?: number;
  chunkBytes?: number;
  sendBufferBytes?: number;
  /** Largest frame accepted from a peer (default max(16 MiB, chunkBytes)). */
  maxFrameBytes?: number;
  /**
   * All-reduce through shared memory when every rank is on this host: 'auto' (default; else TCP),
   * 'off' (TCP always), 'require' (connect() fails when it cannot be used). 'off' must be alike on
   * every rank (the handshake checks). Default: $GANTRY_SHARED_MEMORY, else 'auto'.
   */
  sharedMemory?: SharedMemoryMode;
  /** Where this rank creates its segment and looks for the others' (default /dev/shm). */
  sharedMemoryDir?: string;
  /**
   * How long shared-memory waits poll before sleeping, where every rank has a core (0–100 ms).
   * Default: $GANTRY_SHARED_MEMORY_SPIN_MS, else 0.1.
   */
  sharedMemorySpinMs?: number;
}

export type SharedMemoryMode = 'auto' | 'off' | 'require';
const SHARED_MEMORY_MODES: readonly SharedMemoryMode[] = ['auto', 'off', 'require'];
/** Segments hold at least this many floats (1 MiB), so small all-reduces never re-negotiate. */
const MIN_SHARED_CAPACITY = 256 * 1024;
/**
 * Shared-memory waits poll this long before sleeping, where every rank can have a core: on this
 * project's 2-vCPU VM it cut a 2-rank all-reduce of 256 KiB from 160–210 µs to 32 µs (wake-ups
 * from a futex sleep cost more than the data). $GANTRY_SHARED_MEMORY_SPIN_MS overrides it.
 */
const DEFAULT_SPIN_MS = 0.1;

/** Which transport all-reduce uses, and why not shared memory where it does not. */
export interface TransportReport {
  /** 'none': a ring of one, nothing to move. */
  allReduce: 'shared-memory' | 'tcp' | 'none' | 'undecided';
  reason?: string;
}

export interface PeerAddress {
  rank: number;
  host: string;
  port: number;
}

export interface ConnectOptions {
  rank: number;
  /** Every rank's listening address, this one's included; the ring is as long as this list. */
  peers: readonly PeerAddress[];
  /** Deadline for the whole ring to form (default: the group's timeoutMs). */
  timeoutMs?: number;
}

export type ReduceOp = 'sum' | 'mean';

export interface OperationOptions {
  /** Overrides the group's per-receive deadline for this operation. */
  timeoutMs?: number;
}

export interface ReduceOptions extends OperationOptions {
  op?: ReduceOp;
}

export type GroupState = 'listening' | 'connecting' | 'ready' | 'failed' | 'closed';

export class CollectiveGroup {
  readonly jobId: string;
  readonly attempt: number;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly chunkBytes: number;
  readonly sendBufferBytes: number;
  readonly maxFrameBytes: number;
  readonly sharedMemoryMode: SharedMemoryMode;
  readonly sharedMemoryDir: string;
  readonly sharedMemorySpinMs: number;
  private currentState: GroupState = 'listening';
  private readonly server: net.Server;
  private serverClosed: Promise<void> | undefined;
  /** Connections accepted before connect() was called: held (and buffered) until it is. */
  private readonly incoming: FramedSocket[] = [];
  /** Connections in the middle of a handshake, closed if the group fails or the ring completes. */
  private readonly pending = new Set<FramedSocket>();
  private onIncoming: ((conn: FramedSocket) => void) | undefined;
  private connecting: AbortController | undefined;
  private myRank = -1;
  private size = 0;
  /** Dialled to rank+1: data arrives here. */
  private upstream: FramedSocket | undefined;
  /** Accepted from rank−1: data leaves here. */
  private downstream: FramedSocket | undefined;
  private sequence = 0;
  private failure: CollectiveError | undefined;
  private opTail: Promise<unknown> = Promise.resolve();
  private current: Operation | undefined;
  private closing: Promise<void> | undefined;
  /** Set once the ranks have agreed to all-reduce through shared memory. */
  private sameHost: SharedMemoryAllReduce | undefined;
  /** Why all-reduce uses TCP (undefined: undecided, or shared memory for every length so far). */
  private tcpReason: string | undefined;
  /** Shared memory was agreed on but segments of this many floats could not be had: longer ones use TCP. */
  private sharedLengthLimit = Infinity;

  private constructor(server: net.Server, options: Required<CollectiveGroupOptions>) {
    this.server = server;
    this.jobId = options.jobId;
    this.attempt = options.attempt;
    this.host = options.host;
    this.port = options.port;
    this.timeoutMs = options.timeoutMs;
    this.chunkBytes = options.chunkBytes;
    this.sendBufferBytes = options.sendBufferBytes;
    this.maxFrameBytes = options.maxFrameBytes;
    this.sharedMemoryMode = options.sharedMemory;
    this.sharedMemoryDir = options.sharedMemoryDir;
    this.sharedMemorySpinMs = options.sharedMemorySpinMs;
    server.on('connection', (socket) => this.accepted(socket));
    server.on('error', (error) =>
      this.fail(
        new CollectiveError('closed', `rank ${this.myRank}'s listener failed: ${error.message}`, { cause: error }),
      ),
    );
  }

  /** Open the listening socket (port 0 = a free one); report `address` to the rendezvous, then connect(). */
  static async listen(options: CollectiveGroupOptions): Promise<CollectiveGroup> {
    if (typeof options.jobId !== 'string' || options.jobId.length === 0)
      throw new TypeError('CollectiveGroup.listen: jobId must be a non-empty string');
    if (!Number.isInteger(options.attempt) || options.attempt < 0)
      throw new TypeError('CollectiveGroup.listen: attempt must be an integer ≥ 0');
    const chunkBytes = Math.max(4, Math.floor((options.chunkBytes ?? DEFAULT_CHUNK_BYTES) / 4) * 4);
    const maxFrameBytes = options.maxFrameBytes ?? Math.max(DEFAULT_MAX_PAYLOAD_BYTES, chunkBytes);
    if (maxFrameBytes < chunkBytes)
      throw new TypeError(
        `CollectiveGroup.listen: maxFrameBytes (${maxFrameBytes}) is smaller than chunkBytes (${chunkBytes})`,
      );
    const host = options.host ?? '127.0.0.1';
    const sharedMemory = options.sharedMemory ?? sharedMemoryModeFromEnv();
    const sharedMemorySpinMs = spinMs(options.sharedMemorySpinMs);
    if (!SHARED_MEMORY_MODES.includes(sharedMemory))
      throw new TypeError(
        `CollectiveGroup.listen: sharedMemory must be one of ${SHARED_MEMORY_MODES.join(', ')}, not ${JSON.stringify(sharedMemory)}`,
      );
    const sendBufferBytes = options.sendBufferBytes ?? DEFAULT_SEND_BUFFER_BYTES;
    const server = net.createServer({ noDelay: true, highWaterMark: sendBufferBytes });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new CollectiveGroup(server, {
      jobId: options.jobId,
      attempt: options.attempt,
      host,
      port: (server.address() as AddressInfo).port,
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      chunkBytes,
      sendBufferBytes,
      maxFrameBytes,
      sharedMemory,
      sharedMemoryDir: options.sharedMemoryDir ?? SHARED_MEMORY_DIR,
      sharedMemorySpinMs,
    });
  }

  /** The transport all-reduce uses (chosen by connect()). */
  get transport(): TransportReport {
    if (this.sameHost)
      return {
        allReduce: 'shared-memory',
        ...(this.sharedLengthLimit < Infinity
          ? { reason: `TCP from ${this.sharedLengthLimit} floats: ${this.tcpReason}` }
          : {}),
      };
    if (this.tcpReason) return { allReduce: 'tcp', reason: this.tcpReason };
    return {
      allReduce: this.currentState === 'listening' || this.currentState === 'connecting' ? 'undecided' : 'none',
    };
  }

  /** Where this rank listens: what the trainer reports to the rendezvous. */
  get address(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  get state(): GroupState {
    return this.currentState;
  }

  get rank(): number {
    if (this.size === 0) throw new CollectiveError('group-closed', 'the rank is not known before connect()');
    return this.myRank;
  }

  get worldSize(): number {
    if (this.size === 0) throw new CollectiveError('group-closed', 'the world size is not known before connect()');
    return this.size;
  }

  /**
   * Form the ring: dial rank+1 (retrying with backoff until the deadline, since it may not listen
   * yet) and accept rank−1, handshaking both ways. Rejects, and closes the group, on a refused
   * handshake or when the ring is not complete within `timeoutMs`.
   */
  async connect(options: ConnectOptions): Promise<void> {
    if (this.currentState !== 'listening')
      throw new CollectiveError('group-closed', `connect() called on a group that is ${this.currentState}`);
    const { rank, peers } = options;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const problem = peersProblem(rank, peers);
    if (problem) throw new TypeError(`CollectiveGroup.connect: ${problem}`);
    this.currentState = 'connecting';
    this.myRank = rank;
    this.size = peers.length;
    if (this.size === 1) {
      this.currentState = 'ready';
      this.stopListening();
      return;
    }
    const ours: Handshake = {
      jobId: this.jobId,
      attempt: this.attempt,
      rank,
      worldSize: this.size,
      sharedMemory: this.sharedMemoryMode !== 'off',
    };
    const leftRank = mod(rank - 1, this.size);
    const rightRank = mod(rank + 1, this.size);
    const deadline = Date.now() + timeoutMs;
    const joining = `rank ${rank} failed to join the ring of job ${JSON.stringify(this.jobId)} attempt ${this.attempt}`;
    const abort = new AbortController();
    this.connecting = abort;
    try {
      await Promise.all(
        [
          this.acceptLeft(ours, leftRank, deadline, timeoutMs, abort.signal).then((conn) => (this.downstream = conn)),
          this.dialRight(ours, peers.find((peer) => peer.rank === rightRank)!, deadline, timeoutMs, abort.signal).then(
            (conn) => (this.upstream = conn),
          ),
        ].map((step) =>
          step.catch((error: unknown) => {
            abort.abort(error);
            throw error;
          }),
        ),
      );
    } catch (cause) {
      throw this.failedWith(joining, cause);
    } finally {
      this.connecting = undefined;
    }
    if (this.currentState !== 'connecting') throw this.unusable('connect');
    const downstream = this.downstream!;
    const upstream = this.upstream!;
    // A neighbour that fails tells us why (Abort frame): fail at once, even between operations or
    // when the current operation is not waiting on that neighbour. A plain close is noticed by the
    // next receive or send that needs the connection — a neighbour closing after the last
    // operation is a normal shutdown, not an error.
    for (const conn of [downstream, upstream]) {
      conn.onFailure((error) => {
        if (error.code === 'aborted') this.fail(error);
      });
    }
    // Agree on all-reduce's transport now, while every rank is here anyway (connect is collective).
    const run = new Operation('connect (choosing the all-reduce transport)', 0, timeoutMs);
    this.current = run;
    try {
      if (this.sharedMemoryMode === 'off') this.tcpReason = 'shared memory is off (sharedMemory: off)';
      else await Promise.race([this.negotiateSharedMemory(MIN_SHARED_CAPACITY, run), run.aborted]);
    } catch (cause) {
      throw this.failedWith(joining, cause);
    } finally {
      this.current = undefined;
    }
    if (this.currentState !== 'connecting') throw this.unusable('connect');
    this.currentState = 'ready';
    this.stopListening();
  }

  /**
   * In place: every rank ends with the element-wise sum (or mean) over all ranks, bit-identical
   * everywhere. Ring reduce-scatter then all-gather: each rank sends and receives 2(N−1)/N × the
   * bytes, in chunks that are pipelined (a chunk is forwarded as soon as it has been reduced).
   */
  async allReduce(data: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    const op = options.op ?? 'sum';
    checkArguments('allReduce', data, op);
    return this.execute('allReduce', options, async (run) => {
      if (this.size > 1 && data.length > 0) {
        if (await this.sharedMemoryFits(data.length, run))
          await this.sameHost!.allReduce(
            data,
            splitEvenly(data.length, this.size),
            op === 'mean',
            this.waitContext(run),
          );
        else await this.ringAllReduce(data, op === 'mean', run);
      }
      return data;
    });
  }

  /** In place: every rank ends with `root`'s data. Chunks are pipelined along the ring from root. */
  async broadcast(data: Float32Array, root: number, options: OperationOptions = {}): Promise<Float32Array> {
    checkArguments('broadcast', data, 'sum');
    this.checkRoot('broadcast', root);
    return this.execute('broadcast', options, async (run) => {
      if (this.size > 1 && data.length > 0) await this.ringBroadcast(data, root, run);
      return data;
    });
  }

  /**
   * `root`'s data becomes the sum (or mean) over all ranks; the other ranks' data is left as it
   * was. Partial sums flow down the ring from root−1 to root, pipelined in chunks (for a
   * central-storage strategy: gradients to the rank that holds the variables).
   */
  async reduce(data: Float32Array, root: number, options: ReduceOptions = {}): Promise<Float32Array> {
    const op = options.op ?? 'sum';
    checkArguments('reduce', data, op);
    this.checkRoot('reduce', root);
    return this.execute('reduce', options, async (run) => {
      if (this.size > 1 && data.length > 0) await this.ringReduce(data, root, op === 'mean', run);
      return data;
    });
  }

  /** Resolves once every rank has entered the barrier. */
  async barrier(options: OperationOptions = {}): Promise<void> {
    return this.execute('barrier', options, async (run) => {
      if (this.size > 1) await this.ringBarrier(run);
    });
  }

  /**
   * Close both connections (gracefully: queued frames still go out) and the listener. An
   * operation in flight fails. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const error = new CollectiveError('group-closed', `rank ${this.myRank} closed the group`);
    const healthy = !this.failure;
    this.failure ??= error;
    this.currentState = 'closed';
    this.connecting?.abort(error);
    this.current?.abort(error);
    const conns = this.connections();
    for (const conn of conns) {
      if (healthy) void conn.end();
      else void conn.closeWith(FrameType.Abort, this.failure.message);
      conn.fail(error); // rejects anything still pending on it and clears its timers
    }
    const serverClosed = this.stopListening();
    this.closing = Promise.all([...conns.map((conn) => conn.closed), serverClosed]).then(() => undefined);
    return this.closing;
  }

  // ---- the same-host transport ----------------------------------------------------------------

  /**
   * Whether this all-reduce goes through shared memory, growing the segments first (with the
   * other ranks) where it does not fit. Every rank reaches the same answer by the same steps,
   * decided by state they share.
   */
  private async sharedMemoryFits(length: number, run: Operation): Promise<boolean> {
    if (!this.sameHost || length >= this.sharedLengthLimit) return false;
    return length <= this.sameHost.capacity || this.negotiateSharedMemory(length, run);
  }

  /**
   * Each rank creates a segment and announces its nonce over the ring (a sum of one-hot
   * vectors); each maps every other rank's; a second sum counts the ranks that could not. Zero:
   * shared memory from now on. The files are unlinked once everyone has mapped them. Run by
   * connect(), and by an all-reduce longer than the segments hold.
   */
  private async negotiateSharedMemory(length: number, run: Operation): Promise<boolean> {
    const n = this.size;
    const r = this.myRank;
    const capacity = Math.max(MIN_SHARED_CAPACITY, 2 ** Math.ceil(Math.log2(length)));
    const loaded = sharedMemoryAddon();
    const addon = 'addon' in loaded ? loaded.addon : undefined;
    let reason = 'unavailable' in loaded ? `rank ${r}: ${loaded.unavailable}` : undefined;
    let mine: Segment | undefined;
    if (addon) {
      try {
        mine = Segment.create(
          addon,
          this.sharedMemoryDir,
          { jobId: this.jobId, attempt: this.attempt, rank: r, worldSize: n, nonce: newNonce() },
          capacity,
        );
      } catch (error) {
        reason = `rank ${r} cannot create a shared segment: ${(error as Error).message}`;
      }
    }
    const segments: Segment[] = [];
    try {
      const nonces = new Float32Array(n);
      nonces[r] = mine?.nonce ?? 0;
      await this.ringAllReduce(nonces, false, run);
      const missing = nonces.findIndex((nonce) => nonce === 0);
      if (missing >= 0) reason ??= `rank ${missing} cannot share memory`;
      else if (addon && mine) {
        for (let q = 0; q < n; q++) {
          try {
            segments[q] =
              q === r
                ? mine
                : Segment.attach(
                    addon,
                    this.sharedMemoryDir,
                    { jobId: this.jobId, attempt: this.attempt, rank: q, worldSize: n, nonce: nonces[q]! },
                    capacity,
                  );
          } catch (error) {
            reason = `rank ${r} cannot map rank ${q}'s segment (another host?): ${(error as Error).message}`;
            break;
          }
        }
      }
      const failures = Float32Array.of(reason === undefined ? 0 : 1);
      await this.ringAllReduce(failures, false, run);
      if (failures[0] === 0) {
        this.sameHost = new SharedMemoryAllReduce(
          addon!,
          r,
          segments,
          n <= availableParallelism() ? this.sharedMemorySpinMs : 0,
        );
        return true;
      }
      reason ??= `${failures[0]} rank(s) could not map every other rank's segment`;
    } finally {
      mine?.unlink();
    }
    this.tcpReason = reason;
    if (this.sameHost) this.sharedLengthLimit = length;
    if (this.sharedMemoryMode === 'require' && !this.sameHost)
      throw new CollectiveError('handshake', `shared memory is required but cannot be used: ${reason}`);
    return false;
  }

  private waitContext(run: Operation): OperationContext {
    return {
      label: run.label,
      operation: run.tag,
      timeoutMs: run.timeoutMs,
      check: () => {
        run.check();
        // Between operations a neighbour's plain close is a normal shutdown; while this rank
        // waits on shared memory for a rank that has not finished, it means that rank is gone.
        const broken = this.upstream?.failed ?? this.downstream?.failed;
        if (broken) throw broken;
      },
    };
  }

  // ---- the algorithms -------------------------------------------------------------------------
  // Data flows r+1 → r → r−1: receive from `upstream` (rank r+1), send to `downstream` (rank r−1).

  private async ringAllReduce(data: Float32Array, mean: boolean, run: Operation): Promise<void> {
    const n = this.size;
    const r = this.myRank;
    const upstream = this.upstream!;
    const downstream = this.downstream!;
    const segments = splitEvenly(data.length, n);
    const chunkFloats = this.chunkBytes / 4;
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

  private async ringBroadcast(data: Float32Array, root: number, run: Operation): Promise<void> {
    const n = this.size;
    const downstream = this.downstream!;
    const chunks = chunkRanges(0, data.length, this.chunkBytes / 4);
    const what = (i: number): string => `${run.label} from root ${root} (chunk ${i + 1} of ${chunks.length})`;
    const send = async (i: number): Promise<void> => {
      const [start, end] = chunks[i]!;
      run.check();
      if (!downstream.send(FrameType.Broadcast, run.tag, data.subarray(start, end)))
        await downstream.drain(run.timeoutMs, what(i));
    };
    if (this.myRank === root) {
      for (let i = 0; i < chunks.length; i++) await send(i);
    } else {
      // Forward each chunk as soon as it has arrived, unless the next rank down is the root.
      const forward = mod(this.myRank - 1, n) !== root;
      await pipelinedReceives(
        chunks.length,
        (i) => {
          const [start, end] = chunks[i]!;
          return this.upstream!.receive({
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

  private async ringReduce(data: Float32Array, root: number, mean: boolean, run: Operation): Promise<void> {
    const n = this.size;
    const downstream = this.downstream!;
    const chunks = chunkRanges(0, data.length, this.chunkBytes / 4);
    // Position along the chain root−1 → root−2 → … → root+1 → root; the sum is accumulated in
    // that order.
    const position = mod(root - 1 - this.myRank, n);
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
          return this.upstream!.receive({
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
        return this.upstream!.receive({
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
  private async ringBarrier(run: Operation): Promise<void> {
    const rounds = this.size - 1;
    for (let round = 1; round <= rounds; round++) {
      run.check();
      this.downstream!.send(FrameType.Barrier, run.tag);
      await this.upstream!.receive({
        type: FrameType.Barrier,
        tag: run.tag,
        byteLength: 0,
        what: `${run.label} (round ${round} of ${rounds})`,
        timeoutMs: run.timeoutMs,
      });
    }
    await this.downstream!.flush(run.timeoutMs, `the end of ${run.label}`);
  }

  // ---- plumbing -------------------------------------------------------------------------------

  /**
   * Run one collective: operations queue in call order (their sequence numbers tag the frames, so
   * every rank must issue them in the same order); a failure closes the group.
   */
  private execute<T>(name: string, options: OperationOptions, body: (run: Operation) => Promise<T>): Promise<T> {
    const result = this.opTail.then(async () => {
      if (this.currentState !== 'ready') throw this.unusable(name);
      this.sequence = (this.sequence % 0xffffffff) + 1; // tag 0 is the handshake's
      const run = new Operation(`${name} #${this.sequence}`, this.sequence, options.timeoutMs ?? this.timeoutMs);
      this.current = run;
      this.sameHost?.announce(this.sequence, name);
      try {
        return await Promise.race([body(run), run.aborted]);
      } catch (cause) {
        throw this.failedWith(`${run.label} failed on rank ${this.myRank} of ${this.size}`, cause);
      } finally {
        this.current = undefined;
      }
    });
    this.opTail = result.catch(() => undefined);
    return result;
  }

  private unusable(name: string): CollectiveError {
    if (this.currentState === 'listening' || this.currentState === 'connecting') {
      return new CollectiveError('group-closed', `${name} called before connect() finished`);
    }
    return new CollectiveError(
      'group-closed',
      `${name} cannot run on rank ${this.myRank}: the group is ${this.currentState}${this.failure ? ` (${this.failure.message})` : ''}`,
      {
        cause: this.failure,
      },
    );
  }

  private checkRoot(name: string, root: number): void {
    if (this.size > 0 && !(Number.isInteger(root) && root >= 0 && root < this.size)) {
      throw new RangeError(`${name}: root ${root} is not a rank of this ring (0–${this.size - 1})`);
    }
  }

  /** `cause` as a CollectiveError (same code and reason) whose message starts with `context`; the group fails with it. */
  private failedWith(context: string, cause: unknown): CollectiveError {
    const error = asCollectiveError(cause);
    const wrapped = new CollectiveError(error.code, `${context}: ${error.message}`, {
      cause,
      ...(error.reason === undefined ? {} : { reason: error.reason }),
    });
    this.fail(wrapped);
    return wrapped;
  }

  /** Close everything and tell the neighbours why; the error is kept for later calls. */
  private fail(error: CollectiveError): void {
    if (this.failure) return;
    this.failure = error;
    if (this.currentState !== 'closed') this.currentState = 'failed';
    this.connecting?.abort(error);
    this.current?.abort(error);
    this.sameHost?.abort();
    for (const conn of this.connections()) {
      void conn.closeWith(FrameType.Abort, error.message);
      conn.fail(new CollectiveError('group-closed', `the group failed: ${error.message}`, { cause: error }));
    }
    this.stopListening();
  }

  private connections(): FramedSocket[] {
    const all = new Set<FramedSocket>([...this.incoming, ...this.pending]);
    if (this.downstream) all.add(this.downstream);
    if (this.upstream) all.add(this.upstream);
    this.incoming.length = 0;
    this.pending.clear();
    return [...all];
  }

  private stopListening(): Promise<void> {
    this.serverClosed ??= new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of [...this.incoming, ...this.pending])
      void conn.closeWith(
        FrameType.Reject,
        `rank ${this.myRank} is no longer accepting connections (the ring is ${this.currentState})`,
      );
    this.incoming.length = 0;
    this.pending.clear();
    return this.serverClosed;
  }

  private accepted(socket: net.Socket): void {
    const conn = new FramedSocket(socket, {
      peer: `${socket.remoteAddress}:${socket.remotePort}`,
      maxPayloadBytes: HANDSHAKE_MAX_BYTES,
      timeoutMs: this.timeoutMs,
    });
    if (this.currentState !== 'listening' && this.currentState !== 'connecting') {
      void conn.closeWith(
        FrameType.Reject,
        `rank ${this.myRank} is not accepting connections (the ring is ${this.currentState})`,
      );
    } else if (this.onIncoming) this.onIncoming(conn);
    else this.incoming.push(conn);
  }

  /**
   * A connection that passed its handshake is a ring link from now on. Its limits are raised at
   * once, not when connect() finishes: a neighbour that completed its own connect() first may
   * already be sending the first operation's data frames.
   */
  private admitted(conn: FramedSocket, peerRank: number): FramedSocket {
    conn.peer = `rank ${peerRank}`;
    conn.reader.maxPayloadBytes = this.maxFrameBytes;
    return conn;
  }

  /**
   * Wait for rank−1 to connect and handshake. Other connections (garbage, another job, a stale
   * attempt) are refused with a reason and the wait goes on until the deadline.
   */
  private acceptLeft(
    ours: Handshake,
    leftRank: number,
    deadline: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<FramedSocket> {
    return new Promise((resolve, reject) => {
      const refused: string[] = [];
      let settled = false;
      const settle = (error: unknown, conn?: FramedSocket): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        this.onIncoming = undefined;
        signal.removeEventListener('abort', onAbort);
        if (conn) resolve(conn);
        else reject(error);
        return true;
      };
      const onAbort = (): void => void settle(signal.reason);
      const timer = setTimeout(
        () => {
          const others =
            refused.length > 0 ? `; refused ${refused.length} other connection(s): ${refused.join('; ')}` : '';
          settle(
            new CollectiveError(
              'timeout',
              `timed out after ${timeoutMs} ms waiting for rank ${leftRank} (the left neighbour) to connect to ${this.host}:${this.port}${others}`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      const consider = (conn: FramedSocket): void => {
        this.pending.add(conn);
        acceptHandshake(conn, ours, leftRank, Math.max(1, deadline - Date.now())).then(
          () => {
            this.pending.delete(conn);
            if (!settle(undefined, this.admitted(conn, leftRank)))
              void conn.closeWith(FrameType.Reject, `rank ${ours.rank} already has its left neighbour`);
          },
          (error: Error) => {
            this.pending.delete(conn);
            refused.push(error.message);
          },
        );
      };
      signal.addEventListener('abort', onAbort);
      this.onIncoming = consider;
      for (const conn of this.incoming.splice(0)) consider(conn);
    });
  }

  /** Dial rank+1 and handshake, retrying refused/failed connections with backoff until the deadline. */
  private async dialRight(
    ours: Handshake,
    peer: PeerAddress,
    deadline: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<FramedSocket> {
    let lastError: Error | undefined;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      if (signal.aborted) throw signal.reason;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new CollectiveError(
          'timeout',
          `timed out after ${timeoutMs} ms connecting to rank ${peer.rank} at ${peer.host}:${peer.port}${lastError ? ` (last error: ${lastError.message})` : ''}`,
        );
      }
      let conn: FramedSocket | undefined;
      try {
        // This connection only receives data (and sends the handshake), so it needs no large
        // send buffer; its reads go straight into the frame reader's destinations.
        conn = FramedSocket.dial(peer.host, peer.port, {
          peer: `rank ${peer.rank} at ${peer.host}:${peer.port}`,
          maxPayloadBytes: HANDSHAKE_MAX_BYTES,
          timeoutMs: this.timeoutMs,
        });
        this.pending.add(conn);
        await connected(conn.socket, remaining, signal);
        await offerHandshake(conn, ours, peer.rank, Math.max(1, deadline - Date.now()));
        this.pending.delete(conn);
        return this.admitted(conn, peer.rank);
      } catch (error) {
        if (conn) {
          this.pending.delete(conn);
          conn.destroy();
        }
        if (signal.aborted) throw signal.reason;
        // A refusal is an answer, not a transient failure: the listener is there and is not ours.
        if (error instanceof CollectiveError && (error.code === 'rejected' || error.code === 'handshake')) throw error;
        lastError = error as Error;
      }
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), signal);
    }
  }
}

/** One collective call: its tag, its deadline, and the way to abort it from outside. */
class Operation {
  readonly aborted: Promise<never>;
  private error: CollectiveError | undefined;
  private rejectAborted!: (error: CollectiveError) => void;
  private readonly listeners: Array<(error: CollectiveError) => void> = [];

  constructor(
    readonly label: string,
    readonly tag: number,
    readonly timeoutMs: number,
  ) {
    this.aborted = new Promise<never>((_, reject) => (this.rejectAborted = reject));
    this.aborted.catch(() => undefined);
  }

  abort(error: CollectiveError): void {
    if (this.error) return;
    this.error = error;
    this.rejectAborted(error);
    for (const listener of this.listeners) listener(error);
  }

  onAbort(listener: (error: CollectiveError) => void): void {
    this.listeners.push(listener);
  }

  check(): void {
    if (this.error) throw this.error;
  }
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

function chunkRanges(start: number, end: number, size: number): Array<[number, number]> {
  const chunks: Array<[number, number]> = [];
  for (let s = start; s < end; s += size) chunks.push([s, Math.min(s + size, end)]);
  return chunks;
}

function bytesOf(array: Float32Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

function checkArguments(name: string, data: Float32Array, op: ReduceOp): void {
  if (!(data instanceof Float32Array)) throw new TypeError(`${name}: data must be a Float32Array`);
  if (op !== 'sum' && op !== 'mean')
    throw new TypeError(`${name}: op must be 'sum' or 'mean', not ${JSON.stringify(op)}`);
}

function peersProblem(rank: number, peers: readonly PeerAddress[]): string | undefined {
  if (!Array.isArray(peers) || peers.length === 0) return 'peers must list every rank, this one included';
  const seen = new Set<number>();
  for (const peer of peers) {
    if (!Number.isInteger(peer.rank) || peer.rank < 0 || peer.rank >= peers.length)
      return `peer rank ${peer.rank} is not in 0–${peers.length - 1}`;
    if (seen.has(peer.rank)) return `rank ${peer.rank} is listed twice`;
    if (typeof peer.host !== 'string' || !Number.isInteger(peer.port) || peer.port <= 0 || peer.port > 65535)
      return `rank ${peer.rank} has no valid host and port`;
    seen.add(peer.rank);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= peers.length)
    return `rank ${rank} is not in 0–${peers.length - 1}`;
  return undefined;
}

function sharedMemoryModeFromEnv(): SharedMemoryMode {
  const value = process.env.GANTRY_SHARED_MEMORY;
  if (value === undefined || value === '') return 'auto';
  if (!(SHARED_MEMORY_MODES as readonly string[]).includes(value))
    throw new TypeError(
      `GANTRY_SHARED_MEMORY must be one of ${SHARED_MEMORY_MODES.join(', ')}, not ${JSON.stringify(value)}`,
    );
  return value as SharedMemoryMode;
}

/** The option, else $GANTRY_SHARED_MEMORY_SPIN_MS, else the default; checked either way. */
function spinMs(option: number | undefined): number {
  const value = process.env.GANTRY_SHARED_MEMORY_SPIN_MS;
  const [ms, source] =
    option !== undefined
      ? [option, 'sharedMemorySpinMs']
      : value
        ? [Number(value), 'GANTRY_SHARED_MEMORY_SPIN_MS']
        : [DEFAULT_SPIN_MS, 'the default'];
  if (!Number.isFinite(ms) || ms < 0 || ms > 100)
    throw new TypeError(`${source} must be a number of milliseconds in 0–100, not ${JSON.stringify(option ?? value)}`);
  return ms;
}

function asCollectiveError(error: unknown): CollectiveError {
  if (error instanceof CollectiveError) return error;
  return new CollectiveError('protocol', error instanceof Error ? error.message : String(error), { cause: error });
}

/** Resolves when a dialled socket connects; rejects on its error, the timeout or the signal. */
function connected(socket: net.Socket, timeoutMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('connect', done);
      socket.off('error', failed);
      signal.removeEventListener('abort', aborted);
    };
    const done = (): void => {
      cleanup();
      resolve();
    };
    const failed = (error: unknown): void => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const aborted = (): void => failed(signal.reason);
    const timer = setTimeout(
      () => failed(new Error(`no answer from ${socket.remoteAddress ?? 'the peer'} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('connect', done);
    socket.once('error', failed);
    signal.addEventListener('abort', aborted);
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    const aborted = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', aborted, { once: true });
  });
}
