import http from 'node:http';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';

/**
 * The load generator of bench/serving.ts, run as a child process so that it never shares the
 * server's event loop. Closed loop: `concurrency` workers each send one request and wait for
 * its answer, for `durationMs` after `warmupMs`. Bodies are encoded once up front (REST: the
 * bytes to POST; gRPC: a serialized PredictRequest sent with pass-through serializers), so the
 * client spends its time on the transport, not on encoding. One process serves every cell of a
 * run (a job per stdin line, one JSON line back per job; or the one job in argv): starting a
 * fresh Node with tsx per cell cost a second or more of the bench's five minutes each time.
 * Every job opens its own connections and closes them when done.
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

function restSender(job: Job, body: Buffer): { send: () => Promise<void>; close: () => void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency });
  const headers: Record<string, string> = {
    'content-type': job.contentType,
    'content-length': String(body.length),
    ...(job.accept ? { accept: job.accept } : {}),
  };
  const send = () =>
    new Promise<void>((resolve, reject) => {
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
  return { send, close: () => agent.destroy() };
}

function grpcSender(job: Job, body: Buffer): { send: () => Promise<void>; close: () => void } {
  const client = new grpc.Client(`127.0.0.1:${job.port}`, grpc.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const send = () =>
    new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(job.path, identity, identity, body, (error) => (error ? reject(error) : resolve()));
    });
  return { send, close: () => client.close() };
}

async function runJob(job: Job): Promise<string> {
  const body = Buffer.from(job.body, 'base64');
  const sender = job.protocol === 'rest' ? restSender(job, body) : grpcSender(job, body);
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
        await sender.send();
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
  sender.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  // The client's own CPU (share of one core over its run): tells a client-bound cell from a server-bound one.
  const clientCpu = (cpuUsed.user + cpuUsed.system) / 1000 / (performance.now() - start);
  return JSON.stringify({
    count: latencies.length,
    rps: latencies.length / (job.durationMs / 1000),
    p50: pct(50),
    p99: pct(99),
    errors,
    clientCpu,
  });
}

if (process.argv[2]) {
  console.log(await runJob(JSON.parse(process.argv[2]) as Job));
  process.exit(0);
}
// One job at a time, in the order sent; the bench waits for each answer before sending the next.
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim()) console.log(await runJob(JSON.parse(line) as Job));
}
process.exit(0);
