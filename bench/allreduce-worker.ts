/**
 * One process of bench/allreduce.ts (forked by it, talks to it over IPC). Roles:
 *
 *   ring     one rank of a CollectiveGroup (TCP or shared memory, as the config says): reports its
 *            address, gets the peer list, then times allReduce for each size and reports every
 *            iteration's seconds.
 *   source   the loopback ceiling's writing side: listens, writes S bytes, waits for the answer,
 *            reports seconds.
 *   sink     the ceiling's reading side: dials the source, counts S bytes, answers one byte.
 *   duplex   one of two processes that each send S bytes on one connection while reading S on
 *            another — the traffic of a 2-rank ring, with no collective logic — and report
 *            seconds per round.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { CollectiveGroup, collectiveKey, deriveAttemptSecret, type PeerAddress } from '../collectives';

type FromParent =
  | { kind: 'peers'; rank: number; peers: PeerAddress[] }
  | { kind: 'sink-address'; host: string; port: number }
  | { kind: 'duplex-peer'; host: string; port: number; counts: number[] };

export interface BenchConfig {
  sizes: number[];
  /** How the ceiling's reader takes bytes off the socket: 'onread' (into one reused buffer) or 'data' events. */
  ceilingReader: 'onread' | 'data';
  seconds: number;
  chunkBytes: number;
  sendBufferBytes: number;
  minIterations: number;
  maxIterations: number;
  /** The ring's transport for all-reduce: 'off' = TCP, 'require' = shared memory. */
  sharedMemory?: 'off' | 'require';
}

const role = process.argv[2];
const config = JSON.parse(process.argv[3] ?? '{}') as BenchConfig;
const send = (message: unknown): void => void process.send!(message);
const nextMessage = (): Promise<FromParent> =>
  new Promise((resolve) => process.once('message', (message) => resolve(message as FromParent)));

async function ring(): Promise<void> {
  const group = await CollectiveGroup.listen({
    jobId: 'bench',
    attempt: 0,
    secret: deriveAttemptSecret(collectiveKey(), 'bench', 0),
    chunkBytes: config.chunkBytes,
    sendBufferBytes: config.sendBufferBytes,
    timeoutMs: 60_000,
    sharedMemory: config.sharedMemory ?? 'auto',
  });
  send({ kind: 'address', ...group.address });
  const message = await nextMessage();
  if (message.kind !== 'peers') throw new Error(`unexpected ${message.kind}`);
  await group.connect({ rank: message.rank, peers: message.peers, timeoutMs: 30_000 });
  for (const size of config.sizes) {
    const data = new Float32Array(size / 4);
    for (let i = 0; i < data.length; i++) data[i] = Math.random();
    // Warm-up (connections, JIT, buffers), then as many iterations as fit the time budget —
    // decided by rank 0 and broadcast, since every rank must run the same number.
    let warm = 0;
    for (let i = 0; i < 2; i++) {
      await group.barrier();
      const started = performance.now();
      await group.allReduce(data);
      warm = (performance.now() - started) / 1000;
    }
    const count = new Float32Array([
      Math.min(config.maxIterations, Math.max(config.minIterations, Math.ceil(config.seconds / Math.max(warm, 1e-6)))),
    ]);
    await group.broadcast(count, 0);
    const times: number[] = [];
    for (let i = 0; i < count[0]!; i++) {
      await group.barrier();
      const started = performance.now();
      await group.allReduce(data);
      times.push((performance.now() - started) / 1000);
    }
    send({ kind: 'times', size, times });
  }
  await group.barrier();
  await group.close();
}

/**
 * The ceiling's reading side dials the writer and by default reads with Node's `onread` into one
 * reused 1 MiB buffer (counted, never copied): the cheapest way Node can take bytes off a socket,
 * so the ceiling is not handicapped relative to the collective layer, which reads the same way.
 * (`--ceiling-reader data` measures the ordinary 'data'-event reader instead: a fresh 64 KiB
 * buffer per read, typically 2–3× slower here.)
 */
async function sink(): Promise<void> {
  const message = await nextMessage();
  if (message.kind !== 'sink-address') throw new Error(`unexpected ${message.kind}`);
  const buffer = Buffer.alloc(1024 * 1024);
  let expected = 0;
  let received = 0;
  let header = Buffer.alloc(0);
  // Each round: an 8-byte length, then that many bytes, answered with one byte.
  const consume = (chunk: Buffer): void => {
    let pos = 0;
    while (pos < chunk.length) {
      if (expected === 0) {
        const take = Math.min(8 - header.length, chunk.length - pos);
        header = Buffer.concat([header, chunk.subarray(pos, pos + take)]);
        pos += take;
        if (header.length < 8) return;
        expected = Number(header.readBigUInt64BE(0));
        header = Buffer.alloc(0);
        received = 0;
      }
      const take = Math.min(expected - received, chunk.length - pos);
      received += take;
      pos += take;
      if (received === expected) {
        expected = 0;
        socket.write(Buffer.of(1));
      }
    }
  };
  const onread = {
    buffer,
    callback: (n: number) => {
      consume(buffer.subarray(0, n));
      return true;
    },
  };
  const socket = net.connect({
    host: message.host,
    port: message.port,
    noDelay: true,
    ...(config.ceilingReader === 'onread' ? { onread } : {}),
  } as net.NetConnectOpts);
  if (config.ceilingReader === 'data') socket.on('data', consume);
  await new Promise((resolve) => socket.once('close', resolve));
}

async function source(): Promise<void> {
  const server = net.createServer({ noDelay: true, highWaterMark: config.sendBufferBytes });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  send({ kind: 'address', host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  const [socket] = await accepted;
  server.close();
  let answered: (() => void) | undefined;
  socket.on('data', () => answered?.());
  const round = async (payload: Buffer): Promise<number> => {
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(payload.length));
    const started = performance.now();
    const done = new Promise<void>((resolve) => (answered = resolve));
    socket.cork();
    socket.write(length);
    socket.write(payload);
    socket.uncork();
    await done;
    return (performance.now() - started) / 1000;
  };
  for (const size of config.sizes) {
    const payload = Buffer.alloc(size, 7);
    const warm = Math.max(await round(payload), await round(payload));
    const count = Math.min(
      config.maxIterations,
      Math.max(config.minIterations, Math.ceil(config.seconds / Math.max(warm, 1e-6))),
    );
    const times: number[] = [];
    for (let i = 0; i < count; i++) times.push(await round(payload));
    send({ kind: 'times', size, times });
  }
  socket.end();
}

async function duplex(): Promise<void> {
  const server = net.createServer({ noDelay: true, highWaterMark: config.sendBufferBytes });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // Listen for the peer's connection before anyone can know our address: it may arrive before
  // the peer's address reaches us.
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  send({ kind: 'address', host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  const message = await nextMessage();
  if (message.kind !== 'duplex-peer') throw new Error(`unexpected ${message.kind}`);
  const buffer = Buffer.alloc(1024 * 1024);
  let received = 0;
  let wake: (() => void) | undefined;
  const incoming = net.connect({
    host: message.host,
    port: message.port,
    noDelay: true,
    onread: {
      buffer,
      callback: (n: number) => {
        received += n;
        wake?.();
        return true;
      },
    },
  } as net.NetConnectOpts);
  const [outgoing] = await accepted;
  server.close();
  let expected = 0;
  // One round: write S, and wait until S more bytes have arrived and ours have left.
  const round = async (payload: Buffer): Promise<number> => {
    const started = performance.now();
    expected += payload.length;
    const written = new Promise<void>((resolve) => outgoing.write(payload, () => resolve()));
    await new Promise<void>((resolve) => {
      wake = () => received >= expected && resolve();
      wake();
    });
    await written;
    return (performance.now() - started) / 1000;
  };
  for (const [index, size] of config.sizes.entries()) {
    const payload = Buffer.alloc(size, 5);
    await round(payload);
    await round(payload);
    const times: number[] = [];
    for (let i = 0; i < message.counts[index]!; i++) times.push(await round(payload));
    send({ kind: 'times', size, times });
  }
  outgoing.end();
  incoming.end();
}

const roles: Record<string, () => Promise<void>> = { ring, sink, source, duplex };
const run = roles[role ?? ''];
if (!run) throw new Error(`usage: allreduce-worker.ts ring|sink|source <config json>`);
run().then(
  () => send({ kind: 'done' }),
  (error: unknown) => {
    send({ kind: 'error', message: error instanceof Error ? error.message : String(error) });
    process.exitCode = 1;
  },
);
