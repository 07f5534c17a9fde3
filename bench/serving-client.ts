import http from 'node:http';
import * as grpc from '@grpc/grpc-js';

/**
 * The load generator of bench/serving.ts, run as a child process so that it never shares the
 * server's event loop. Closed loop: `concurrency` workers each send one request and wait for
 * its answer, for `durationMs` after `warmupMs`. Bodies are encoded once up front (REST: the
 * bytes to POST; gRPC: a serialized PredictRequest sent with pass-through serializers), so the
 * client spends its time on the transport, not on encoding. Prints one JSON line.
 */

interface Job {
  protocol: 'rest' | 'grpc';
  port: number;
  path: string;
  contentType: string;
  accept?: string;
  /** base64 of the request bytes */
  body: string;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

const job = JSON.parse(process.argv[2]!) as Job;
const body = Buffer.from(job.body, 'base64');

function restSender(): () => Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency });
  const headers: Record<string, string> = {
    'content-type': job.contentType,
    'content-length': String(body.length),
    ...(job.accept ? { accept: job.accept } : {}),
  };
  return () =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: job.port, method: 'POST', path: job.path, agent, headers },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}

function grpcSender(): () => Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${job.port}`, grpc.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  return () =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(job.path, identity, identity, body, (error) => (error ? reject(error) : resolve()));
    });
}

const send = job.protocol === 'rest' ? restSender() : grpcSender();
const latencies: number[] = [];
let errors = 0;
const start = performance.now();
const measureFrom = start + job.warmupMs;
const end = measureFrom + job.durationMs;

async function worker(): Promise<void> {
  for (;;) {
    const t0 = performance.now();
    if (t0 >= end) return;
    try {
      await send();
    } catch {
      errors++;
    }
    const t1 = performance.now();
    if (t0 >= measureFrom && t1 <= end) latencies.push(t1 - t0);
  }
}

const cpuStart = process.cpuUsage();
await Promise.all(Array.from({ length: job.concurrency }, worker));
const cpuUsed = process.cpuUsage(cpuStart);
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
// The client's own CPU (share of one core over its run): tells a client-bound cell from a server-bound one.
const clientCpu = (cpuUsed.user + cpuUsed.system) / 1000 / (performance.now() - start);
console.log(
  JSON.stringify({
    count: latencies.length,
    rps: latencies.length / (job.durationMs / 1000),
    p50: pct(50),
    p99: pct(99),
    errors,
    clientCpu,
  }),
);
process.exit(0);
