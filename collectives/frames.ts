import net, { type Socket } from 'node:net';

/**
 * Framed, length-checked messages over one TCP connection between two ranks.
 *
 * A frame is a fixed 16-byte header followed by `length` payload bytes:
 *
 *   offset 0  u32  magic     "GANT": a stray client (or a port reused by another program) is
 *                            recognised on its first bytes instead of being parsed as garbage
 *   offset 4  u8   version   bumped when the wire format changes; mixed versions fail loudly
 *   offset 5  u8   type      see FrameType
 *   offset 6  u16  reserved  zero; keeps the header a multiple of 4 bytes so that float payloads
 *                            stay 4-byte aligned inside the socket's read buffers and can be
 *                            summed straight out of them without an alignment copy
 *   offset 8  u32  tag       the operation's sequence number: a frame from another operation is a
 *                            protocol error, never silently mixed into this one
 *   offset 12 u32  length    payload bytes
 *
 * The header is big-endian (network order); float payloads are the sender's raw memory
 * (little-endian on every platform Node runs trainers on), so sending needs no conversion pass.
 *
 * Nothing here ever waits without a deadline: every receive has a timeout, and a connection that
 * closes, errors or sends something malformed rejects everything pending on it at once.
 */

export const FRAME_MAGIC = 0x47414e54; // "GANT"
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 16;
/** Default for every receive and every wait for the peer to drain our send buffer. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Default ceiling on one frame's payload; data frames are one chunk (≤ a few MiB). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;
/**
 * Default ceiling on the bytes of frames received but not yet asked for (each frame counted with
 * QUEUED_FRAME_OVERHEAD more): past it the connection stops reading until a receive takes some,
 * so a peer running ahead (or a stranger streaming frames) meets TCP back-pressure, not our heap.
 */
export const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/** What a queued frame costs beyond its payload (its header and bookkeeping): empty frames are not free. */
export const QUEUED_FRAME_OVERHEAD = 64;
/** Direct reads of a summed payload go through this much scratch at a time (fits in L2). */
const SUM_SCRATCH_BYTES = 256 * 1024;

export const FrameType = {
  /** Connecting side's handshake (JSON). */
  Hello: 1,
  /** Accepting side's reply when the handshake matches (JSON, its own handshake). */
  Welcome: 2,
  /** Accepting side's refusal (UTF-8 reason); it closes the connection after sending it. */
  Reject: 3,
  /** A rank that failed tells its neighbours why (UTF-8 reason) before closing. */
  Abort: 4,
  /** Connecting side's answer to the accepting side's challenge (JSON: its HMAC proof). */
  Proof: 5,
  /** Accepting side's word that the connecting side's proof verified (empty): the link is formed. */
  Ready: 6,
  AllReduce: 16,
  Broadcast: 17,
  Reduce: 18,
  Barrier: 19,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([name, value]) => [value, name]));

/** `allReduce`-style name of a frame type, for error messages. */
export function frameTypeName(type: number): string {
  const name = TYPE_NAMES.get(type);
  return name ? name[0]!.toLowerCase() + name.slice(1) : `unknown type ${type}`;
}

export interface FrameHeader {
  type: number;
  tag: number;
  length: number;
}

export type CollectiveErrorCode =
  /** A receive or a send-buffer wait passed its deadline. */
  | 'timeout'
  /** The peer closed the connection or it failed (reset, refused). */
  | 'closed'
  /** The connection ended inside a frame. */
  | 'truncated'
  /** Bad magic/version, oversized frame, or a frame that is not the one this rank expects. */
  | 'protocol'
  /** The peer failed and said why. */
  | 'aborted'
  /** The peer refused our handshake. */
  | 'rejected'
  /** Our side refused the peer's handshake, or the group is misconfigured. */
  | 'handshake'
  /** The group was closed (or had already failed) when the operation ran. */
  | 'group-closed';

/** Every failure of the collective layer: `code` says which kind, the message says who and what. */
export class CollectiveError extends Error {
  override readonly name = 'CollectiveError';
  readonly code: CollectiveErrorCode;
  /** The peer-supplied reason, for 'rejected' and 'aborted'. */
  readonly reason?: string;

  constructor(code: CollectiveErrorCode, message: string, options: { cause?: unknown; reason?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.reason !== undefined) this.reason = options.reason;
  }
}

export function encodeHeader(type: number, tag: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(FRAME_MAGIC, 0);
  header.writeUInt8(FRAME_VERSION, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16BE(0, 6);
  header.writeUInt32BE(tag >>> 0, 8);
  header.writeUInt32BE(length, 12);
  return header;
}

/** A complete frame as one Buffer (header + payload): for control frames and tests. */
export function encodeFrame(type: number, tag: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  return Buffer.concat([encodeHeader(type, tag, payload.byteLength), payload]);
}

export interface ReceiveOptions {
  type: number;
  tag: number;
  /** What is being waited for, for error messages: "allReduce #3 (step 2 of 6, floats 0–262144)". */
  what: string;
  timeoutMs?: number;
  /** Required payload length; a frame of another length is a protocol error. */
  byteLength?: number;
  /** Copy the payload here as it arrives (the one copy from the socket's buffers). */
  into?: Uint8Array;
  /** Add the payload, read as float32, into this array as it arrives (no intermediate copy). */
  addInto?: Float32Array;
  /**
   * With addInto: store (existing + received) × scale instead, in the same pass (a mean's final
   * step without a second walk over the memory).
   */
  scale?: number;
}

interface Waiter {
  options: ReceiveOptions;
  expectedLength: number | undefined;
  resolve: (payload: Buffer | undefined) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface InFrame {
  header: FrameHeader;
  filled: number;
  /** The receive this frame streams into, when one was posted before its header arrived. */
  waiter?: Waiter;
  /** Otherwise the payload is kept until a receive asks for it. */
  buffer?: Buffer;
}

export interface FrameReaderOptions {
  /** Who is on the other end, for messages: "rank 1", or an address before the handshake. */
  peer: string;
  maxPayloadBytes?: number;
  /** See DEFAULT_MAX_QUEUED_BYTES. */
  maxQueuedBytes?: number;
  timeoutMs?: number;
  onFailure?: (error: CollectiveError) => void;
}

/**
 * Turns the bytes a socket delivers into frames and hands each frame to the receive that asked
 * for it, in order. Two ways in: `push()` for 'data' chunks, or `nextReadBuffer()`/`commitRead()`
 * for a socket that reads straight into our buffers. A receive posted before its frame arrives
 * gets the payload placed (or summed) into its destination as it comes in — copied once out of a
 * 'data' chunk, or read there directly by the kernel; a frame that arrives first is kept until
 * it is asked for (one more copy, which posting receives ahead avoids).
 *
 * Any error — malformed frame, wrong frame, timeout, connection end — poisons the reader: after
 * it the byte stream's position is unknown, so every pending and later receive fails with it.
 */
export class FrameReader {
  peer: string;
  maxPayloadBytes: number;
  readonly timeoutMs: number;
  maxQueuedBytes: number;
  /** Told once, when the reader fails. */
  onFailure: ((error: CollectiveError) => void) | undefined;
  /** Told true when the queue of frames not asked for reaches maxQueuedBytes, false when it is below again. */
  onQueueFull: ((full: boolean) => void) | undefined;
  private queuedBytes = 0;
  private queueFull = false;
  private readonly headerBytes = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private current: InFrame | undefined;
  private readonly queued: Array<{ header: FrameHeader; payload: Buffer }> = [];
  private readonly waiters: Waiter[] = [];
  private failure: CollectiveError | undefined;
  private timedOut: Waiter | undefined;
  /**
   * Whether the reader failed in the middle of a payload that was being read into a receive's
   * destination: with direct reads the next socket read is already aimed at that memory.
   */
  failedIntoCallerMemory = false;
  // A float split across two socket reads is assembled here before it is added.
  private readonly carry = new Uint8Array(4);
  private readonly carryFloat = new Float32Array(this.carry.buffer);
  // Direct reads (see nextReadBuffer) of a payload that is summed land here first; allocated on
  // first use, since most readers never sum (or never read directly).
  private sumScratch: Buffer | undefined;

  constructor(options: FrameReaderOptions) {
    this.peer = options.peer;
    this.maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.onFailure = options.onFailure;
  }

  get failed(): CollectiveError | undefined {
    return this.failure;
  }

  /** Frames received but not yet asked for. */
  get queuedFrames(): number {
    return this.queued.length;
  }

  /** Bytes held for frames not yet asked for (payloads plus QUEUED_FRAME_OVERHEAD each). */
  get queuedByteCount(): number {
    return this.queuedBytes;
  }

  /** Feed bytes from the socket. */
  push(chunk: Buffer): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end && !this.failure) {
      let frame = this.current;
      if (!frame) {
        let header: FrameHeader;
        if (this.headerFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
          header = this.parseHeader(chunk, pos);
          pos += FRAME_HEADER_BYTES;
        } else {
          const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, end - pos);
          chunk.copy(this.headerBytes, this.headerFill, pos, pos + n);
          this.headerFill += n;
          pos += n;
          if (this.headerFill < FRAME_HEADER_BYTES) return;
          this.headerFill = 0;
          header = this.parseHeader(this.headerBytes, 0);
        }
        if (this.failure) return;
        frame = this.beginFrame(header);
        if (!frame) return;
        if (header.length === 0) {
          this.finishFrame(frame);
          continue;
        }
      }
      const n = Math.min(frame.header.length - frame.filled, end - pos);
      if (frame.waiter) {
        const { into, addInto, scale } = frame.waiter.options;
        if (into) into.set(chunk.subarray(pos, pos + n), frame.filled);
        else if (addInto) this.accumulate(addInto, scale, chunk, pos, n, frame.filled);
      } else {
        chunk.copy(frame.buffer!, frame.filled, pos, pos + n);
      }
      frame.filled += n;
      pos += n;
      if (frame.filled === frame.header.length) this.finishFrame(frame);
    }
  }

  /**
   * Direct reads (a socket opened with `onread`, see FramedSocket.dial): the buffer the next
   * socket read should land in. Reads are sized to end exactly at the next frame boundary — the
   * rest of the header, or the rest of the payload — so a payload streamed to an `into`
   * destination (or kept for a later receive) goes from the kernel straight to its final place
   * with no copy at all, and a summed payload goes through one small reused scratch buffer.
   */
  nextReadBuffer(): Uint8Array {
    const frame = this.current;
    if (this.failure) return (this.sumScratch ??= Buffer.allocUnsafe(SUM_SCRATCH_BYTES)); // drained, ignored
    if (!frame) return this.headerBytes.subarray(this.headerFill);
    if (frame.buffer) return frame.buffer.subarray(frame.filled);
    const { into } = frame.waiter!.options;
    if (into) return into.subarray(frame.filled);
    // Land at the scratch offset with the payload's alignment, so whole floats stay 4-byte
    // aligned (a read may end mid-float) and can be viewed as a Float32Array without a copy.
    const scratch = (this.sumScratch ??= Buffer.allocUnsafe(SUM_SCRATCH_BYTES));
    const at = frame.filled & 3;
    return scratch.subarray(at, at + Math.min(scratch.length - 4, frame.header.length - frame.filled));
  }

  /** Direct reads: `n` bytes were read into the buffer nextReadBuffer() returned last. */
  commitRead(n: number): void {
    if (this.failure || n <= 0) return;
    const frame = this.current;
    if (!frame) {
      this.headerFill += n;
      if (this.headerFill < FRAME_HEADER_BYTES) return;
      this.headerFill = 0;
      const header = this.parseHeader(this.headerBytes, 0);
      if (this.failure) return;
      const begun = this.beginFrame(header);
      if (begun && header.length === 0) this.finishFrame(begun);
      return;
    }
    const options = frame.buffer ? undefined : frame.waiter!.options;
    if (options?.addInto)
      this.accumulate(options.addInto, options.scale, this.sumScratch!, frame.filled & 3, n, frame.filled);
    frame.filled += n;
    if (frame.filled === frame.header.length) this.finishFrame(frame);
  }

  /** The byte stream ended (socket end/close), or failed with `cause`. */
  end(cause?: Error): void {
    if (this.failure) return;
    const how = cause ? `before the connection failed (${cause.message})` : 'before the connection closed';
    if (this.current) {
      this.fail(
        new CollectiveError(
          'truncated',
          `truncated frame from ${this.peer}: expected ${this.current.header.length} payload bytes, ` +
            `got ${this.current.filled} ${how}`,
          { cause },
        ),
      );
    } else if (this.headerFill > 0) {
      this.fail(
        new CollectiveError(
          'truncated',
          `truncated frame from ${this.peer}: expected a ${FRAME_HEADER_BYTES}-byte header, ` +
            `got ${this.headerFill} bytes ${how}`,
          { cause },
        ),
      );
    } else if (cause) {
      this.fail(new CollectiveError('closed', `connection to ${this.peer} failed: ${cause.message}`, { cause }));
    } else {
      this.fail(new CollectiveError('closed', `${this.peer} closed the connection`));
    }
  }

  /** Poison the reader: every pending and later receive rejects with (a note on) `error`. */
  fail(error: CollectiveError): void {
    if (this.failure) return;
    this.failure = error;
    this.failedIntoCallerMemory = this.current?.waiter?.options.into !== undefined;
    this.current = undefined;
    this.queued.length = 0;
    this.queuedBytes = 0;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(this.errorFor(waiter));
    }
    this.onFailure?.(error);
  }

  /**
   * The next frame, which must have this type and tag (and length, when given). Resolves with the
   * payload Buffer, or with undefined when it was written to `into`/`addInto`.
   */
  receive(options: ReceiveOptions): Promise<Buffer | undefined> {
    const expectedLength =
      options.byteLength ?? options.into?.byteLength ?? (options.addInto ? options.addInto.byteLength : undefined);
    return new Promise((resolve, reject) => {
      if (this.failure) {
        reject(
          new CollectiveError(this.failure.code, `${this.failure.message} (while waiting for ${options.what})`, {
            cause: this.failure,
            ...reasonOf(this.failure),
          }),
        );
        return;
      }
      const timeoutMs = options.timeoutMs ?? this.timeoutMs;
      const waiter: Waiter = {
        options,
        expectedLength,
        resolve,
        reject,
        timer: undefined as unknown as NodeJS.Timeout,
      };
      const ready = this.queued.shift();
      if (ready) {
        this.queuedBytes -= ready.payload.length + QUEUED_FRAME_OVERHEAD;
        if (this.queueFull && this.queuedBytes < this.maxQueuedBytes) {
          this.queueFull = false;
          this.onQueueFull?.(false);
        }
        // The frame came first; the waiter never needs a timer.
        this.waiters.push(waiter);
        this.deliverBuffered(waiter, ready.header, ready.payload);
        return;
      }
      waiter.timer = setTimeout(() => {
        this.timedOut = waiter;
        this.fail(
          new CollectiveError(
            'timeout',
            `timed out after ${timeoutMs} ms waiting for ${this.peer} to send ${options.what}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private parseHeader(bytes: Buffer, at: number): FrameHeader {
    const magic = bytes.readUInt32BE(at);
    const version = bytes.readUInt8(at + 4);
    const header = {
      type: bytes.readUInt8(at + 5),
      tag: bytes.readUInt32BE(at + 8),
      length: bytes.readUInt32BE(at + 12),
    };
    if (magic !== FRAME_MAGIC) {
      this.fail(
        new CollectiveError(
          'protocol',
          `bad frame from ${this.peer}: magic 0x${magic.toString(16).padStart(8, '0')} ` +
            `is not 0x${FRAME_MAGIC.toString(16)} (not a Gantry collective peer?)`,
        ),
      );
    } else if (version !== FRAME_VERSION) {
      this.fail(
        new CollectiveError(
          'protocol',
          `bad frame from ${this.peer}: wire version ${version}, this rank speaks version ${FRAME_VERSION}`,
        ),
      );
    } else if (bytes.readUInt16BE(at + 6) !== 0) {
      this.fail(
        new CollectiveError(
          'protocol',
          `bad frame from ${this.peer}: reserved header bytes are 0x${bytes.readUInt16BE(at + 6).toString(16)}, not 0`,
        ),
      );
    } else if (header.length > this.maxPayloadBytes) {
      this.fail(
        new CollectiveError(
          'protocol',
          `bad frame from ${this.peer}: ${frameTypeName(header.type)} frame declares ${header.length} payload bytes, ` +
            `more than the ${this.maxPayloadBytes}-byte limit`,
        ),
      );
    }
    return header;
  }

  private beginFrame(header: FrameHeader): InFrame | undefined {
    const frame: InFrame = { header, filled: 0 };
    const head = this.waiters[0];
    // Control frames are never streamed into a receive's destination.
    if (head && header.type !== FrameType.Reject && header.type !== FrameType.Abort) {
      const problem = this.mismatch(head, header);
      if (problem) {
        this.fail(new CollectiveError('protocol', problem));
        return undefined;
      }
      if (head.options.into || head.options.addInto) {
        frame.waiter = head;
        this.carryFloat[0] = 0;
      }
    }
    // No destination (yet): keep the payload; finishFrame hands it over.
    if (!frame.waiter) frame.buffer = Buffer.allocUnsafe(header.length);
    this.current = frame;
    return frame;
  }

  private finishFrame(frame: InFrame): void {
    this.current = undefined;
    const { header } = frame;
    if (header.type === FrameType.Reject || header.type === FrameType.Abort) {
      const reason = frame.buffer!.toString('utf8');
      const rejected = header.type === FrameType.Reject;
      this.fail(
        new CollectiveError(
          rejected ? 'rejected' : 'aborted',
          `${this.peer} ${rejected ? 'rejected the connection' : 'aborted'}: ${reason}`,
          { reason },
        ),
      );
      return;
    }
    if (frame.waiter) {
      this.waiters.shift();
      clearTimeout(frame.waiter.timer);
      frame.waiter.resolve(undefined);
      return;
    }
    const waiter = this.waiters[0];
    if (waiter) this.deliverBuffered(waiter, header, frame.buffer!);
    else {
      this.queued.push({ header, payload: frame.buffer! });
      this.queuedBytes += header.length + QUEUED_FRAME_OVERHEAD;
      if (!this.queueFull && this.queuedBytes >= this.maxQueuedBytes) {
        this.queueFull = true;
        this.onQueueFull?.(true);
      }
    }
  }

  /** Hand a frame that was buffered to the receive at the head of the queue. */
  private deliverBuffered(waiter: Waiter, header: FrameHeader, payload: Buffer): void {
    const problem = this.mismatch(waiter, header);
    if (problem) {
      this.fail(new CollectiveError('protocol', problem));
      return;
    }
    this.waiters.shift();
    clearTimeout(waiter.timer);
    const { into, addInto, scale } = waiter.options;
    if (into) into.set(payload);
    else if (addInto) {
      this.carryFloat[0] = 0;
      this.accumulate(addInto, scale, payload, 0, payload.length, 0);
    }
    waiter.resolve(into || addInto ? undefined : payload);
  }

  private mismatch(waiter: Waiter, header: FrameHeader): string | undefined {
    const { type, tag, what } = waiter.options;
    if (header.type !== type || header.tag !== tag) {
      return (
        `protocol error from ${this.peer}: got a ${frameTypeName(header.type)} frame of operation #${header.tag} ` +
        `while waiting for ${what} (${frameTypeName(type)} #${tag}); ` +
        'do all ranks run the same operations in the same order?'
      );
    }
    if (waiter.expectedLength !== undefined && header.length !== waiter.expectedLength) {
      return (
        `protocol error from ${this.peer}: ${frameTypeName(header.type)} #${header.tag} frame has ${header.length} ` +
        `payload bytes where ${what} needs ${waiter.expectedLength}; ` +
        'do all ranks pass the same length and use the same chunk size?'
      );
    }
    return undefined;
  }

  /**
   * target[offset/4 + i] += payload float i (then × scale, when given), for the payload bytes
   * chunk[pos, pos+n) that start at byte `offset` of the payload. Reads are not float-aligned (a
   * socket read may end mid-float), so a float split across reads is assembled in `carry`.
   */
  private accumulate(
    target: Float32Array,
    scale: number | undefined,
    chunk: Buffer,
    pos: number,
    n: number,
    offset: number,
  ): void {
    let p = offset;
    let i = pos;
    const end = pos + n;
    if (p & 3) {
      while (p & 3 && i < end) this.carry[p++ & 3] = chunk[i++]!;
      if ((p & 3) === 0) {
        const k = (p >> 2) - 1;
        target[k] = scale === undefined ? target[k]! + this.carryFloat[0]! : (target[k]! + this.carryFloat[0]!) * scale;
      }
    }
    const whole = (end - i) >> 2;
    if (whole > 0) {
      const byteOffset = chunk.byteOffset + i;
      const source =
        (byteOffset & 3) === 0
          ? new Float32Array(chunk.buffer, byteOffset, whole)
          : new Float32Array(chunk.buffer.slice(byteOffset, byteOffset + whole * 4)); // rare: a misaligned read buffer
      const destination = target.subarray(p >> 2, (p >> 2) + whole);
      if (scale === undefined) addFloats(destination, source);
      else addAndScaleFloats(destination, source, scale);
      i += whole * 4;
      p += whole * 4;
    }
    while (i < end) this.carry[p++ & 3] = chunk[i++]!;
  }

  private errorFor(waiter: Waiter): CollectiveError {
    const failure = this.failure!;
    if (waiter === this.timedOut) return failure;
    return new CollectiveError(failure.code, `${failure.message} (while waiting for ${waiter.options.what})`, {
      cause: failure,
      ...reasonOf(failure),
    });
  }
}

// The hot loops, kept small and monomorphic (always Float32Array) so that V8 optimises them.
function addFloats(destination: Float32Array, source: Float32Array): void {
  for (let k = 0; k < source.length; k++) destination[k] = destination[k]! + source[k]!;
}

function addAndScaleFloats(destination: Float32Array, source: Float32Array, scale: number): void {
  for (let k = 0; k < source.length; k++) destination[k] = (destination[k]! + source[k]!) * scale;
}

function reasonOf(error: CollectiveError): { reason?: string } {
  return error.reason === undefined ? {} : { reason: error.reason };
}

export interface FramedSocketOptions {
  peer: string;
  maxPayloadBytes?: number;
  maxQueuedBytes?: number;
  timeoutMs?: number;
}

/**
 * One TCP connection to a peer: a FrameReader on the incoming side, zero-copy frame writes with
 * backpressure on the outgoing side, and one failure state for both.
 */
export class FramedSocket {
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly closed: Promise<void>;
  private pendingWrites = 0;
  private readonly flushWaiters = new Set<() => void>();
  private readonly failureListeners = new Set<(error: CollectiveError) => void>();
  private failure: CollectiveError | undefined;
  private ending = false;
  private readingStopped = false;
  private writeFailed = false;

  /**
   * Wrap a connected (or connecting) socket. Without `directReader` incoming bytes arrive as
   * 'data' chunks and are copied out of them; with it (see dial) the socket already reads straight
   * into the reader's buffers.
   */
  constructor(socket: Socket, options: FramedSocketOptions, directReader?: FrameReader) {
    this.socket = socket;
    // Frames are whole messages: Nagle's algorithm would hold back small ones (barrier tokens, the
    // last chunk) for a delayed ACK, ~40 ms each.
    socket.setNoDelay(true);
    this.reader = directReader ?? new FrameReader(options);
    this.reader.onFailure = (error) => {
      // With direct reads the next read may already be aimed at a receive's destination (Node
      // picks the buffer right after the previous read): stop reading, synchronously, so that no
      // byte lands in a caller's array after its operation has failed.
      if (directReader && this.reader.failedIntoCallerMemory) {
        this.readingStopped = true;
        socket.pause();
      }
      this.fail(error);
    };
    // Stop reading while the frames nobody asked for yet fill the queue; the peer meets TCP
    // back-pressure (and its own send deadline) instead of this process buffering without bound.
    this.reader.onQueueFull = (full) => {
      if (full) socket.pause();
      else if (!this.readingStopped) socket.resume();
    };
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    if (!directReader) socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    socket.on('end', () => this.reader.end());
    socket.on('error', (error) => this.reader.end(error));
    socket.on('close', () => this.reader.end());
  }

  /**
   * Open a connection whose reads go straight into the frame reader's buffers (Node's `onread`
   * with a buffer per read): payloads land in their destination without the 64 KiB allocation and
   * the copy that every 'data' chunk costs. This is the receiving side of a ring link.
   */
  static dial(host: string, port: number, options: FramedSocketOptions & { highWaterMark?: number }): FramedSocket {
    const reader = new FrameReader(options);
    const socket = net.connect({
      host,
      port,
      noDelay: true,
      ...(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark }),
      onread: {
        buffer: () => reader.nextReadBuffer(),
        callback: (n: number) => {
          reader.commitRead(n);
          return true;
        },
      },
    } as net.NetConnectOpts);
    return new FramedSocket(socket, options, reader);
  }

  get peer(): string {
    return this.reader.peer;
  }

  set peer(peer: string) {
    this.reader.peer = peer;
  }

  get failed(): CollectiveError | undefined {
    return this.failure;
  }

  onFailure(listener: (error: CollectiveError) => void): () => void {
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  /** Mark the connection failed: pending receives, drain and flush waits reject with `error`. */
  fail(error: CollectiveError): void {
    if (this.failure) return;
    this.failure = error;
    this.reader.fail(error);
    for (const wake of [...this.flushWaiters]) wake();
    for (const listener of [...this.failureListeners]) listener(error);
  }

  receive(options: ReceiveOptions): Promise<Buffer | undefined> {
    return this.reader.receive(options);
  }

  /**
   * Queue one frame. The payload is not copied: a Buffer view over the array's memory goes to the
   * socket, so the caller must not change those bytes until `flush()` (the collective algorithms
   * guarantee this). Header and payload go out corked, as one writev. Returns write()'s verdict:
   * false means the send buffer is over its high-water mark and the caller should `drain()`.
   */
  send(type: number, tag: number, payload?: ArrayBufferView): boolean {
    if (this.failure) throw this.failure;
    const length = payload?.byteLength ?? 0;
    const header = encodeHeader(type, tag, length);
    this.pendingWrites++;
    if (!payload || length === 0) return this.socket.write(header, this.onWritten);
    this.socket.cork();
    this.socket.write(header);
    const ok = this.socket.write(Buffer.from(payload.buffer, payload.byteOffset, length), this.onWritten);
    this.socket.uncork();
    return ok;
  }

  /** Wait until the send buffer is below its high-water mark again ('drain'), within a deadline. */
  drain(timeoutMs: number, what: string): Promise<void> {
    if (!this.socket.writableNeedDrain) return Promise.resolve(); // a failed connection fails the next send
    return this.waitFor(
      () => !this.socket.writableNeedDrain,
      'drain',
      timeoutMs,
      `timed out after ${timeoutMs} ms waiting for ${this.peer} to read ${what} (send buffer full)`,
    );
  }

  /**
   * Wait until every queued frame has been handed to the kernel, so its memory may change. A
   * connection that has failed since is no reason to reject, as long as no write did: the peer
   * may well have read everything it needed and closed.
   */
  flush(timeoutMs: number, what: string): Promise<void> {
    if (this.writeFailed) return Promise.reject(this.failure);
    if (this.pendingWrites === 0) return Promise.resolve();
    return this.waitFor(
      () => this.pendingWrites === 0,
      'flush',
      timeoutMs,
      `timed out after ${timeoutMs} ms waiting for ${this.peer} to read ${what}`,
    );
  }

  /** Close gracefully: FIN after whatever is queued; destroyed if the peer does not finish soon. */
  end(graceMs = 1000): Promise<void> {
    if (!this.ending) {
      this.ending = true;
      // When reading has stopped the peer's FIN will never be seen: close once ours is out.
      this.socket.end(() => this.readingStopped && this.socket.destroy());
      setTimeout(() => this.socket.destroy(), graceMs).unref();
    }
    return this.closed;
  }

  /**
   * Tell the peer why we are closing (a Reject or Abort frame, best effort), then close. Works on
   * a connection that has already failed, e.g. to answer garbage with a reason.
   */
  closeWith(type: typeof FrameType.Reject | typeof FrameType.Abort, reason: string, graceMs = 1000): Promise<void> {
    if (!this.ending && !this.socket.destroyed && this.socket.writable) {
      this.socket.write(encodeFrame(type, 0, Buffer.from(reason.slice(0, 4000), 'utf8')), () => {});
    }
    return this.end(graceMs);
  }

  destroy(): void {
    this.ending = true;
    this.socket.destroy();
  }

  private readonly onWritten = (error?: Error | null): void => {
    this.pendingWrites--;
    if (error) this.writeFailed = true;
    if (error)
      this.fail(new CollectiveError('closed', `sending to ${this.peer} failed: ${error.message}`, { cause: error }));
    else if (this.pendingWrites === 0) for (const wake of [...this.flushWaiters]) wake();
  };

  private waitFor(
    done: () => boolean,
    event: 'drain' | 'flush',
    timeoutMs: number,
    timeoutMessage: string,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        if (this.writeFailed) reject(this.failure);
        else if (done()) resolve();
        else if (this.failure) reject(this.failure);
        else return;
        cleanup();
      };
      const timer = setTimeout(() => this.fail(new CollectiveError('timeout', timeoutMessage)), timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.flushWaiters.delete(finish);
        if (event === 'drain') this.socket.off('drain', finish);
      };
      this.flushWaiters.add(finish);
      if (event === 'drain') this.socket.on('drain', finish);
    });
  }
}
