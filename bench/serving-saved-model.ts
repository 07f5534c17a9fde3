import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { ModelRepository } from '../artifacts/model-repository';
import { DEFAULT_FASHION_MNIST_DIR, getDataSource } from '../data/sources';
import { selectBackend, tf } from '../engine/backend';
import { serializeModel } from '../engine/model-files';
import { loadServingProtos } from '../serving/grpc/protos';

/**
 * `npx tsx bench/serving-saved-model.ts` — serving a Keras-exported SavedModel of the Fashion-MNIST MLP
 * against the same model (the same weights) as a tfjs layers model, both in one `gantry serve` process
 * (bench/serving-server.ts, batching on), over REST JSON and gRPC at concurrency 1, 16 and 64; and the
 * ceiling: Python TensorFlow calling the SavedModel's signature in process (bench/keras/saved_model_mlp.py)
 * at batch 1, 16 and 64. One Fashion-MNIST test image per request; the answers of both versions are
 * checked equal (≤ 1e-5) first. Cells rotate over BENCH_ROUNDS rounds (default 2, medians), BENCH_SECONDS
 * (default 3) each. TensorFlow's intra-op threads in the server and in Python: BENCH_SERVER_TF_THREADS
 * (default 1, as bench/serving.ts). Needs the native backend and .tools/keras-venv (bench/keras/setup.sh).
 */

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));
const CONCURRENCY = [1, 16, 64];
const ROOT = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);

interface Cell {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  clientCpu: number;
}

async function load(protocol: 'rest' | 'grpc', port: number, route: string, body: Buffer, concurrency: number) {
  const job = {
    protocol,
    port,
    path: route,
    contentType: 'application/json',
    body: body.toString('base64'),
    concurrency,
    durationMs: SECONDS * 1000,
    warmupMs: 500,
  };
  const client = path.join(import.meta.dirname, 'serving-client.ts');
  const { stdout } = await run(process.execPath, ['--import', 'tsx', client, JSON.stringify(job)], {
    maxBuffer: 1 << 26,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Cell;
}

const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)]!;

const backend = await selectBackend();
if (backend.engineBackend !== 'tensorflow') throw new Error('this bench needs the native backend (tfjs-node)');
const work = await mkdtemp(path.join(os.tmpdir(), 'gantry-bench-saved-model-'));
const tfThreads = process.env.BENCH_SERVER_TF_THREADS ?? '1';
const threadEnv: NodeJS.ProcessEnv = { ...process.env };
if (tfThreads === 'default') delete threadEnv.TF_NUM_INTRAOP_THREADS;
else threadEnv.TF_NUM_INTRAOP_THREADS = tfThreads;

// ---- the Keras model, its SavedModel and the Python ceiling ----
await run('bash', [path.join(ROOT, 'bench/keras/setup.sh')]);
const python = await run(
  path.join(ROOT, '.tools/keras-venv/bin/python'),
  [path.join(ROOT, 'bench/keras/saved_model_mlp.py'), work, String(SECONDS)],
  { env: threadEnv, maxBuffer: 1 << 24 },
);
const ceiling = JSON.parse(python.stdout.trim().split('\n').pop()!) as {
  ceiling: Record<string, { rowsPerSecond: number; p50: number }>;
};

// ---- the same weights as a tfjs layers model ----
const weights = JSON.parse(await readFile(path.join(work, 'weights.json'), 'utf8')) as number[][] | number[][][];
const model = tf.sequential({
  layers: [
    tf.layers.flatten({ inputShape: [28, 28, 1] }),
    tf.layers.dense({ units: 128, activation: 'relu' }),
    tf.layers.dense({ units: 10, activation: 'softmax' }),
  ],
});
model.setWeights(weights.map((w) => tf.tensor(w as number[][])));
const base = path.join(work, 'models');
await new ModelRepository(base).publish('tfjs', 1, {
  ...(await serializeModel(model)),
  'gantry.json': JSON.stringify({ signature: { inputs: { input: {} }, outputs: { output_0: {} } } }),
});
model.dispose();
await cp(path.join(work, 'saved/1'), path.join(base, 'saved/1'), { recursive: true });

// ---- one request body per protocol (one test image; both models call their input "input") ----
const data = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
const pixels = Float32Array.from(data.test.images.subarray(0, 784));
const nested = Array.from({ length: 28 }, (_, y) => Array.from({ length: 28 }, (_, x) => [pixels[y * 28 + x]!]));
const jsonBody = Buffer.from(JSON.stringify({ instances: [nested] }));
const grpcBody = (name: string) =>
  loadServingProtos().encodePredictRequest({
    model_spec: { name },
    inputs: {
      input: {
        dtype: 'DT_FLOAT',
        tensor_shape: { dim: [1, 28, 28, 1].map((size) => ({ size: String(size) })) },
        tensor_content: Buffer.from(pixels.buffer),
      },
    },
  });

const serverProcess = spawn(
  process.execPath,
  ['--import', 'tsx', path.join(import.meta.dirname, 'serving-server.ts'), base],
  {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: threadEnv,
  },
);
const serverExit = once(serverProcess, 'exit');
const [line] = (await once(createInterface({ input: serverProcess.stdout! }), 'line')) as [string];
const ports = (JSON.parse(line) as { on: { rest: number; grpc: number } }).on;

// Both versions answer the image alike (the same weights; float32 kernels of one library).
const answer = async (name: string) => {
  const response = await fetch(`http://127.0.0.1:${ports.rest}/v1/models/${name}:predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: jsonBody,
  });
  return ((await response.json()) as { predictions: number[][] }).predictions[0]!;
};
const [fromTfjs, fromSaved] = [await answer('tfjs'), await answer('saved')];
const difference = Math.max(...fromTfjs.map((v, i) => Math.abs(v - fromSaved[i]!)));
if (!(difference <= 1e-5)) throw new Error(`the two versions disagree by ${difference}`);

const MODELS = ['tfjs', 'saved'] as const;
const results = new Map<string, Cell>();
const started = performance.now();
for (const protocol of ['rest', 'grpc'] as const) {
  for (const concurrency of CONCURRENCY) {
    const cells = new Map<string, Cell[]>(MODELS.map((m) => [m, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate which model goes first, so neither always meets the machine's drift first.
      const order = round % 2 === 0 ? MODELS : [...MODELS].reverse();
      for (const name of order) {
        const cell =
          protocol === 'rest'
            ? await load('rest', ports.rest, `/v1/models/${name}:predict`, jsonBody, concurrency)
            : await load(
                'grpc',
                ports.grpc,
                '/tensorflow.serving.PredictionService/Predict',
                grpcBody(name),
                concurrency,
              );
        cells.get(name)!.push(cell);
      }
    }
    for (const name of MODELS) {
      const all = cells.get(name)!;
      results.set(`${protocol}/${name}/${concurrency}`, {
        rps: median(all.map((c) => c.rps)),
        p50: median(all.map((c) => c.p50)),
        p99: median(all.map((c) => c.p99)),
        errors: all.reduce((a, c) => a + c.errors, 0),
        clientCpu: median(all.map((c) => c.clientCpu)),
      });
    }
  }
}
serverProcess.stdin!.end();
await serverExit;
await rm(work, { recursive: true, force: true });

const fmt = (v: number, digits = 1) => v.toFixed(digits);
console.log(
  `\nSavedModel vs tfjs serving, Fashion-MNIST MLP (784-128-10), ${os.cpus().length} cores, TF intra-op threads ` +
    `${tfThreads}; ${SECONDS} s per cell × ${ROUNDS} rounds ` +
    `(medians; ${fmt((performance.now() - started) / 1000, 0)} s); ` +
    `answers agree within ${difference.toExponential(1)}\n`,
);
console.log('| protocol | c | tfjs req/s | p50 ms | SavedModel req/s | p50 ms | SavedModel / tfjs | errors |');
console.log('|---|---|---|---|---|---|---|---|');
for (const protocol of ['rest', 'grpc'] as const) {
  for (const c of CONCURRENCY) {
    const t = results.get(`${protocol}/tfjs/${c}`)!;
    const s = results.get(`${protocol}/saved/${c}`)!;
    console.log(
      `| ${protocol === 'rest' ? 'REST JSON' : 'gRPC'} | ${c} | ${fmt(t.rps, 0)} | ${fmt(t.p50, 2)} | ` +
        `${fmt(s.rps, 0)} | ${fmt(s.p50, 2)} | ${fmt(s.rps / t.rps, 2)}× | ${t.errors + s.errors} |`,
    );
  }
}
console.log('\nceiling: Python TensorFlow calling serving_default in process\n');
console.log('| batch | rows/s | p50 ms |\n|---|---|---|');
for (const [batch, cell] of Object.entries(ceiling.ceiling))
  console.log(`| ${batch} | ${fmt(cell.rowsPerSecond, 0)} | ${fmt(cell.p50, 3)} |`);
