import { availableParallelism } from 'node:os';
import { ringAllReduce, splitEvenly, type RingLinks } from './algorithms';
import { CollectiveError } from './frames';
import type { Operation } from './lifecycle';
import type { SharedMemoryMode } from './options';
import { newNonce, Segment, SharedMemoryAllReduce, sharedMemoryAddon, type OperationContext } from './shared-memory';

/**
 * Which transport all-reduce uses: shared memory where every rank of the ring is on this host and
 * can map every other rank's segment (shared-memory.ts), else the TCP ring (algorithms.ts). The
 * ranks agree in connect() over the ring itself, and again when an all-reduce outgrows the
 * segments; every rank reaches the same answer by the same steps, decided by state they share.
 */

/** Segments hold at least this many floats (1 MiB), so small all-reduces never re-negotiate. */
const MIN_SHARED_CAPACITY = 256 * 1024;

/** Which transport all-reduce uses, and why not shared memory where it does not. */
export interface TransportReport {
  /** 'none': a ring of one, nothing to move. */
  allReduce: 'shared-memory' | 'tcp' | 'none' | 'undecided';
  reason?: string;
}

export interface TransportSettings {
  jobId: string;
  attempt: number;
  sharedMemoryMode: SharedMemoryMode;
  /** Where this rank creates its segment and looks for the others'. */
  sharedMemoryDir: string;
  sharedMemorySpinMs: number;
}

export class AllReduceTransport {
  /** Set once the ranks have agreed to all-reduce through shared memory. */
  private sameHost: SharedMemoryAllReduce | undefined;
  /** Why all-reduce uses TCP (undefined: undecided, or shared memory for every length so far). */
  private tcpReason: string | undefined;
  /** Shared memory was agreed on but segments of this many floats could not be had: longer ones use TCP. */
  private sharedLengthLimit = Infinity;

  constructor(private readonly settings: TransportSettings) {}

  /** What report() says; `undecided`: connect() has not chosen yet. */
  report(undecided: boolean): TransportReport {
    if (this.sameHost)
      return {
        allReduce: 'shared-memory',
        ...(this.sharedLengthLimit < Infinity
          ? { reason: `TCP from ${this.sharedLengthLimit} floats: ${this.tcpReason}` }
          : {}),
      };
    if (this.tcpReason) return { allReduce: 'tcp', reason: this.tcpReason };
    return { allReduce: undecided ? 'undecided' : 'none' };
  }

  /** connect()'s choice, with every other rank (a ring of two or more). */
  async choose(ring: RingLinks, run: Operation): Promise<void> {
    if (this.settings.sharedMemoryMode === 'off') this.tcpReason = 'shared memory is off (sharedMemory: off)';
    else await Promise.race([this.negotiate(ring, MIN_SHARED_CAPACITY, run), run.aborted]);
  }

  /** All-reduce `data` in place over the transport agreed on for its length. */
  async allReduce(ring: RingLinks, data: Float32Array, mean: boolean, run: Operation): Promise<void> {
    if (await this.sharedMemoryFits(ring, data.length, run))
      await this.sameHost!.allReduce(data, splitEvenly(data.length, ring.size), mean, waitContext(ring, run));
    else await ringAllReduce(ring, data, mean, run);
  }

  /** Every operation of the group says which it is, so a peer waiting in shared memory sees a mismatch at once. */
  announce(sequence: number, name: string): void {
    this.sameHost?.announce(sequence, name);
  }

  /** Raise this rank's abort word: peers waiting in shared memory stop at once. */
  abort(): void {
    this.sameHost?.abort();
  }

  /**
   * Whether this all-reduce goes through shared memory, growing the segments first (with the
   * other ranks) where it does not fit.
   */
  private async sharedMemoryFits(ring: RingLinks, length: number, run: Operation): Promise<boolean> {
    if (!this.sameHost || length >= this.sharedLengthLimit) return false;
    return length <= this.sameHost.capacity || this.negotiate(ring, length, run);
  }

  /**
   * Each rank creates a segment and announces its nonce over the ring (a sum of one-hot
   * vectors); each maps every other rank's; a second sum counts the ranks that could not. Zero:
   * shared memory from now on. The files are unlinked once everyone has mapped them. Run by
   * connect(), and by an all-reduce longer than the segments hold.
   */
  private async negotiate(ring: RingLinks, length: number, run: Operation): Promise<boolean> {
    const { jobId, attempt, sharedMemoryDir } = this.settings;
    const n = ring.size;
    const r = ring.rank;
    const capacity = Math.max(MIN_SHARED_CAPACITY, 2 ** Math.ceil(Math.log2(length)));
    const loaded = sharedMemoryAddon();
    const addon = 'addon' in loaded ? loaded.addon : undefined;
    let reason = 'unavailable' in loaded ? `rank ${r}: ${loaded.unavailable}` : undefined;
    let mine: Segment | undefined;
    if (addon) {
      try {
        mine = Segment.create(
          addon,
          sharedMemoryDir,
          { jobId, attempt, rank: r, worldSize: n, nonce: newNonce() },
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
      await ringAllReduce(ring, nonces, false, run);
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
                    sharedMemoryDir,
                    { jobId, attempt, rank: q, worldSize: n, nonce: nonces[q]! },
                    capacity,
                  );
          } catch (error) {
            reason = `rank ${r} cannot map rank ${q}'s segment (another host?): ${(error as Error).message}`;
            break;
          }
        }
      }
      const failures = Float32Array.of(reason === undefined ? 0 : 1);
      await ringAllReduce(ring, failures, false, run);
      if (failures[0] === 0) {
        this.sameHost = new SharedMemoryAllReduce(
          addon!,
          r,
          segments,
          n <= availableParallelism() ? this.settings.sharedMemorySpinMs : 0,
        );
        return true;
      }
      reason ??= `${failures[0]} rank(s) could not map every other rank's segment`;
    } finally {
      mine?.unlink();
    }
    this.tcpReason = reason;
    if (this.sameHost) this.sharedLengthLimit = length;
    if (this.settings.sharedMemoryMode === 'require' && !this.sameHost)
      throw new CollectiveError('handshake', `shared memory is required but cannot be used: ${reason}`);
    return false;
  }
}

/** What a shared-memory wait checks between its futex slices. */
function waitContext(ring: RingLinks, run: Operation): OperationContext {
  return {
    label: run.label,
    operation: run.tag,
    timeoutMs: run.timeoutMs,
    check: () => {
      run.check();
      // Between operations a neighbour's plain close is a normal shutdown; while this rank
      // waits on shared memory for a rank that has not finished, it means that rank is gone.
      const broken = ring.upstream.failed ?? ring.downstream.failed;
      if (broken) throw broken;
    },
  };
}
