import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { PREDICT_BATCH_ROWS } from '../activities/batch-predict';
import { startRun } from '../cli/runs';
import { startEmbeddedTemporal } from '../control/embedded-temporal';
import { gantryHome } from '../control/home';
import { readRegistry } from '../control/registry';
import { taskQueueOf } from '../control/task-queues';
import { readIdxFile } from '../data/idx';
import { RecordEncoder, TabularPreprocessingSchema } from '../data/preprocessing';
import { DEFAULT_FASHION_MNIST_DIR } from '../data/sources';
import { loadServable } from '../serving/loader';
import { selectBackend, tf } from '../engine/backend';
import { deserializeModel, WEIGHTS_FILE } from '../engine/model-files';
import { validatePipeline } from '../pipelines';
import fashionMnist from '../pipelines/fashion-mnist';
import { createPoolWorker } from '../workers/pool-worker';
import { completedRun } from '../workflows/api';
import { batchPredictWorkflow } from '../workflows/batch-predict';
import type { BatchPredictInput } from '../workflows/batch-predict-api';

/**
 * `npx tsx bench/batch-predict.ts` — rows/s of `gantry predict`'s workflow (plan, shards on one train worker,
 * assembly; reading, preprocessing, the model and writing JSON Lines all counted) beside the in-process ceiling: the
 * same version's tfjs `model.predict` at the same batch size (PREDICT_BATCH_ROWS) over the same rows, already in
 * memory and encoded, in the same run. Two inputs: all 70,000 Fashion-MNIST images (train and t10k in one IDX file)
 * and a CSV of BENCH_TABULAR_ROWS (default 1,000,000) penguins rows (vega-datasets' 344 birds repeated). A real
 * Temporal dev server, a control and a train worker in this process; about two minutes. Not in CI.
 */

const TABULAR_ROWS = Number(process.env.BENCH_TABULAR_ROWS ?? 1_000_000);
const PENGUINS_JSON = path.resolve(import.meta.dirname, '../node_modules/vega-datasets/data/penguins.json');

/** One uncompressed IDX image file of every Fashion-MNIST image (train, then t10k). */
async function writeAllImages(file: string): Promise<{ pixels: Uint8Array; rows: number }> {
  const train = await readIdxFile(path.join(DEFAULT_FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'), 'images');
  const test = await readIdxFile(path.join(DEFAULT_FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'), 'images');
  const rows = train.dims[0]! + test.dims[0]!;
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x803, 0);
  header.writeUInt32BE(rows, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  const pixels = Buffer.concat([train.data, test.data]);
  await writeFile(file, Buffer.concat([header, pixels]));
  return { pixels, rows };
}

type Row = Record<string, unknown>;

async function writePenguinsCsv(file: string, rows: number): Promise<Row[]> {
  const birds = JSON.parse(await readFile(PENGUINS_JSON, 'utf8')) as Row[];
  const columns = Object.keys(birds[0]!);
  const cell = (v: unknown) => (v === null || v === undefined ? '' : String(v));
  const lines = birds.map((b) => columns.map((c) => cell(b[c])).join(','));
  const all: Row[] = [];
  const chunks = [columns.join(',')];
  for (let i = 0; i < rows; i++) {
    chunks.push(lines[i % lines.length]!);
    all.push(birds[i % birds.length]!);
  }
  await writeFile(file, `${chunks.join('\n')}\n`);
  return all;
}

async function loadModel(dir: string) {
  return deserializeModel(
    await readFile(path.join(dir, 'model.json'), 'utf8'),
    await readFile(path.join(dir, WEIGHTS_FILE)),
  );
}

/** Seconds `model.predict` takes over `x` at PREDICT_BATCH_ROWS a call (data already in memory). */
async function ceiling(
  dir: string,
  x: Float32Array,
  rows: number,
  shape: number[],
): Promise<{ seconds: number; graphSeconds: number }> {
  const model = await loadModel(dir);
  const size = shape.reduce((a, b) => a * b, 1);
  const run = () => {
    for (let start = 0; start < rows; start += PREDICT_BATCH_ROWS) {
      const n = Math.min(PREDICT_BATCH_ROWS, rows - start);
      tf.tidy(() => {
        const y = model.predict(tf.tensor(x.subarray(start * size, (start + n) * size), [n, ...shape])) as tf.Tensor;
        y.dataSync();
      });
    }
  };
  run(); // warm-up
  const t0 = performance.now();
  run();
  const seconds = (performance.now() - t0) / 1000;
  model.dispose();
  // The stricter ceiling: the version's servable (a TensorFlow graph session where the model compiles to one),
  // which the shards call.
  const servable = await loadServable(dir, { warmup: false });
  const input = servable.signature.inputs[0]!;
  const runGraph = () => {
    for (let start = 0; start < rows; start += PREDICT_BATCH_ROWS) {
      const n = Math.min(PREDICT_BATCH_ROWS, rows - start);
      const data = x.subarray(start * size, (start + n) * size);
      servable.run([{ dtype: 'float32', shape: [n, ...input.shape.slice(1)], data }]);
    }
  };
  runGraph();
  const t1 = performance.now();
  runGraph();
  const graphSeconds = (performance.now() - t1) / 1000;
  servable.dispose();
  return { seconds, graphSeconds };
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const root = await mkdtemp(path.join(os.tmpdir(), 'gantry-bench-predict-'));
  const env = { GANTRY_HOME: root, GANTRY_TASK_QUEUE_PREFIX: 'bench' };
  Object.assign(process.env, env);
  const home = gantryHome(env);
  const server = await startEmbeddedTemporal(home, { port: 'free', headless: true });
  process.env.TEMPORAL_ADDRESS = server.address;
  const target = { address: server.address, namespace: 'default' };
  const workers = [await createPoolWorker('control', target, home), await createPoolWorker('train', target, home)];
  const running = workers.map((w) => w.worker.run());
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: 'default' });
  try {
    await selectBackend();
    console.error('training a fashion-mnist and a penguins version...');
    const fashionSpec = validatePipeline({
      ...fashionMnist,
      data: { ...fashionMnist.data, limits: { train: 5000, test: 1000 } },
      train: { ...fashionMnist.train, epochs: 1 },
      evaluation: { ...fashionMnist.evaluation, minAccuracy: 0.5 },
    } as never);
    const penguinsSpec = validatePipeline({
      name: 'penguins',
      description: 'penguin species',
      data: { source: 'json', path: PENGUINS_JSON, label: 'Species', missing: 'impute' },
      model: { name: 'penguins', architecture: 'tabular', options: { hiddenUnits: [32, 16] } },
      train: { epochs: 10, batchSize: 16, learningRate: 0.01 },
      evaluation: { minAccuracy: 0.5 },
    });
    for (const spec of [fashionSpec, penguinsSpec]) completedRun(await (await startRun(client, spec)).result());
    const dirOf = async (model: string) => (await readRegistry(client, model))!.versions[0]!.publishedPath!;
    const fashionDir = await dirOf(fashionSpec.model.name);
    const penguinsDir = await dirOf(penguinsSpec.model.name);

    const idx = path.join(root, 'fashion-70k-idx3-ubyte');
    const images = await writeAllImages(idx);
    const csv = path.join(root, 'penguins-1m.csv');
    const birds = await writePenguinsCsv(csv, TABULAR_ROWS);

    const job = async (model: string, versionDir: string, input: string, shardRows: number) => {
      const output = `${input}.preds.jsonl`;
      const request: BatchPredictInput = {
        model,
        version: 1,
        versionDir,
        input,
        output,
        format: 'jsonl',
        onBadRow: 'skip',
        shardRows,
        pool: 'train',
        shardTaskQueue: taskQueueOf('train'),
      };
      const t0 = performance.now();
      const result = await client.workflow.execute(batchPredictWorkflow, {
        workflowId: `bench-predict-${model}-${Date.now()}`,
        taskQueue: taskQueueOf('control'),
        args: [request],
      });
      const seconds = (performance.now() - t0) / 1000;
      const bytes = (await stat(output)).size;
      return { seconds, rows: result.predicted, shards: result.shards, bytes };
    };

    console.error('batch jobs...');
    const fashionJob = await job(fashionSpec.model.name, fashionDir, idx, 10_000);
    const tabularJob = await job(penguinsSpec.model.name, penguinsDir, csv, 100_000);

    console.error('model.predict ceilings...');
    const fashionCeiling = await ceiling(fashionDir, Float32Array.from(images.pixels), images.rows, [28, 28, 1]);
    const preprocessing = TabularPreprocessingSchema.parse(
      JSON.parse(await readFile(path.join(penguinsDir, 'preprocessing.json'), 'utf8')),
    );
    const encoder = new RecordEncoder(preprocessing);
    const encoded = new Float32Array(birds.length * encoder.featureSize);
    birds.forEach((b, i) => encoder.encode((c) => b[c], encoded, i * encoder.featureSize));
    const tabularCeiling = await ceiling(penguinsDir, encoded, birds.length, [encoder.featureSize]);

    const rows = [
      ['Fashion-MNIST IDX (70,000 images)', fashionJob, fashionCeiling],
      [`penguins CSV (${TABULAR_ROWS.toLocaleString('en')} rows)`, tabularJob, tabularCeiling],
    ] as const;
    console.log(`\nbatch size ${PREDICT_BATCH_ROWS}; one train worker (one slot); JSON Lines output\n`);
    console.log(
      '| input | shards | job s | job rows/s | model.predict rows/s | job / model.predict | graph session rows/s | ' +
        'job / graph |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    const rate = (n: number) => Math.round(n).toLocaleString('en');
    for (const [name, j, c] of rows) {
      const jobRate = j.rows / j.seconds;
      const predictRate = j.rows / c.seconds;
      const graphRate = j.rows / c.graphSeconds;
      console.log(
        `| ${name} | ${j.shards} | ${j.seconds.toFixed(2)} | ${rate(jobRate)} | ${rate(predictRate)} | ` +
          `${(jobRate / predictRate).toFixed(2)}× | ${rate(graphRate)} | ${(jobRate / graphRate).toFixed(2)}× |`,
      );
    }
  } finally {
    for (const w of workers) w.worker.shutdown();
    await Promise.allSettled(running);
    await Promise.all(workers.map((w) => w.close()));
    await connection.close();
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
