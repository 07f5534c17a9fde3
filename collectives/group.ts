import type { AddressInfo, Server } from 'node:net';
import { mod, ringBarrier, ringBroadcast, ringReduce, type RingLinks } from './algorithms';
import { CollectiveError } from './frames';
import type { Handshake } from './handshake';
import { type GroupState, Lifecycle, Operation } from './lifecycle';
import {
  type CollectiveGroupOptions,
  type ConnectOptions,
  checkArguments,
  checkRoot,
  type GroupSettings,
  groupSettings,
  type OperationOptions,
  peersProblem,
  type ReduceOptions,
  type SharedMemoryMode,
} from './options';
import { openListener, RingFormation } from './ring-formation';
import { AllReduceTransport, type TransportReport } from './transport';

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
 *
 * This class is the public face and the order of things; the parts each have their own module:
 * ring-formation.ts (listening, dialling, handshakes), algorithms.ts (the collectives over TCP),
 * transport.ts (shared memory or TCP for all-reduce), lifecycle.ts (states, failure, close) and
 * options.ts (options, defaults, argument checks).
 */
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
  private readonly ring: RingFormation;
  private readonly allReduceTransport: AllReduceTransport;
  private readonly lifecycle: Lifecycle;
  private myRank = -1;
  private size = 0;
  /** The formed ring, once connect() has both links. */
  private links: RingLinks | undefined;
  private sequence = 0;
  private opTail: Promise<unknown> = Promise.resolve();

  private constructor(server: Server, settings: GroupSettings & { port: number }) {
    this.jobId = settings.jobId;
    this.attempt = settings.attempt;
    this.host = settings.host;
    this.port = settings.port;
    this.timeoutMs = settings.timeoutMs;
    this.chunkBytes = settings.chunkBytes;
    this.sendBufferBytes = settings.sendBufferBytes;
    this.maxFrameBytes = settings.maxFrameBytes;
    this.sharedMemoryMode = settings.sharedMemoryMode;
    this.sharedMemoryDir = settings.sharedMemoryDir;
    this.sharedMemorySpinMs = settings.sharedMemorySpinMs;
    this.allReduceTransport = new AllReduceTransport(settings);
    this.lifecycle = new Lifecycle({
      rank: () => this.myRank,
      connections: () => this.ring.connections(),
      stopListening: () => this.stopListening(),
      abortSharedMemory: () => this.allReduceTransport.abort(),
    });
    this.ring = new RingFormation(server, settings, {
      refusal: () =>
        this.lifecycle.forming
          ? undefined
          : `rank ${this.myRank} is not accepting connections (the ring is ${this.lifecycle.state})`,
      listenerFailed: (error) =>
        this.lifecycle.fail(
          new CollectiveError('closed', `rank ${this.myRank}'s listener failed: ${error.message}`, { cause: error }),
        ),
    });
  }

  /** Open the listening socket (port 0 = a free one); report `address` to the rendezvous, then connect(). */
  static async listen(options: CollectiveGroupOptions): Promise<CollectiveGroup> {
    const settings = groupSettings(options);
    const server = await openListener(settings.host, options.port ?? 0, settings.sendBufferBytes);
    return new CollectiveGroup(server, { ...settings, port: (server.address() as AddressInfo).port });
  }

  /** The transport all-reduce uses (chosen by connect()). */
  get transport(): TransportReport {
    return this.allReduceTransport.report(this.lifecycle.forming);
  }

  /** Where this rank listens: what the trainer reports to the rendezvous. */
  get address(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  /** Connections this rank refused while forming the ring: how many, and the last few reasons. */
  get refusals(): { count: number; recent: string[] } {
    return { count: this.ring.refusals.count, recent: this.ring.refusals.reasons };
  }

  get state(): GroupState {
    return this.lifecycle.state;
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
    const lifecycle = this.lifecycle;
    if (lifecycle.state !== 'listening')
      throw new CollectiveError('group-closed', `connect() called on a group that is ${lifecycle.state}`);
    const { rank, peers } = options;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const problem = peersProblem(rank, peers);
    if (problem) throw new TypeError(`CollectiveGroup.connect: ${problem}`);
    lifecycle.state = 'connecting';
    this.myRank = rank;
    this.size = peers.length;
    if (this.size === 1) {
      lifecycle.state = 'ready';
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
    lifecycle.connecting = abort;
    try {
      await this.ring.form(ours, leftRank, peers.find((peer) => peer.rank === rightRank)!, deadline, timeoutMs, abort);
    } catch (cause) {
      throw lifecycle.failedWith(joining, cause);
    } finally {
      lifecycle.connecting = undefined;
    }
    if (lifecycle.state !== 'connecting') throw lifecycle.unusable('connect');
    const downstream = this.ring.downstream!;
    const upstream = this.ring.upstream!;
    this.links = { rank, size: this.size, upstream, downstream, chunkBytes: this.chunkBytes };
    // A neighbour that fails tells us why (Abort frame): fail at once, even between operations or
    // when the current operation is not waiting on that neighbour. A plain close is noticed by the
    // next receive or send that needs the connection — a neighbour closing after the last
    // operation is a normal shutdown, not an error.
    for (const conn of [downstream, upstream]) {
      conn.onFailure((error) => {
        if (error.code === 'aborted') lifecycle.fail(error);
      });
    }
    // Agree on all-reduce's transport now, while every rank is here anyway (connect is collective).
    const run = new Operation('connect (choosing the all-reduce transport)', 0, timeoutMs);
    lifecycle.current = run;
    try {
      await this.allReduceTransport.choose(this.links, run);
    } catch (cause) {
      throw lifecycle.failedWith(joining, cause);
    } finally {
      lifecycle.current = undefined;
    }
    if (lifecycle.state !== 'connecting') throw lifecycle.unusable('connect');
    lifecycle.state = 'ready';
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
      if (this.size > 1 && data.length > 0)
        await this.allReduceTransport.allReduce(this.links!, data, op === 'mean', run);
      return data;
    });
  }

  /** In place: every rank ends with `root`'s data. Chunks are pipelined along the ring from root. */
  async broadcast(data: Float32Array, root: number, options: OperationOptions = {}): Promise<Float32Array> {
    checkArguments('broadcast', data, 'sum');
    checkRoot('broadcast', root, this.size);
    return this.execute('broadcast', options, async (run) => {
      if (this.size > 1 && data.length > 0) await ringBroadcast(this.links!, data, root, run);
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
    checkRoot('reduce', root, this.size);
    return this.execute('reduce', options, async (run) => {
      if (this.size > 1 && data.length > 0) await ringReduce(this.links!, data, root, op === 'mean', run);
      return data;
    });
  }

  /** Resolves once every rank has entered the barrier. */
  async barrier(options: OperationOptions = {}): Promise<void> {
    return this.execute('barrier', options, async (run) => {
      if (this.size > 1) await ringBarrier(this.links!, run);
    });
  }

  /**
   * Close both connections (gracefully: queued frames still go out) and the listener. An
   * operation in flight fails. Idempotent.
   */
  close(): Promise<void> {
    return this.lifecycle.close();
  }

  /**
   * Run one collective: operations queue in call order (their sequence numbers tag the frames, so
   * every rank must issue them in the same order); a failure closes the group.
   */
  private execute<T>(name: string, options: OperationOptions, body: (run: Operation) => Promise<T>): Promise<T> {
    const lifecycle = this.lifecycle;
    const result = this.opTail.then(async () => {
      if (lifecycle.state !== 'ready') throw lifecycle.unusable(name);
      this.sequence = (this.sequence % 0xffffffff) + 1; // tag 0 is the handshake's
      const run = new Operation(`${name} #${this.sequence}`, this.sequence, options.timeoutMs ?? this.timeoutMs);
      lifecycle.current = run;
      this.allReduceTransport.announce(this.sequence, name);
      try {
        return await Promise.race([body(run), run.aborted]);
      } catch (cause) {
        throw lifecycle.failedWith(`${run.label} failed on rank ${this.myRank} of ${this.size}`, cause);
      } finally {
        lifecycle.current = undefined;
      }
    });
    this.opTail = result.catch(() => undefined);
    return result;
  }

  private stopListening(): Promise<void> {
    return this.ring.stopListening(
      `rank ${this.myRank} is no longer accepting connections (the ring is ${this.lifecycle.state})`,
    );
  }
}
