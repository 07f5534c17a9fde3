/**
 * Data-parallel scaling of the fashion-mnist MLP: samples/s with 1 and with 2 replicas (separate
 * processes, ring all-reduce over loopback TCP), each replica limited to one TensorFlow thread so
 * the two cores of this machine are two devices. Scaling efficiency = samples/s(2) / (2 ×
 * samples/s(1)); target ≥ 0.85. Per-replica batch 128 (the pipeline's), global batch 128 × N.
 *
 *   npx tsx bench/scaling.ts [--steps 150] [--warmup 10]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '150' }, warmup: { type: 'string', default: '10' }, batch: { type: 'string', default: '128' } } });
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ONE_THREAD = { TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1', OMP_NUM_THREADS: '1', TF_CPP_MIN_LOG_LEVEL: '3' };

interface ReplicaReport { samplesPerSecond: number; backend: string; execution: string; msPerStep: { total: number; compute: number; allReduce: number; apply: number } }

async function run(worldSize: number): Promise<ReplicaReport> {
  const children = Array.from({ length: worldSize }, () =>
    spawn(process.execPath, ['--import', 'tsx', path.join(HERE, 'scaling-replica.ts'), String(worldSize), values.batch!, values.steps!, values.warmup!], {
      env: { ...process.env, ...ONE_THREAD },
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  const lines = children.map((child) => {
    const queue: string[] = [];
    const waiters: ((line: string) => void)[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const waiter = waiters.shift();
      if (waiter) waiter(line);
      else queue.push(line);
    });
    return () => new Promise<string>((resolve) => { const next = queue.shift(); if (next) resolve(next); else waiters.push(resolve); });
  });
  const ports = await Promise.all(lines.map(async (next) => (JSON.parse(await next()) as { port: number }).port));
  const peers = ports.map((port, rank) => ({ rank, host: '127.0.0.1', port }));
  children.forEach((child, rank) => child.stdin!.write(`${JSON.stringify({ rank, peers })}\n`));
  const results = await Promise.all(lines.map(async (next) => JSON.parse(await next()) as ReplicaReport));
  await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))));
  // Every replica times the same steps; the job's rate is the slowest replica's.
  return results.reduce((a, b) => (a.samplesPerSecond < b.samplesPerSecond ? a : b));
}

const one = await run(1);
const two = await run(2);
console.log(`data-parallel scaling, fashion-mnist MLP, per-replica batch ${values.batch}, ${values.steps} timed steps after ${values.warmup} warm-up, one TensorFlow thread per replica, ${one.backend} (${one.execution})\n`);
console.log('| replicas | global batch | samples/s | speed-up | scaling efficiency (target ≥ 0.85) |');
console.log('|---:|---:|---:|---:|---:|');
console.log(`| 1 | ${values.batch} | ${one.samplesPerSecond.toFixed(0)} | 1.00 | 1.00 |`);
console.log(`| 2 | ${Number(values.batch) * 2} | ${two.samplesPerSecond.toFixed(0)} | ${(two.samplesPerSecond / one.samplesPerSecond).toFixed(2)} | ${(two.samplesPerSecond / (2 * one.samplesPerSecond)).toFixed(2)} |`);
console.log('\nper step, slowest replica (ms): | replicas | total | gradient session run | all-reduce (incl. waiting for the peer) | update session run | other |');
for (const [n, r] of [[1, one], [2, two]] as const) {
  const m = r.msPerStep;
  console.log(`| ${n} | ${m.total} | ${m.compute} | ${m.allReduce} | ${m.apply} | ${(m.total - m.compute - m.allReduce - m.apply).toFixed(3)} |`);
}
