/**
 * All-reduce (collectives/) between N trainer processes on one host, over each transport —
 * the TCP ring on loopback, and shared memory (what ranks on one host use by default) — against
 * the loopback TCP ceiling measured in the same run.
 *
 *   npx tsx bench/allreduce.ts [--ranks 2,3,4] [--sizes 64K,256K,1M,4M,16M,64M] [--transports tcp,shm]
 *                              [--chunk 1M] [--send-buffer 4M] [--seconds 0.6] [--ceiling-reader onread|data]
 *
 * time    median over iterations of the slowest rank's time for one allReduce (sum), each
 *         iteration started together after a barrier, after two warm-up iterations
 * algbw   S / time
 * busbw   algbw × 2(N−1)/N (the nccl-tests definition): the bytes each rank must send and receive
 *         per S, so that busbw is comparable across N and against a single link
 * ceiling S / time for a plain socket copy of S bytes between two processes (one writes, the other
 *         reads — into one reused buffer, no copy — and answers one byte): what one loopback link
 *         carries here, in one direction
 * duplex  per-direction rate of two processes each sending S and receiving S at once, over two
 *         connections: the traffic of a 2-rank ring with no collective logic, hence an upper bound
 *         for busbw at N=2 over TCP on this machine (shared memory copies no bytes through the
 *         kernel, so it is not bound by it)
 *
 * The target is busbw ≥ 0.6 × ceiling at sizes ≥ 4 MiB.
 */
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from 'simple-statistics';
import type { BenchConfig } from './allreduce-worker';

const { values } = parseArgs({
  options: {
    ranks: { type: 'string', default: '2,3,4' },
    transports: { type: 'string', default: 'tcp,shm' },
    sizes: { type: 'string', default: '64K,256K,1M,4M,16M,64M' },
    chunk: { type: 'string', default: '1M' },
    'send-buffer': { type: 'string', default: '4M' },
    seconds: { type: 'string', default: '0.6' },
    'ceiling-reader': { type: 'string', default: 'onread' },
  },
});

function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(text.trim());
  if (!match) throw new Error(`not a size: ${text}`);
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.round(Number(match[1]) * scale);
}

if (values['ceiling-reader'] !== 'onread' && values['ceiling-reader'] !== 'data')
  throw new Error('--ceiling-reader is onread or data');
const config: BenchConfig = {
  sizes: values.sizes.split(',').map(parseBytes),
  ceilingReader: values['ceiling-reader'],
  seconds: Number(values.seconds),
  chunkBytes: parseBytes(values.chunk),
  sendBufferBytes: parseBytes(values['send-buffer']),
  minIterations: 5,
  maxIterations: 200,
};
const rankCounts = values.ranks.split(',').map(Number);
const TRANSPORTS = { tcp: 'off', shm: 'require' } as const;
const transports = values.transports.split(',').map((name) => {
  if (!(name in TRANSPORTS)) throw new Error(`--transports: ${name} is not tcp or shm`);
  return name as keyof typeof TRANSPORTS;
});
const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'allreduce-worker.ts');

interface Worker {
  child: ChildProcess;
  messages: AsyncIterator<Record<string, unknown>>;
}

function spawnWorker(role: string, overrides: Partial<BenchConfig> = {}): Worker {
  const child = fork(WORKER, [role, JSON.stringify({ ...config, ...overrides })], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const queue: Array<Record<string, unknown>> = [];
  const waiting: Array<(message: Record<string, unknown>) => void> = [];
  const deliver = (message: Record<string, unknown>): void => {
    const resolve = waiting.shift();
    if (resolve) resolve(message);
    else queue.push(message);
  };
  child.on('message', (message) => deliver(message as Record<string, unknown>));
  child.on('exit', (code, signal) => deliver({ kind: 'error', message: `${role} worker exited (${signal ?? code})` }));
  const messages = {
    next: () =>
      new Promise<IteratorResult<Record<string, unknown>>>((resolve) => {
        const message = queue.shift();
        if (message) resolve({ value: message, done: false });
        else waiting.push((value) => resolve({ value, done: false }));
      }),
  };
  return { child, messages };
}

async function expectMessage(worker: Worker, kind: string): Promise<Record<string, unknown>> {
  const { value } = await worker.messages.next();
  if (value.kind === 'error') throw new Error(String(value.message));
  if (value.kind !== kind) throw new Error(`expected ${kind}, got ${String(value.kind)}`);
  return value;
}

function stop(workers: Worker[]): void {
  for (const { child } of workers) if (child.connected) child.disconnect();
}

/** Median seconds per size for the plain socket copy. */
async function measureCeiling(): Promise<Map<number, number>> {
  const sink = spawnWorker('sink');
  const source = spawnWorker('source');
  try {
    const address = await expectMessage(source, 'address');
    sink.child.send({ kind: 'sink-address', host: address.host, port: address.port });
    const result = new Map<number, number>();
    for (const size of config.sizes) {
      const message = await expectMessage(source, 'times');
      result.set(size, median(message.times as number[]));
    }
    await expectMessage(source, 'done');
    return result;
  } finally {
    stop([sink, source]);
  }
}

/**
 * Median seconds per size for two processes exchanging S bytes each way at once over two
 * connections (slowest side per round): an N=2 ring's traffic with no collective logic.
 */
async function measureDuplex(oneWay: Map<number, number>): Promise<Map<number, number>> {
  const workers = [spawnWorker('duplex'), spawnWorker('duplex')];
  try {
    const addresses = await Promise.all(workers.map((worker) => expectMessage(worker, 'address')));
    // Both sides must run the same number of rounds: sized from the one-way time.
    const counts = config.sizes.map((size) =>
      Math.min(
        config.maxIterations,
        Math.max(config.minIterations, Math.ceil(config.seconds / (2 * oneWay.get(size)!))),
      ),
    );
    workers.forEach((worker, i) =>
      worker.child.send({ kind: 'duplex-peer', host: addresses[1 - i]!.host, port: addresses[1 - i]!.port, counts }),
    );
    const result = new Map<number, number>();
    for (const size of config.sizes) {
      const [a, b] = await Promise.all(workers.map((worker) => expectMessage(worker, 'times')));
      const slowest = (a!.times as number[]).map((t, i) => Math.max(t, (b!.times as number[])[i]!));
      result.set(size, median(slowest));
    }
    await Promise.all(workers.map((worker) => expectMessage(worker, 'done')));
    return result;
  } finally {
    stop(workers);
  }
}

/** Median seconds per size for allReduce over N ranks (slowest rank per iteration). */
async function measureRing(n: number, transport: keyof typeof TRANSPORTS): Promise<Map<number, number>> {
  const workers = Array.from({ length: n }, () => spawnWorker('ring', { sharedMemory: TRANSPORTS[transport] }));
  try {
    const addresses = await Promise.all(workers.map((worker) => expectMessage(worker, 'address')));
    const peers = addresses.map((address, rank) => ({ rank, host: String(address.host), port: Number(address.port) }));
    workers.forEach((worker, rank) => worker.child.send({ kind: 'peers', rank, peers }));
    const result = new Map<number, number>();
    for (const size of config.sizes) {
      const perRank = await Promise.all(workers.map((worker) => expectMessage(worker, 'times')));
      const iterations = (perRank[0]!.times as number[]).length;
      const slowest = Array.from({ length: iterations }, (_, i) =>
        Math.max(...perRank.map((message) => (message.times as number[])[i]!)),
      );
      result.set(size, median(slowest));
    }
    await Promise.all(workers.map((worker) => expectMessage(worker, 'done')));
    return result;
  } finally {
    stop(workers);
  }
}

const formatSize = (bytes: number): string => (bytes >= 1024 ** 2 ? `${bytes / 1024 ** 2} MiB` : `${bytes / 1024} KiB`);
const formatTime = (seconds: number): string =>
  seconds >= 0.1
    ? `${(seconds * 1000).toFixed(0)} ms`
    : seconds >= 0.001
      ? `${(seconds * 1000).toFixed(2)} ms`
      : `${(seconds * 1e6).toFixed(0)} µs`;
const gbps = (bytesPerSecond: number): string => (bytesPerSecond / 1e9).toFixed(2);

const cores = os.availableParallelism?.() ?? os.cpus().length;
console.log(
  `# allReduce (sum, float32) between trainer processes on one host: the TCP ring on loopback, and shared memory`,
);
console.log('');
console.log(
  `node ${process.version}, ${cores} cores; chunk ${formatSize(config.chunkBytes)}, send buffer ` +
    `${formatSize(config.sendBufferBytes)}; ` +
    `ceiling reader: ${config.ceilingReader === 'onread' ? 'onread into a reused buffer' : "'data' events"}; ` +
    `GB/s = 10^9 bytes/s`,
);
const oversubscribed = rankCounts.filter((n) => n > cores);
if (oversubscribed.length > 0) {
  console.log(
    `NOTE: this machine has ${cores} cores, so N = ${oversubscribed.join(', ')} run more trainer processes than ` +
      `cores: ` +
      `those rows measure CPU time-sharing as much as the protocol (each rank also copies and sums every byte it ` +
      `receives).`,
  );
}
console.log('');

const progress = (what: string): boolean => process.stderr.write(`measuring ${what}…\n`);
progress('the one-way ceiling');
const ceiling = await measureCeiling();
progress('the duplex ceiling');
const duplex = await measureDuplex(ceiling);
const rows: string[] = [];
for (const n of rankCounts)
  for (const transport of transports) {
    progress(`allReduce over ${n} ranks, ${transport}`);
    const times = await measureRing(n, transport);
    for (const size of config.sizes) {
      const t = times.get(size)!;
      const algbw = size / t;
      const busbw = (algbw * 2 * (n - 1)) / n;
      const ceil = size / ceiling.get(size)!;
      const both = size / duplex.get(size)!;
      const ratio = busbw / ceil;
      const target = size >= 4 * 1024 ** 2 ? (ratio >= 0.6 ? ' ✓' : ' ✗') : '';
      rows.push(
        `| ${n}${n > cores ? '*' : ''} | ${transport} | ${formatSize(size)} | ${formatTime(t)} | ${gbps(algbw)} ` +
          `| ${gbps(busbw)} | ${gbps(ceil)} | ${ratio.toFixed(2)}${target} | ${gbps(both)} ` +
          `| ${(busbw / both).toFixed(2)} |`,
      );
    }
  }
console.log(
  '| N | transport | size | time | algbw GB/s | busbw GB/s | ceiling GB/s | busbw/ceiling | duplex GB/s | ' +
    'busbw/duplex |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
console.log('');
console.log('target: busbw ≥ 0.6 × ceiling for sizes ≥ 4 MiB (✓ met, ✗ not met).');
console.log(
  'duplex = per-direction rate when two processes each send S and receive S at once over two connections: the ' +
    'traffic of an N=2 ring ' +
    '(busbw at N=2 is exactly that rate), so it bounds what any N=2 all-reduce over TCP can reach here; the ' +
    'one-way ceiling moves S in one direction only. ' +
    'Shared memory moves no bytes through the kernel and is bound by neither.',
);
if (oversubscribed.length > 0) console.log(`* = more ranks than the ${cores} cores.`);
