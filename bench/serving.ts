import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import Fastify from 'fastify';
import { ModelRepository } from '../artifacts/model-repository';
import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../data/sources';
import { loadServingProtos } from '../serving/grpc/protos';
import { startModelServer, type ModelServer } from '../serving/server';
import { buildModel } from '../training/architectures';
import { selectBackend, tf } from '../training/backend';
import { deserializeModel, serializeModel } from '../training/model-files';

/**
 * `npx tsx bench/serving.ts` — the model server's throughput and latency over REST (JSON, and
 * a binary PredictRequest body) and gRPC at concurrency 1, 16 and 64, batching on and off, for
 * the fashion-mnist MLP, beside two ceilings measured in the same run:
 *   - the in-process model.predict rate at batch sizes 1, 16 and 64;
 *   - the transport ceiling: the same fastify and grpc-js stacks answering a request and
 *     response of the same size (the same body parsing, the same decode/encode) with no model.
 * Each request carries one Fashion-MNIST test image. Clients run in a child process.
 * BENCH_SECONDS (default 3) sets the measured time per cell.
 */

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const WARMUP_MS = 500;
const CONCURRENCY = [1, 16, 64];
const run = promisify(execFile);
const CLIENT = path.join(import.meta.dirname, 'serving-client.ts');

interface Cell {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(protocol: 'rest' | 'grpc', port: number, route: string, contentType: string, body: Buffer, concurrency: number, accept?: string): Promise<Cell> {
  const job = { protocol, port, path: route, contentType, accept, body: body.toString('base64'), concurrency, durationMs: SECONDS * 1000, warmupMs: WARMUP_MS };
  const { stdout } = await run(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify(job)], { maxBuffer: 1 << 26 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Cell;
}

const backend = await selectBackend();
const protos = loadServingProtos();
const data = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
const pixels = Float32Array.from(data.test.images.subarray(0, 784));
const model = buildModel(tf, 'mlp', { featureShape: [28, 28, 1], numClasses: 10, seed: 1 }, {});
const files = await serializeModel(model);
model.dispose();

// ---- request bodies (one image each) ----
const nested = Array.from({ length: 28 }, (_, y) => Array.from({ length: 28 }, (_, x) => [pixels[y * 28 + x]!]));
const jsonBody = Buffer.from(JSON.stringify({ instances: [nested] }));
const predictRequest = {
  model_spec: { name: 'fashion-mnist' },
  inputs: { input: { dtype: 'DT_FLOAT', tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size: String(size) })) }, tensor_content: Buffer.from(pixels.buffer) } },
};
const protoBody = protos.encodePredictRequest(predictRequest);

// ---- ceiling 1: in-process model.predict ----
const inProcess = new Map<number, { rowsPerSecond: number; p50: number }>();
{
  const loaded = await deserializeModel(files['model.json'], files['weights.bin']);
  for (const batch of CONCURRENCY) {
    const input = new Float32Array(batch * 784);
    for (let b = 0; b < batch; b++) input.set(pixels, b * 784);
    const once = () => tf.tidy(() => (loaded.predict(tf.tensor(input, [batch, 28, 28, 1])) as tf.Tensor).dataSync());
    for (let i = 0; i < 100; i++) once();
    const times: number[] = [];
    const until = performance.now() + SECONDS * 1000;
    while (performance.now() < until) {
      const t0 = performance.now();
      once();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    inProcess.set(batch, { rowsPerSecond: (batch * 1000) / mean, p50: times[Math.floor(times.length / 2)]! });
  }
  loaded.dispose();
}

// ---- ceiling 2: the same transports with no model ----
const sample = { predictions: [Array.from({ length: 10 }, (_, i) => 0.1 + i / 1e7)], model_version: '1', request_id: '00000000-0000-4000-8000-000000000000' };
const echoRest = Fastify({ bodyLimit: 16 * 1024 * 1024 });
echoRest.addContentTypeParser('application/x-protobuf', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
const sampleTensor = { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '1' }, { size: '10' }] }, float_val: sample.predictions[0] };
const sampleResponse = { model_spec: { name: 'fashion-mnist', version: { value: '1' } }, outputs: { probabilities: sampleTensor } };
echoRest.post('/v1/models/echo:predict', async (request, reply) => {
  if (Buffer.isBuffer(request.body)) {
    protos.decodePredictRequest(request.body);
    return reply.type('application/x-protobuf').send(protos.encodePredictResponse(sampleResponse));
  }
  return sample;
});
await echoRest.listen({ host: '127.0.0.1', port: 0 });
const echoRestPort = (echoRest.server.address() as { port: number }).port;
const echoGrpc = new grpc.Server();
echoGrpc.addService(protos.predictionService, {
  Predict: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, sampleResponse),
  Classify: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED }),
  GetModelMetadata: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED }),
});
const echoGrpcPort = await new Promise<number>((resolve, reject) => echoGrpc.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));

// ---- the model server, batching on and off ----
const base = await mkdtemp(path.join(os.tmpdir(), 'gantry-bench-serving-'));
await new ModelRepository(base).publish('fashion-mnist', 1, { ...files, 'gantry.json': JSON.stringify({ signature: { inputs: { input: {} }, outputs: { probabilities: {} } } }) });
const servers: Record<'on' | 'off', ModelServer> = {
  on: await startModelServer({ modelBasePath: base, restPort: 0, grpcPort: 0 }),
  off: await startModelServer({ modelBasePath: base, restPort: 0, grpcPort: 0, batching: { enabled: false } }),
};

const PREDICT_PATH = '/tensorflow.serving.PredictionService/Predict';
type Kind = 'REST json' | 'REST binary' | 'gRPC';
function target(kind: Kind, port: number, model: string): [Parameters<typeof load>[0], number, string, string, Buffer, string | undefined] {
  switch (kind) {
    case 'REST json':
      return ['rest', port, `/v1/models/${model}:predict`, 'application/json', jsonBody, undefined];
    case 'REST binary':
      return ['rest', port, `/v1/models/${model}:predict`, 'application/x-protobuf', protoBody, 'application/x-protobuf'];
    case 'gRPC':
      return ['grpc', port, PREDICT_PATH, '', protoBody, undefined];
  }
}

const rows: string[] = [];
const ceilingOf = new Map<string, Cell>();
const results = new Map<string, Cell>();
const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
for (const kind of ['REST json', 'REST binary', 'gRPC'] as Kind[]) {
  for (const concurrency of CONCURRENCY) {
    const [protocol, , route, type, body, accept] = target(kind, kind === 'gRPC' ? echoGrpcPort : echoRestPort, 'echo');
    const echo = await load(protocol, kind === 'gRPC' ? echoGrpcPort : echoRestPort, route, type, body, concurrency, accept);
    ceilingOf.set(`${kind}/${concurrency}`, echo);
    rows.push(`| ${kind} | transport ceiling (no model) | ${concurrency} | ${fmt(echo.rps, 0)} | ${fmt(echo.p50)} | ${fmt(echo.p99)} | |`);
    for (const batching of ['on', 'off'] as const) {
      const server = servers[batching];
      const port = kind === 'gRPC' ? server.grpcPort! : server.restPort!;
      const [p, , r, t, b, a] = target(kind, port, 'fashion-mnist');
      const cell = await load(p, port, r, t, b, concurrency, a);
      results.set(`${kind}/${batching}/${concurrency}`, cell);
      const model = inProcess.get(concurrency)!.rowsPerSecond;
      const ceiling = Math.min(model, echo.rps);
      rows.push(`| ${kind} | server, batching ${batching} | ${concurrency} | ${fmt(cell.rps, 0)} | ${fmt(cell.p50)} | ${fmt(cell.p99)} | ${fmt(cell.rps / ceiling)}${cell.errors ? ` (${cell.errors} errors)` : ''} |`);
    }
  }
}

console.log(`\nbench/serving — fashion-mnist MLP (784→256→128→10), backend ${backend.name}, ${os.cpus().length} cores, ${SECONDS} s per cell, one image per request\n`);
console.log('in-process model.predict (ceiling 1):');
console.log('| batch | rows/s | p50 ms per call |\n|---|---|---|');
for (const [batch, v] of inProcess) console.log(`| ${batch} | ${fmt(v.rowsPerSecond, 0)} | ${fmt(v.p50, 3)} |`);
console.log('\n| path | what | concurrency | req/s | p50 ms | p99 ms | ÷ lower ceiling |\n|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);

console.log('\ntargets:');
for (const kind of ['REST json', 'REST binary', 'gRPC'] as Kind[]) {
  const at64 = results.get(`${kind}/on/64`)!;
  const ceiling64 = Math.min(inProcess.get(64)!.rowsPerSecond, ceilingOf.get(`${kind}/64`)!.rps);
  const at1 = results.get(`${kind}/on/1`)!;
  const bound1 = ceilingOf.get(`${kind}/1`)!.p50 + inProcess.get(1)!.p50 + 0.3;
  const never = CONCURRENCY.every((c) => results.get(`${kind}/on/${c}`)!.rps >= 0.95 * results.get(`${kind}/off/${c}`)!.rps);
  const gain64 = results.get(`${kind}/on/64`)!.rps / results.get(`${kind}/off/64`)!.rps;
  console.log(`- ${kind}: c=64 ${fmt(at64.rps, 0)} req/s = ${fmt(at64.rps / ceiling64)} × lower ceiling (target ≥ 0.70) ${at64.rps >= 0.7 * ceiling64 ? 'MET' : 'MISSED'}; ` +
    `c=1 p50 ${fmt(at1.p50)} ms vs bound ${fmt(bound1)} ms ${at1.p50 <= bound1 ? 'MET' : 'MISSED'}; ` +
    `batching on ≥ off at every concurrency (5% noise) ${never ? 'MET' : 'MISSED'}, gain at c=64 ×${fmt(gain64)}`);
}

await Promise.all([servers.on.close(), servers.off.close(), echoRest.close()]);
echoGrpc.forceShutdown();
await rm(base, { recursive: true, force: true });
process.exit(0);
