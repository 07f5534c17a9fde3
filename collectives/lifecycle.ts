import { CollectiveError, FrameType, type FramedSocket } from './frames';

/**
 * A group's lifecycle and how it fails. States: listening → connecting → ready, then closed by
 * close(), or failed by the first error (a peer's, a disconnect, a deadline): the error is kept,
 * whatever was in flight (forming the ring, an operation) is aborted with it, and the neighbours
 * are told why (Abort frame), so the whole ring fails fast and later calls say what broke it.
 */

export type GroupState = 'listening' | 'connecting' | 'ready' | 'failed' | 'closed';

/** What failing or closing tears down: the group's connections, listener and shared-memory transport. */
export interface GroupParts {
  /** This rank, for messages (−1 before connect()). */
  rank(): number;
  /** Every connection: the ring's links and those not admitted yet (which it forgets). */
  connections(): FramedSocket[];
  stopListening(): Promise<void>;
  abortSharedMemory(): void;
}

export class Lifecycle {
  state: GroupState = 'listening';
  /** The error that failed or closed the group. */
  failure: CollectiveError | undefined;
  /** Aborts the ring's formation while connect() runs. */
  connecting: AbortController | undefined;
  /** The operation running now (connect's choice of transport included). */
  current: Operation | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly parts: GroupParts) {}

  /** Whether the ring is still being formed (listening or connecting): new connections are welcome. */
  get forming(): boolean {
    return this.state === 'listening' || this.state === 'connecting';
  }

  /** Close everything and tell the neighbours why; the error is kept for later calls. */
  fail(error: CollectiveError): void {
    if (this.failure) return;
    this.failure = error;
    if (this.state !== 'closed') this.state = 'failed';
    this.connecting?.abort(error);
    this.current?.abort(error);
    this.parts.abortSharedMemory();
    for (const conn of this.parts.connections()) {
      void conn.closeWith(FrameType.Abort, error.message);
      conn.fail(new CollectiveError('group-closed', `the group failed: ${error.message}`, { cause: error }));
    }
    this.parts.stopListening();
  }

  /**
   * `cause` as a CollectiveError (same code and reason) whose message starts with `context`; the
   * group fails with it.
   */
  failedWith(context: string, cause: unknown): CollectiveError {
    const error = asCollectiveError(cause);
    const wrapped = new CollectiveError(error.code, `${context}: ${error.message}`, {
      cause,
      ...(error.reason === undefined ? {} : { reason: error.reason }),
    });
    this.fail(wrapped);
    return wrapped;
  }

  /**
   * Close both connections (gracefully: queued frames still go out) and the listener. An
   * operation in flight fails. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const error = new CollectiveError('group-closed', `rank ${this.parts.rank()} closed the group`);
    const healthy = !this.failure;
    this.failure ??= error;
    this.state = 'closed';
    this.connecting?.abort(error);
    this.current?.abort(error);
    const conns = this.parts.connections();
    for (const conn of conns) {
      if (healthy) void conn.end();
      else void conn.closeWith(FrameType.Abort, this.failure.message);
      conn.fail(error); // rejects anything still pending on it and clears its timers
    }
    const serverClosed = this.parts.stopListening();
    this.closing = Promise.all([...conns.map((conn) => conn.closed), serverClosed]).then(() => undefined);
    return this.closing;
  }

  /** Why `name` cannot run in this state. */
  unusable(name: string): CollectiveError {
    if (this.forming) {
      return new CollectiveError('group-closed', `${name} called before connect() finished`);
    }
    const why = this.failure ? ` (${this.failure.message})` : '';
    return new CollectiveError(
      'group-closed',
      `${name} cannot run on rank ${this.parts.rank()}: the group is ${this.state}${why}`,
      {
        cause: this.failure,
      },
    );
  }
}

/** One collective call: its tag, its deadline, and the way to abort it from outside. */
export class Operation {
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

function asCollectiveError(error: unknown): CollectiveError {
  if (error instanceof CollectiveError) return error;
  return new CollectiveError('protocol', error instanceof Error ? error.message : String(error), { cause: error });
}
