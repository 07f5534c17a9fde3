import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';
import { CollectiveError, FrameType, FramedSocket } from './frames';
import { acceptHandshake, HANDSHAKE_MAX_BYTES, offerHandshake, type Handshake } from './handshake';
import type { PeerAddress } from './options';

/**
 * How a rank takes its place in the ring: it listens (before it knows its rank), then dials rank+1
 * and accepts rank−1, handshaking both ways (handshake.ts) so that a connection from another job
 * or a stale attempt is refused instead of joining, and both sides prove they hold the attempt's
 * secret, so a stranger who can reach the port cannot join. Connections that arrive before
 * connect() are held (and buffered) until it is called.
 *
 * What a stranger can make a rank hold is bounded: at most maxPendingConnections connections
 * without a handshake (more are closed at once, silently, so that a neighbour caught in a flood
 * retries), each until handshakeTimeoutMs after its accept, each reading at most a handshake's
 * worth of frames before it is paused; refusals are counted, and only the last few described.
 */

/** Open the group's listening socket (port 0: a free one). */
export async function openListener(host: string, port: number, sendBufferBytes: number): Promise<net.Server> {
  const server = net.createServer({ noDelay: true, highWaterMark: sendBufferBytes });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export interface RingFormationSettings {
  /** Where this rank listens (for messages). */
  host: string;
  port: number;
  /** Deadline of each handshake connection's receives. */
  timeoutMs: number;
  /** Largest frame a link accepts once its handshake passed. */
  maxFrameBytes: number;
  /** Bytes of frames a link holds before they are asked for (then it stops reading). */
  maxQueuedBytes: number;
  /** The attempt's secret, which both sides of every connection prove they hold. */
  secret: Uint8Array;
  /** Deadline of a connection's handshake, from its accept. */
  handshakeTimeoutMs: number;
  /** Accepted connections not through their handshake, at most; more are closed at once. */
  maxPendingConnections: number;
  /** Refusals described in a timeout's message. */
  maxRefusalsKept: number;
}

/**
 * The connections this rank refused: a count, and the last few reasons (a ring buffer), so that a
 * flood of strangers costs a counter, not a list, and a timeout can still say what came instead.
 */
export class Refusals {
  count = 0;
  private readonly recent: string[] = [];
  private next = 0;

  constructor(private readonly keep: number) {}

  add(reason: string): void {
    this.count++;
    if (this.recent.length < this.keep) this.recent.push(reason);
    else this.recent[this.next] = reason;
    this.next = (this.next + 1) % this.keep;
  }

  /** Oldest first. */
  get reasons(): string[] {
    return this.recent.length < this.keep
      ? [...this.recent]
      : [...this.recent.slice(this.next), ...this.recent.slice(0, this.next)];
  }

  /** `; refused N other connection(s) (the last K): …`, or '' when none was. */
  describe(): string {
    if (this.count === 0) return '';
    const shown = this.reasons;
    const which = shown.length < this.count ? ` (the last ${shown.length})` : '';
    return `; refused ${this.count} other connection(s)${which}: ${shown.join('; ')}`;
  }
}

export interface RingFormationHooks {
  /** Why a connection arriving now is refused, or undefined when it may join. */
  refusal(): string | undefined;
  listenerFailed(error: Error): void;
}

export class RingFormation {
  /** Dialled to rank+1: data arrives here. */
  upstream: FramedSocket | undefined;
  /** Accepted from rank−1: data leaves here. */
  downstream: FramedSocket | undefined;
  private serverClosed: Promise<void> | undefined;
  /**
   * Connections accepted before connect() was called: held (and buffered, up to a handshake's
   * worth) until it is, or until their handshake deadline, whichever is first.
   */
  private readonly incoming: FramedSocket[] = [];
  /** When each accepted connection's handshake must be over (from its accept). */
  private readonly handshakeDeadlines = new WeakMap<FramedSocket, number>();
  /** Accepted connections whose handshake is running. */
  private accepting = 0;
  readonly refusals: Refusals;
  /** Connections in the middle of a handshake, closed if the group fails or the ring completes. */
  private readonly pending = new Set<FramedSocket>();
  private onIncoming: ((conn: FramedSocket) => void) | undefined;

  constructor(
    private readonly server: net.Server,
    private readonly settings: RingFormationSettings,
    private readonly hooks: RingFormationHooks,
  ) {
    this.refusals = new Refusals(settings.maxRefusalsKept);
    server.on('connection', (socket) => this.accepted(socket));
    server.on('error', (error) => hooks.listenerFailed(error));
  }

  /**
   * Dial the right neighbour (retrying with backoff until the deadline, since it may not listen
   * yet) and accept the left one, at once; each link is kept as soon as it is made. The first
   * failure aborts the other side through `abort` and rejects.
   */
  async form(
    ours: Handshake,
    leftRank: number,
    right: PeerAddress,
    deadline: number,
    timeoutMs: number,
    abort: AbortController,
  ): Promise<void> {
    await Promise.all(
      [
        this.acceptLeft(ours, leftRank, deadline, timeoutMs, abort.signal).then((conn) => (this.downstream = conn)),
        this.dialRight(ours, right, deadline, timeoutMs, abort.signal).then((conn) => (this.upstream = conn)),
      ].map((step) =>
        step.catch((error: unknown) => {
          abort.abort(error);
          throw error;
        }),
      ),
    );
  }

  /** Every connection (the links, and those not admitted yet, which are forgotten here). */
  connections(): FramedSocket[] {
    const all = new Set<FramedSocket>([...this.incoming, ...this.pending]);
    if (this.downstream) all.add(this.downstream);
    if (this.upstream) all.add(this.upstream);
    this.incoming.length = 0;
    this.pending.clear();
    return [...all];
  }

  /** Close the listener and refuse, with `reason`, the connections not admitted yet. */
  stopListening(reason: string): Promise<void> {
    this.serverClosed ??= new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of [...this.incoming, ...this.pending]) void conn.closeWith(FrameType.Reject, reason);
    this.incoming.length = 0;
    this.pending.clear();
    return this.serverClosed;
  }

  private accepted(socket: net.Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.incoming.length + this.accepting >= this.settings.maxPendingConnections) {
      // Closed without a word: a neighbour that lands here retries (a Reject would be final), and
      // a flood costs one counter per connection.
      socket.destroy();
      this.refusals.add(`${peer}: over ${this.settings.maxPendingConnections} connections awaiting a handshake`);
      return;
    }
    const conn = new FramedSocket(socket, {
      peer,
      maxPayloadBytes: HANDSHAKE_MAX_BYTES,
      // One handshake frame at a time is all a peer sends before it is answered.
      maxQueuedBytes: HANDSHAKE_MAX_BYTES,
      timeoutMs: this.settings.timeoutMs,
    });
    const refusal = this.hooks.refusal();
    if (refusal !== undefined) {
      void conn.closeWith(FrameType.Reject, refusal);
      return;
    }
    this.handshakeDeadlines.set(conn, Date.now() + this.settings.handshakeTimeoutMs);
    if (this.onIncoming) this.onIncoming(conn);
    else this.hold(conn);
  }

  /** Keep a connection until connect() asks for it, or drop it (silently: it may retry) at its deadline. */
  private hold(conn: FramedSocket): void {
    this.incoming.push(conn);
    const timer = setTimeout(() => {
      const at = this.incoming.indexOf(conn);
      if (at < 0) return;
      this.incoming.splice(at, 1);
      conn.destroy();
      this.refusals.add(`${conn.peer}: held ${this.settings.handshakeTimeoutMs} ms before connect() and dropped`);
    }, this.settings.handshakeTimeoutMs);
    timer.unref();
    // Garbage (bad magic, a huge length) fails the reader at once: refuse it now, not at connect().
    conn.onFailure((error) => {
      const at = this.incoming.indexOf(conn);
      if (at < 0) return;
      this.incoming.splice(at, 1);
      clearTimeout(timer);
      void conn.closeWith(FrameType.Reject, error.message);
      this.refusals.add(`${conn.peer}: ${error.message}`);
    });
    void conn.closed.then(() => {
      clearTimeout(timer);
      const at = this.incoming.indexOf(conn);
      if (at >= 0) this.incoming.splice(at, 1);
    });
  }

  /**
   * A connection that passed its handshake is a ring link from now on. Its limits are raised at
   * once, not when connect() finishes: a neighbour that completed its own connect() first may
   * already be sending the first operation's data frames.
   */
  private admitted(conn: FramedSocket, peerRank: number): FramedSocket {
    conn.peer = `rank ${peerRank}`;
    conn.reader.maxPayloadBytes = this.settings.maxFrameBytes;
    conn.reader.maxQueuedBytes = this.settings.maxQueuedBytes;
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
          const others = this.refusals.describe();
          const where = `${this.settings.host}:${this.settings.port}`;
          settle(
            new CollectiveError(
              'timeout',
              `timed out after ${timeoutMs} ms waiting for rank ${leftRank} (the left neighbour) ` +
                `to connect to ${where}${others}`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      const consider = (conn: FramedSocket): void => {
        this.pending.add(conn);
        this.accepting++;
        const handshakeDeadline = Math.min(deadline, this.handshakeDeadlines.get(conn) ?? deadline);
        acceptHandshake(conn, ours, this.settings.secret, leftRank, Math.max(1, handshakeDeadline - Date.now())).then(
          () => {
            this.accepting--;
            this.pending.delete(conn);
            if (!settle(undefined, this.admitted(conn, leftRank)))
              void conn.closeWith(FrameType.Reject, `rank ${ours.rank} already has its left neighbour`);
          },
          (error: Error) => {
            this.accepting--;
            this.pending.delete(conn);
            this.refusals.add(error.message);
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
        const last = lastError ? ` (last error: ${lastError.message})` : '';
        throw new CollectiveError(
          'timeout',
          `timed out after ${timeoutMs} ms connecting to rank ${peer.rank} at ${peer.host}:${peer.port}${last}`,
        );
      }
      let conn: FramedSocket | undefined;
      try {
        // This connection only receives data (and sends the handshake), so it needs no large
        // send buffer; its reads go straight into the frame reader's destinations.
        conn = FramedSocket.dial(peer.host, peer.port, {
          peer: `rank ${peer.rank} at ${peer.host}:${peer.port}`,
          maxPayloadBytes: HANDSHAKE_MAX_BYTES,
          // Until it has proved itself, the listener gets no more of our memory than a stranger does.
          maxQueuedBytes: HANDSHAKE_MAX_BYTES,
          timeoutMs: this.settings.timeoutMs,
        });
        this.pending.add(conn);
        await connected(conn.socket, remaining, signal);
        await offerHandshake(conn, ours, this.settings.secret, peer.rank, Math.max(1, deadline - Date.now()));
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
      // An abort rejects with the signal's own reason, as the dial it interrupts would.
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), undefined, { signal }).catch(() => {
        throw signal.reason;
      });
    }
  }
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
