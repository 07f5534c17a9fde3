import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { TENSORFLOW_PROTO_ROOT } from '../../engine/protos';
import { PROTO_ROOT } from '../../serving/grpc/protos';

/**
 * gRPC load from ghz (a Go client, built by bench/ghz/setup.sh into .tools/ghz), for bench/serving.ts:
 * closed loop, `concurrency` workers on one connection (as the Node client's one channel), the same
 * serialized PredictRequest in every call. Its per-request details are cut to the measured window
 * (calls started after `warmupMs` and ended within `durationMs` after that) as the Node client does;
 * its CPU (user + system, all of its threads) comes from the shell's `times` for its children, as a
 * share of one core (over 1 when its threads ran on more than one).
 */

const run = promisify(execFile);
const ROOT = path.join(import.meta.dirname, '..', '..');
export const GHZ = path.join(ROOT, '.tools', 'ghz', 'bin', 'ghz');

/** Builds ghz when it is not cached; false (and why, on stderr) when it cannot be (no Go). */
export async function ensureGhz(): Promise<boolean> {
  try {
    await run('bash', [path.join(import.meta.dirname, 'setup.sh')], { maxBuffer: 1 << 24 });
    return true;
  } catch (error) {
    console.error(`ghz unavailable, gRPC load from the Node client instead: ${(error as Error).message}`);
    return false;
  }
}

export interface GhzJob {
  port: number;
  /** A serialized tensorflow.serving.PredictRequest. */
  body: Buffer;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** A scratch directory for the request file. */
  dir: string;
}

interface Detail {
  timestamp: string;
  latency: number;
  error?: string;
  status: string;
}

export async function ghzLoad(job: GhzJob) {
  const bodyFile = path.join(job.dir, 'predict-request.bin');
  await writeFile(bodyFile, job.body);
  const total = job.warmupMs + job.durationMs;
  const args = [
    '--insecure',
    `--proto=${path.join(PROTO_ROOT, 'tensorflow_serving/apis/prediction_service.proto')}`,
    `--import-paths=${PROTO_ROOT},${TENSORFLOW_PROTO_ROOT}`,
    '--call=tensorflow.serving.PredictionService/Predict',
    `--binary-file=${bodyFile}`,
    `--concurrency=${job.concurrency}`,
    // 200 ms past the measured window, and the calls in flight when it stops left out of its report.
    `--duration=${total + 200}ms`,
    '--duration-stop=ignore',
    '--total=0',
    '--timeout=20s',
    '--format=json',
    `127.0.0.1:${job.port}`,
  ];
  const quoted = [GHZ, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  // `times` prints the shell's own CPU, then its children's (ghz's): "0m1.234s 0m0.056s".
  const { stdout } = await run('bash', ['-c', `${quoted}; echo; times`], { maxBuffer: 1 << 28 });
  const cut = stdout.indexOf('{');
  const timesAt = stdout.lastIndexOf('}');
  const report = JSON.parse(stdout.slice(cut, timesAt + 1)) as { details?: Detail[]; date: string; total: number };
  const timeLines = stdout
    .slice(timesAt + 1)
    .trim()
    .split('\n');
  const seconds = (s: string) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(s);
    return m ? Number(m[1]) * 60 + Number(m[2]) : 0;
  };
  const [user, system] = (timeLines[1] ?? '').trim().split(/\s+/);
  const cpuSeconds = seconds(user ?? '') + seconds(system ?? '');
  const details = report.details ?? [];
  // A detail's timestamp is when the call ended (ghz's stats handler: the RPC's EndTime).
  const calls = details.map((d) => {
    const ms = d.latency / 1e6;
    const t1 = Date.parse(d.timestamp);
    return { t0: t1 - ms, t1, ms, ok: !d.error && d.status === 'OK', why: `${d.status} ${d.error ?? ''}` };
  });
  const start = Math.min(...calls.map((c) => c.t0));
  const from = start + job.warmupMs;
  const end = from + job.durationMs;
  const latencies: number[] = [];
  let errors = 0;
  for (const call of calls) {
    if (call.t0 < from || call.t1 > end) continue;
    if (call.ok) latencies.push(call.ms);
    else {
      if (process.env.BENCH_DEBUG) console.error(`ghz: ${call.why}`);
      errors++;
    }
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return {
    rps: latencies.length / (job.durationMs / 1000),
    p50: pct(50),
    p99: pct(99),
    errors,
    clientCpu: cpuSeconds / (report.total / 1e9),
  };
}
