import { DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_TIMEOUT_MS } from './frames';
import { SECRET_BYTES } from './secret';
import { SHARED_MEMORY_DIR } from './shared-memory';

/**
 * What callers pass to a collective group and its operations, the defaults, and the checks made
 * before anything is opened or sent: a bad argument is a TypeError at the call, never a ring that
 * fails halfway.
 */

/** Data frames carry at most this much; smaller chunks pipeline better, larger ones cost fewer syscalls. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Socket send buffer (writable high-water mark): how far ahead of the network a sender may run. */
export const DEFAULT_SEND_BUFFER_BYTES = 4 * 1024 * 1024;
/** A connection must finish its handshake this long after it is accepted (or dialled). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Connections accepted but not yet through their handshake, at most; more are closed at once. A
 * ring needs one (the left neighbour, which retries when closed), so this only bounds strangers.
 */
export const DEFAULT_MAX_PENDING_CONNECTIONS = 64;
/** Refused connections described in a timeout's message (the rest are counted). */
export const DEFAULT_MAX_REFUSALS_KEPT = 16;

export interface CollectiveGroupOptions {
  jobId: string;
  attempt: number;
  /**
   * The attempt's secret (≥ 32 bytes, alike on every rank): each side of every connection proves
   * it holds it (handshake.ts). Trainers derive it with secret.ts's deriveAttemptSecret.
   */
  secret: Uint8Array;
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
   * Bytes of frames a link holds before they are asked for; past it the link stops reading
   * (back-pressure) until they are (default max(64 MiB, 2 × maxFrameBytes)).
   */
  maxQueuedBytes?: number;
  /** Deadline of each connection's handshake, from when it is accepted (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Connections not through their handshake yet, at most; more are closed at once (default 64). */
  maxPendingConnections?: number;
  /** Refused connections described in a timeout's message; the rest are counted (default 16). */
  maxRefusalsKept?: number;
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
/**
 * Shared-memory waits poll this long before sleeping, where every rank can have a core: on this
 * project's 2-vCPU VM it cut a 2-rank all-reduce of 256 KiB from 160–210 µs to 32 µs (wake-ups
 * from a futex sleep cost more than the data). $GANTRY_SHARED_MEMORY_SPIN_MS overrides it.
 */
const DEFAULT_SPIN_MS = 0.1;

/** The options with every default filled in: what the group runs with (the port comes from the listener). */
export type GroupSettings = Required<Omit<CollectiveGroupOptions, 'port' | 'sharedMemory'>> & {
  sharedMemoryMode: SharedMemoryMode;
};

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

/** listen()'s options checked, with their defaults (and the environment's) filled in. */
export function groupSettings(options: CollectiveGroupOptions): GroupSettings {
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
  if (!(options.secret instanceof Uint8Array) || options.secret.byteLength < SECRET_BYTES)
    throw new TypeError(`CollectiveGroup.listen: secret must be a Uint8Array of at least ${SECRET_BYTES} bytes`);
  const maxQueuedBytes = options.maxQueuedBytes ?? Math.max(DEFAULT_MAX_QUEUED_BYTES, 2 * maxFrameBytes);
  if (!(maxQueuedBytes >= maxFrameBytes))
    throw new TypeError(
      `CollectiveGroup.listen: maxQueuedBytes (${maxQueuedBytes}) is smaller than maxFrameBytes (${maxFrameBytes})`,
    );
  const handshakeTimeoutMs = positiveInteger(
    'handshakeTimeoutMs',
    options.handshakeTimeoutMs,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
  );
  const maxPendingConnections = positiveInteger(
    'maxPendingConnections',
    options.maxPendingConnections,
    DEFAULT_MAX_PENDING_CONNECTIONS,
  );
  const maxRefusalsKept = positiveInteger('maxRefusalsKept', options.maxRefusalsKept, DEFAULT_MAX_REFUSALS_KEPT);
  const host = options.host ?? '127.0.0.1';
  const sharedMemory = options.sharedMemory ?? sharedMemoryModeFromEnv();
  const sharedMemorySpinMs = spinMs(options.sharedMemorySpinMs);
  if (!SHARED_MEMORY_MODES.includes(sharedMemory))
    throw new TypeError(
      `CollectiveGroup.listen: sharedMemory must be one of ${SHARED_MEMORY_MODES.join(', ')}, ` +
        `not ${JSON.stringify(sharedMemory)}`,
    );
  return {
    jobId: options.jobId,
    attempt: options.attempt,
    // A copy: the caller may reuse or wipe its buffer.
    secret: Uint8Array.from(options.secret),
    host,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    chunkBytes,
    sendBufferBytes: options.sendBufferBytes ?? DEFAULT_SEND_BUFFER_BYTES,
    maxFrameBytes,
    maxQueuedBytes,
    handshakeTimeoutMs,
    maxPendingConnections,
    maxRefusalsKept,
    sharedMemoryMode: sharedMemory,
    sharedMemoryDir: options.sharedMemoryDir ?? SHARED_MEMORY_DIR,
    sharedMemorySpinMs,
  };
}

/** Why connect()'s rank and peer list cannot form a ring, or undefined when they can. */
export function peersProblem(rank: number, peers: readonly PeerAddress[]): string | undefined {
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

export function checkArguments(name: string, data: Float32Array, op: ReduceOp): void {
  if (!(data instanceof Float32Array)) throw new TypeError(`${name}: data must be a Float32Array`);
  if (op !== 'sum' && op !== 'mean')
    throw new TypeError(`${name}: op must be 'sum' or 'mean', not ${JSON.stringify(op)}`);
}

/** Throws unless `root` is a rank of a ring of `size` (0 before connect(): the operation then fails as unusable). */
export function checkRoot(name: string, root: number, size: number): void {
  if (size > 0 && !(Number.isInteger(root) && root >= 0 && root < size)) {
    throw new RangeError(`${name}: root ${root} is not a rank of this ring (0–${size - 1})`);
  }
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
    throw new TypeError(
      `${source} must be a number of milliseconds in 0–100, ` + `not ${JSON.stringify(option ?? value)}`,
    );
  return ms;
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < 1)
    throw new TypeError(`CollectiveGroup.listen: ${name} must be an integer ≥ 1, not ${JSON.stringify(value)}`);
  return n;
}
