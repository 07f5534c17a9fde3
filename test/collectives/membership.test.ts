import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, it } from 'vitest';
import {
  acceptHandshake,
  CollectiveError,
  CollectiveGroup,
  type CollectiveGroupOptions,
  encodeFrame,
  encodeHeader,
  FrameReader,
  FrameType,
  FramedSocket,
  type Handshake,
  handshakeProof,
  offerHandshake,
  type PeerAddress,
  WelcomeSchema,
  parseHandshakeFrame,
  sharedMemoryAddon,
} from '../../collectives';
import { Segment, segmentPath } from '../../collectives/shared-memory';
import { closeAll, rankData, sameBytes, TEST_SECRET } from './ring';

/**
 * Peers prove they belong to the attempt (the secret's mutual HMAC challenge), and what strangers
 * can make a rank hold is bounded: pending connections, queued bytes, refusals remembered.
 * Everything here runs over real loopback sockets.
 */

const open: CollectiveGroup[] = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await closeAll(open.splice(0));
});

async function listen(options: Partial<CollectiveGroupOptions> = {}): Promise<CollectiveGroup> {
  const group = await CollectiveGroup.listen({
    jobId: 'job-m',
    attempt: 3,
    secret: TEST_SECRET,
    timeoutMs: 3000,
    sharedMemory: 'off',
    ...options,
  });
  open.push(group);
  return group;
}

/** The error `promise` rejects with (a resolution fails the test). */
async function failure(promise: Promise<unknown>): Promise<CollectiveError> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => error as CollectiveError,
  );
}

const peerOf = (rank: number, group: CollectiveGroup): PeerAddress => ({ rank, ...group.address });
/** Rank 1 of the 2-rank ring of job-m attempt 3: who a stranger pretends to be. */
const rank1: Handshake = { jobId: 'job-m', attempt: 3, rank: 1, worldSize: 2, sharedMemory: false };

/** A raw connection to `port` that speaks frames (the stranger's side). */
function dialRaw(port: number): FramedSocket {
  const conn = new FramedSocket(net.connect(port, '127.0.0.1'), { peer: 'rank 0', timeoutMs: 3000 });
  cleanups.push(() => conn.destroy());
  return conn;
}

/** Form the 2-rank ring and prove it works with an all-reduce. */
async function formAndAllReduce(rank0: CollectiveGroup, rank1Group: CollectiveGroup): Promise<void> {
  const peers = [peerOf(0, rank0), peerOf(1, rank1Group)];
  await Promise.all([rank0.connect({ rank: 0, peers }), rank1Group.connect({ rank: 1, peers })]);
  const arrays = [rankData(0, 4099), rankData(1, 4099)];
  await Promise.all([rank0.allReduce(arrays[0]!), rank1Group.allReduce(arrays[1]!)]);
  expect(sameBytes(arrays[0]!, arrays[1]!)).toBe(true);
}

/**
 * Send Hello as `claimed`, read the Welcome, answer with `proofFor(welcome nonce)`; resolve with
 * the Reject reason (or 'ready' when admitted).
 */
async function strangerHandshake(
  port: number,
  claimed: Handshake,
  proofFor: (challenge: Buffer) => Buffer,
): Promise<string> {
  const conn = dialRaw(port);
  conn.send(FrameType.Hello, 0, Buffer.from(JSON.stringify({ ...claimed, nonce: randomBytes(32).toString('hex') })));
  const welcome = parseHandshakeFrame(
    (await conn.receive({ type: FrameType.Welcome, tag: 0, what: 'welcome' }))!,
    WelcomeSchema,
  );
  conn.send(
    FrameType.Proof,
    0,
    Buffer.from(JSON.stringify({ proof: proofFor(Buffer.from(welcome.nonce, 'hex')).toString('hex') })),
  );
  try {
    await conn.receive({ type: FrameType.Ready, tag: 0, what: 'ready', byteLength: 0 });
    return 'ready';
  } catch (error) {
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as CollectiveError).code).toBe('rejected');
    return (error as CollectiveError).reason!;
  }
}

it('refuses a stranger without the secret (either side of the handshake), and the ring still forms', async () => {
  const rank0 = await listen();
  const rank1Group = await listen();
  const stranger = await listen({ secret: Buffer.alloc(32, 0x11) });
  const peers = [peerOf(0, rank0), peerOf(1, rank1Group)];
  const forming = rank0.connect({ rank: 0, peers });

  // A stranger group with the right identity but another secret dials rank 0: it cannot check
  // rank 0's proof, so it refuses rank 0 (and never learns anything it could reuse).
  const strangerJoin = await failure(
    stranger.connect({ rank: 1, peers: [peerOf(0, rank0), peerOf(1, stranger)], timeoutMs: 2000 }),
  );
  expect(strangerJoin).toBeInstanceOf(CollectiveError);
  expect(strangerJoin.code).toBe('handshake');
  expect(strangerJoin.message).toContain('is not rank 0 of this ring: its proof of membership does not verify');

  // A raw stranger that answers rank 0's challenge with a proof made from a guessed secret.
  const reason = await strangerHandshake(rank0.port, rank1, (challenge) =>
    handshakeProof(randomBytes(32), 'dial', rank1, challenge),
  );
  expect(reason).toMatch(/^rank 1's proof of membership does not verify \(not a trainer of this attempt, /);

  await Promise.all([forming, rank1Group.connect({ rank: 1, peers })]);
  const arrays = [rankData(0, 1001), rankData(1, 1001)];
  await Promise.all([rank0.allReduce(arrays[0]!), rank1Group.allReduce(arrays[1]!)]);
  expect(sameBytes(arrays[0]!, arrays[1]!)).toBe(true);
  expect(rank0.refusals.count).toBeGreaterThanOrEqual(2);
  expect(rank0.refusals.recent.join('\n')).toContain('proof of membership does not verify');
});

it("refuses a proof made for another rank, and a reflected challenge (the accepting side's role)", async () => {
  const rank0 = await listen();
  const rank1Group = await listen();
  void rank0.connect({ rank: 0, peers: [peerOf(0, rank0), peerOf(1, rank1Group)] }).catch(() => undefined);

  // Holds the secret, claims rank 1, but proves rank 2's identity: the proof binds the rank.
  const wrongRank = await strangerHandshake(rank0.port, rank1, (challenge) =>
    handshakeProof(TEST_SECRET, 'dial', { ...rank1, rank: 2 }, challenge),
  );
  expect(wrongRank).toMatch(/^rank 1's proof of membership does not verify \(not a trainer of this attempt, /);

  // The accepting side's proof (role 'accept') is no answer to a dialler's challenge.
  const reflected = await strangerHandshake(rank0.port, rank1, (challenge) =>
    handshakeProof(TEST_SECRET, 'accept', rank1, challenge),
  );
  expect(reflected).toMatch(/^rank 1's proof of membership does not verify \(not a trainer of this attempt, /);

  // The right proof is admitted (and this raw link then is rank 0's left neighbour).
  const admitted = await strangerHandshake(rank0.port, rank1, (challenge) =>
    handshakeProof(TEST_SECRET, 'dial', rank1, challenge),
  );
  expect(admitted).toBe('ready');
});

it('refuses a replayed handshake, in both directions', async () => {
  const rank0Identity: Handshake = { ...rank1, rank: 0 };
  // A genuine handshake between two holders of the secret, with every byte each side sent recorded.
  const fromDialler: Buffer[] = [];
  const fromAcceptor: Buffer[] = [];
  const server = net.createServer((socket) => {
    const write = socket.write.bind(socket);
    socket.write = ((chunk: Buffer, ...rest: never[]) => {
      fromAcceptor.push(Buffer.from(chunk));
      return write(chunk, ...rest);
    }) as typeof socket.write;
    const conn = new FramedSocket(socket, { peer: 'rank 1' });
    cleanups.push(() => conn.destroy());
    void acceptHandshake(conn, rank0Identity, TEST_SECRET, 1, 2000).catch(() => undefined);
  });
  cleanups.push(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  const write = socket.write.bind(socket);
  socket.write = ((chunk: Buffer, ...rest: never[]) => {
    fromDialler.push(Buffer.from(chunk));
    return write(chunk, ...rest);
  }) as typeof socket.write;
  const dialler = new FramedSocket(socket, { peer: 'rank 0' });
  cleanups.push(() => dialler.destroy());
  await offerHandshake(dialler, rank1, TEST_SECRET, 0, 2000);

  // 1. The dialler's recorded bytes (Hello, Proof) replayed to a real rank 0: its challenge is new.
  const rank0 = await listen();
  const rank1Group = await listen();
  const peers = [peerOf(0, rank0), peerOf(1, rank1Group)];
  const forming = rank0.connect({ rank: 0, peers });
  const replay = net.connect(rank0.port, '127.0.0.1');
  cleanups.push(() => replay.destroy());
  const answer = new FrameReader({ peer: 'rank 0' });
  replay.on('data', (chunk: Buffer) => answer.push(chunk));
  replay.write(Buffer.concat(fromDialler));
  await answer.receive({ type: FrameType.Welcome, tag: 0, what: 'welcome' });
  const refusal = await answer
    .receive({ type: FrameType.Ready, tag: 0, what: 'ready' })
    .catch((error: unknown) => error as CollectiveError);
  expect(refusal).toMatchObject({
    code: 'rejected',
    reason: expect.stringMatching(/^rank 1's proof of membership does not verify \(not a trainer of this attempt, /),
  });

  // 2. The acceptor's recorded Welcome replayed by a fake listener to a real rank 1: its nonce is new too.
  const fake = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => socket.write(Buffer.concat(fromAcceptor)));
  });
  cleanups.push(() => fake.close());
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  const victim = await listen();
  const fakePeers = [{ rank: 0, host: '127.0.0.1', port: (fake.address() as AddressInfo).port }, peerOf(1, victim)];
  const fooled = await failure(victim.connect({ rank: 1, peers: fakePeers, timeoutMs: 2000 }));
  expect(fooled).toMatchObject({ code: 'handshake' });
  expect(fooled.message).toContain('its proof of membership does not verify');

  // The real ring still forms.
  await Promise.all([forming, rank1Group.connect({ rank: 1, peers })]);
  expect(rank1Group.state).toBe('ready');
});

it('a flood of 1000 idle connections is bounded in memory and does not stop the ring forming', async () => {
  const rank0 = await listen({ handshakeTimeoutMs: 500, maxPendingConnections: 32, timeoutMs: 8000 });
  const rank1Group = await listen({ timeoutMs: 8000 });
  globalThis.gc?.();
  const before = process.memoryUsage().rss;
  const flood: net.Socket[] = [];
  cleanups.push(() => {
    for (const socket of flood) socket.destroy();
  });
  const closedByRank0 = { count: 0 };
  await Promise.all(
    Array.from(
      { length: 1000 },
      () =>
        new Promise<void>((resolve) => {
          const socket = net.connect(rank0.port, '127.0.0.1', () => resolve());
          socket.on('error', () => resolve());
          socket.on('close', () => closedByRank0.count++);
          flood.push(socket);
        }),
    ),
  );
  // Each stranger held is one socket and one small reader; the rest were closed at once.
  await expect.poll(() => closedByRank0.count, { timeout: 3000 }).toBeGreaterThanOrEqual(1000 - 32);
  const growth = process.memoryUsage().rss - before;
  // 1000 client sockets and 32 held ones live in this process; unbounded holding would cost far more
  // once they send. 64 MiB leaves room for the GC's slack on a busy machine.
  expect(growth).toBeLessThan(64 * 1024 * 1024);

  const started = Date.now();
  await formAndAllReduce(rank0, rank1Group);
  expect(Date.now() - started).toBeLessThan(6000);
  expect(rank0.refusals.count).toBeGreaterThanOrEqual(1000 - 32);
  expect(rank0.refusals.recent.length).toBeLessThanOrEqual(16);
  expect(rank0.refusals.recent.join('\n')).toMatch(/timed out after \d+ ms waiting for .* to send a handshake/);
});

it('a stranger streaming frames before the handshake is paused at the queue bound, not buffered', async () => {
  const rank0 = await listen({ handshakeTimeoutMs: 1500 });
  const stranger = net.connect(rank0.port, '127.0.0.1');
  cleanups.push(() => stranger.destroy());
  stranger.on('error', () => undefined);
  await new Promise<void>((resolve) => stranger.once('connect', () => resolve()));
  // 64 MiB of well-formed 32 KiB Hello frames, written as fast as the socket takes them.
  const frame = encodeFrame(FrameType.Hello, 0, Buffer.alloc(32 * 1024, 0x20));
  let written = 0;
  let blocked = false;
  globalThis.gc?.();
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 2048 && !stranger.destroyed; i++) {
    written += frame.length;
    if (!stranger.write(frame)) {
      await Promise.race([new Promise((resolve) => stranger.once('drain', resolve)), sleep(300)]);
      if (stranger.writableNeedDrain) {
        blocked = true;
        break;
      }
    }
  }
  // Rank 0 stopped reading: the stranger's writes back up long before 64 MiB went through.
  expect(blocked).toBe(true);
  expect(written).toBeLessThan(64 * 1024 * 1024);
  const held = process.memoryUsage().arrayBuffers - before;
  expect(held).toBeLessThan(48 * 1024 * 1024);
  // And it is dropped at its handshake deadline.
  await new Promise((resolve) => (stranger.destroyed ? resolve(undefined) : stranger.once('close', resolve)));
  expect(rank0.refusals.count).toBeGreaterThanOrEqual(1);
});

it('a link stops reading past maxQueuedBytes and resumes as receives take the frames', async () => {
  const server = net.createServer();
  cleanups.push(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const sender = new FramedSocket(net.connect((server.address() as AddressInfo).port, '127.0.0.1'), {
    peer: 'receiver',
  });
  cleanups.push(() => sender.destroy());
  const receiver = new FramedSocket(await accepted, { peer: 'sender', maxQueuedBytes: 256 * 1024 });
  cleanups.push(() => receiver.destroy());
  const payload = new Float32Array(16 * 1024); // 64 KiB a frame
  for (let i = 0; i < 200; i++) sender.send(FrameType.AllReduce, i + 1, payload);
  await sleep(300);
  // At most the bound plus the frame that crossed it (and a socket read) are held.
  expect(receiver.reader.queuedByteCount).toBeGreaterThanOrEqual(256 * 1024);
  expect(receiver.reader.queuedByteCount).toBeLessThan(256 * 1024 + 2 * 64 * 1024 + 64 * 1024);
  expect(receiver.socket.isPaused()).toBe(true);
  // Taking the frames resumes reading; all 200 arrive in order.
  for (let i = 0; i < 200; i++) {
    const got = await receiver.receive({ type: FrameType.AllReduce, tag: i + 1, what: `frame ${i + 1}` });
    expect(got!.length).toBe(64 * 1024);
  }
  expect(receiver.reader.queuedByteCount).toBe(0);
});

it('a frame claiming a huge length is refused from its header, before any allocation', async () => {
  const rank0 = await listen();
  const conn = dialRaw(rank0.port);
  const reader = conn.reader;
  globalThis.gc?.();
  const before = process.memoryUsage().arrayBuffers;
  conn.socket.write(encodeHeader(FrameType.Hello, 0, 0xffffffff));
  const refusal = await reader.receive({ type: FrameType.Welcome, tag: 0, what: 'welcome' }).then(
    () => undefined,
    (error: unknown) => error as CollectiveError,
  );
  expect(refusal).toMatchObject({ code: 'rejected' });
  expect(refusal!.reason).toMatch(
    /^bad frame from 127\.0\.0\.1:\d+: hello frame declares 4294967295 payload bytes, more than the 65536-byte limit$/,
  );
  expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);

  // The same for a link's reader (16 MiB limit) fed straight.
  const link = new FrameReader({ peer: 'rank 1' });
  link.push(encodeHeader(FrameType.AllReduce, 1, 16 * 1024 * 1024 + 1));
  expect(link.failed).toMatchObject({ code: 'protocol' });
  expect(link.failed!.message).toContain('declares 16777217 payload bytes, more than the 16777216-byte limit');
  expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
});

it('listen() refuses a missing or short secret and nonsensical bounds', async () => {
  const base = { jobId: 'job-m', attempt: 1 };
  await expect(CollectiveGroup.listen(base as never)).rejects.toThrow(
    'CollectiveGroup.listen: secret must be a Uint8Array of at least 32 bytes',
  );
  await expect(CollectiveGroup.listen({ ...base, secret: Buffer.alloc(16) })).rejects.toThrow('at least 32 bytes');
  await expect(CollectiveGroup.listen({ ...base, secret: TEST_SECRET, maxPendingConnections: 0 })).rejects.toThrow(
    'maxPendingConnections must be an integer ≥ 1, not 0',
  );
  await expect(
    CollectiveGroup.listen({ ...base, secret: TEST_SECRET, maxFrameBytes: 1 << 20, maxQueuedBytes: 1024 }),
  ).rejects.toThrow('maxQueuedBytes (1024) is smaller than maxFrameBytes (1048576)');
});

it('shared memory: a segment file another user could have written is refused before it is mapped', () => {
  const loaded = sharedMemoryAddon();
  if (!('addon' in loaded)) return; // no addon here: TCP only, nothing to map
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-shm-planted-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const identity = { jobId: 'job-m', attempt: 3, rank: 1, worldSize: 2, nonce: 12345 };
  const planted = segmentPath(dir, identity);
  fs.writeFileSync(planted, Buffer.alloc(Segment.byteLength(256 * 1024)), { mode: 0o644 });
  fs.chmodSync(planted, 0o644);
  expect(() => Segment.attach(loaded.addon, dir, identity, 256 * 1024)).toThrow(
    `${planted} is open to other users (mode 644): not a peer's segment`,
  );
});
