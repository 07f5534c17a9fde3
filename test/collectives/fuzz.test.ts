import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, it } from 'vitest';
import {
  CollectiveError,
  CollectiveGroup,
  encodeFrame,
  FrameReader,
  FrameType,
  HelloSchema,
  ProofSchema,
  parseHandshakeFrame,
  QUEUED_FRAME_OVERHEAD,
  WelcomeSchema,
} from '../../collectives';
import { closeAll, rankData, sameBytes, TEST_SECRET } from './ring';

/**
 * Property-based fuzzing of what strangers control: the frame decoder (both ways bytes reach it)
 * and the handshake's parser, then a real listener fed random frames. fast-check is not installed
 * (and no dependency is added for it), so cases come from a small seeded generator: a failure
 * names its seed, and the same seed replays it.
 */

/** mulberry32: a tiny, good-enough PRNG; the same seed, the same cases. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const bytes = (n: number): Buffer => {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = int(256);
    return out;
  };
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, bytes, pick };
}
type Random = ReturnType<typeof generator>;

const TYPES = [1, 2, 3, 4, 5, 6, 16, 17, 18, 19, 0, 7, 255];

/** A frame that is valid, slightly wrong, or garbage. */
function randomPiece(random: Random, maxPayload: number): Buffer {
  const kind = random.int(10);
  if (kind === 0) return random.bytes(random.int(40)); // garbage
  const length = random.next() < 0.1 ? random.int(maxPayload * 2) : random.int(Math.min(maxPayload, 600));
  const frame = encodeFrame(random.pick(TYPES), random.int(4), random.bytes(length));
  if (kind === 1) {
    // Flip a few bytes anywhere, the header included.
    for (let i = 0; i < 1 + random.int(3); i++) frame[random.int(frame.length)] = random.int(256);
  } else if (kind === 2) {
    // A header claiming another length than what follows.
    frame.writeUInt32BE(random.next() < 0.5 ? random.int(2 ** 32) : random.int(maxPayload + 8), 12);
  }
  return frame;
}

it('the frame decoder never throws on any byte stream: only clean CollectiveErrors, bounded queues', async () => {
  const maxPayload = 4096;
  const maxQueued = 16 * 1024;
  for (let seed = 1; seed <= 1500; seed++) {
    const random = generator(seed);
    const reader = new FrameReader({ peer: 'fuzz', maxPayloadBytes: maxPayload, maxQueuedBytes: maxQueued });
    let full = false;
    reader.onQueueFull = (value) => (full = value);
    const receives: Array<Promise<unknown>> = [];
    const direct = random.next() < 0.5;
    const stream = Buffer.concat(Array.from({ length: 1 + random.int(8) }, () => randomPiece(random, maxPayload)));
    let pos = 0;
    try {
      while (pos < stream.length) {
        if (random.next() < 0.3) {
          const length = random.int(700);
          const target = random.int(3);
          receives.push(
            reader.receive({
              type: random.pick(TYPES),
              tag: random.int(4),
              what: `case ${seed}`,
              timeoutMs: 10_000,
              ...(target === 0 ? {} : target === 1 ? { into: new Uint8Array(length) } : {}),
              ...(target === 2 ? { addInto: new Float32Array(length >> 2) } : {}),
            }),
          );
        }
        if (direct) {
          // The way a dialled socket feeds it: reads land in the buffer the reader names.
          const into = reader.nextReadBuffer();
          const n = Math.min(into.length, stream.length - pos, 1 + random.int(300));
          into.set(stream.subarray(pos, pos + n));
          reader.commitRead(n);
          pos += n;
        } else {
          const n = Math.min(stream.length - pos, 1 + random.int(300));
          reader.push(stream.subarray(pos, pos + n));
          pos += n;
        }
        // Without a socket to pause the reader queues on, but it must have asked for a pause.
        if (reader.queuedByteCount >= maxQueued) expect(full, `seed ${seed}`).toBe(true);
        expect(reader.queuedByteCount).toBeLessThanOrEqual(maxQueued + 400 * (maxPayload + QUEUED_FRAME_OVERHEAD));
      }
      reader.end();
    } catch (error) {
      throw new Error(`seed ${seed}: the decoder threw ${(error as Error).stack}`);
    }
    const failure = reader.failed;
    expect(failure, `seed ${seed}`).toBeInstanceOf(CollectiveError);
    expect(failure!.message, `seed ${seed}`).toMatch(/fuzz|rank|frame|closed/);
    for (const outcome of await Promise.allSettled(receives)) {
      if (outcome.status === 'rejected') expect(outcome.reason, `seed ${seed}`).toBeInstanceOf(CollectiveError);
    }
  }
});

/** Ways to break a JSON value: drop keys, swap types, add keys, nest deeply. */
function mutate(random: Random, value: unknown, depth = 0): unknown {
  const odd = [null, true, -1, 1.5, 2 ** 60, '', 'x'.repeat(random.int(3000)), [], {}, '__proto__', { length: 1e9 }];
  if (random.next() < 0.15 || depth > 3) return random.pick(odd);
  if (Array.isArray(value)) return value.map((item) => mutate(random, item, depth + 1));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      const roll = random.next();
      if (roll < 0.1) continue;
      out[key] = roll < 0.4 ? mutate(random, item, depth + 1) : item;
    }
    if (random.next() < 0.1) out[random.pick(['extra', '__proto__', 'constructor', 'rank'])] = random.pick(odd);
    return out;
  }
  return value;
}

it('the handshake parser turns any payload into a parsed message or a clean Error, never a crash', () => {
  const nonce = 'ab'.repeat(32);
  const identity = { jobId: 'job-f', attempt: 1, rank: 1, worldSize: 2, sharedMemory: false };
  const valid = [
    { schema: HelloSchema, message: { ...identity, nonce } },
    { schema: WelcomeSchema, message: { ...identity, nonce, proof: nonce } },
    { schema: ProofSchema, message: { proof: nonce } },
  ] as const;
  let parsed = 0;
  for (let seed = 1; seed <= 3000; seed++) {
    const random = generator(seed);
    const { schema, message } = random.pick(valid);
    let payload: Buffer;
    const shape = random.int(6);
    if (shape === 0) payload = random.bytes(random.int(200));
    else if (shape === 1) payload = Buffer.from(JSON.stringify(message).slice(0, random.int(120)));
    else if (shape === 2) {
      const depth = 1 + random.int(30_000);
      payload = Buffer.from('['.repeat(depth) + ']'.repeat(random.next() < 0.5 ? depth : 0));
    } else if (shape === 3) payload = Buffer.from(JSON.stringify(message));
    else payload = Buffer.from(JSON.stringify(mutate(random, message)) ?? 'undefined');
    try {
      const result = parseHandshakeFrame(payload, schema as never);
      // What parses is exactly what the schema allows.
      expect(schema.safeParse(result).success, `seed ${seed}`).toBe(true);
      parsed++;
    } catch (error) {
      expect(error, `seed ${seed}`).toBeInstanceOf(Error);
      expect((error as Error).constructor, `seed ${seed}: ${(error as Error).message}`).toBe(Error);
      expect((error as Error).message).toMatch(/^(invalid handshake|handshake payload is not JSON)/);
    }
  }
  expect(parsed).toBeGreaterThan(100); // the valid ones (shape 3) and harmless mutations parse
});

const open: CollectiveGroup[] = [];
afterEach(async () => {
  await closeAll(open.splice(0));
});

it('a listener fed 200 random frame streams stays bounded and still forms its ring', async () => {
  const [rank0, rank1] = await Promise.all(
    [0, 1].map(() =>
      CollectiveGroup.listen({
        jobId: 'job-f',
        attempt: 1,
        secret: TEST_SECRET,
        timeoutMs: 5000,
        handshakeTimeoutMs: 300,
        sharedMemory: 'off',
      }),
    ),
  );
  open.push(rank0!, rank1!);
  const peers = [
    { rank: 0, ...rank0!.address },
    { rank: 1, ...rank1!.address },
  ];
  const forming = rank0!.connect({ rank: 0, peers });
  const sockets: net.Socket[] = [];
  for (let seed = 1; seed <= 200; seed++) {
    const random = generator(10_000 + seed);
    const socket = net.connect(rank0!.port, '127.0.0.1');
    socket.on('error', () => undefined);
    sockets.push(socket);
    // Mostly well-formed Hellos (a valid header, random JSON-ish payloads), some garbage.
    const pieces = Array.from({ length: 1 + random.int(4) }, () =>
      random.next() < 0.6
        ? encodeFrame(FrameType.Hello, 0, Buffer.from(JSON.stringify(mutate(random, { jobId: 'job-f', nonce: 1 }))))
        : randomPiece(random, 64 * 1024),
    );
    socket.write(Buffer.concat(pieces));
  }
  await sleep(100);
  await rank1!.connect({ rank: 1, peers });
  await forming;
  const arrays = [rankData(0, 3001), rankData(1, 3001)];
  await Promise.all([rank0!.allReduce(arrays[0]!), rank1!.allReduce(arrays[1]!)]);
  expect(sameBytes(arrays[0]!, arrays[1]!)).toBe(true);
  expect(rank0!.refusals.count).toBeGreaterThan(0);
  for (const socket of sockets) socket.destroy();
});
