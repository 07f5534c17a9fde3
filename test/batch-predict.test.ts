import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPredictShardActivity, shardFiles } from '../activities/batch-predict';
import { parquetRange } from '../activities/predict-input';
import { readParquetRows } from '../data/tabular/parquet';
import { startRun } from '../cli/runs';
import { readRegistry } from '../control/registry';
import { taskQueueOf } from '../control/task-queues';
import { readIdxFile } from '../data/idx';
import { FASHION_MNIST_CLASS_NAMES as classes } from '../data/sources';
import { validatePipeline } from '../pipelines';
import { completedRun } from '../workflows/api';
import { batchPredictWorkflow } from '../workflows/batch-predict';
import type { BatchPredictInput, BatchPredictResult, ShardResult } from '../workflows/batch-predict-api';
import { csvText, PENGUINS_JSON, readJsonRows, VEGA_DATA } from './data/tabular-helpers';
import { gantry } from './helpers/cli';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { killProcess, spawnWorkerProcess, startInProcessWorkers, waitFor } from './helpers/workers';

/**
 * `gantry predict`: a Fashion-MNIST version (trained on a slice, evaluated on all of t10k) predicts the t10k IDX
 * file through the CLI, and its accuracy against the t10k labels is the version's evaluated accuracy; a penguins
 * version predicts a CSV with missing values and bad rows (skipped and listed, or failing the job); and a predict
 * worker killed mid-job is replaced without recomputing a finished shard, the output byte-identical to an
 * uninterrupted run's.
 */

const T10K = '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz';
const T10K_LABELS = '/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz';

let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;
let dir: string;
let fashion: { versionDir: string; version: number; accuracy: number };
const children: ReturnType<typeof spawnWorkerProcess>[] = [];

beforeAll(async () => {
  env = await createTestEnv('predict');
  dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-predict-'));
  workers = await startInProcessWorkers(env, ['control', 'train']);
  // One epoch on 2,000 images; evaluated on all 10,000 of t10k (no test limit).
  const spec = sliceSpec({ data: { limits: { train: 2000 } } });
  expect(completedRun(await (await startRun(workers.client, spec)).result())).toMatchObject({ published: true });
  const entry = (await readRegistry(workers.client, spec.model.name))!.versions[0]!;
  fashion = { versionDir: entry.publishedPath!, version: entry.version, accuracy: entry.metrics!.testAccuracy };
}, 240_000);

afterAll(async () => {
  for (const { child } of children) await killProcess(child);
  await workers?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('gantry predict fashion-mnist writes 10,000 predictions as accurate as the version was evaluated', async () => {
  const output = path.join(dir, 'preds.jsonl');
  // No worker polls the predict pool yet: refused up front rather than left waiting.
  const refused = await gantry(
    ['predict', 'fashion-mnist', '--input', T10K, '--output', output, '--pool', 'predict'],
    env.env,
  );
  expect(refused.code).toBe(2);
  expect(refused.stderr).toContain('no worker polls the predict pool');
  const cli = await gantry(
    ['predict', 'fashion-mnist', '--input', T10K, '--output', output, '--shard-rows', '2500', '--follow', '--json'],
    env.env,
  );
  expect(cli.code, cli.stderr).toBe(0);
  // --follow's progress on stderr; stdout holds the result alone.
  // Whatever it caught while the job ran (a fast machine may finish between two polls), it ends on the final count.
  expect(cli.stderr).toMatch(/done: 4\/4 shards, 10000\/10000 rows/);
  const result = JSON.parse(cli.stdout) as BatchPredictResult;
  expect(result).toMatchObject({ rows: 10_000, predicted: 10_000, bad: 0, version: fashion.version, kind: 'idx' });
  const lines = (await readFile(output, 'utf8')).trimEnd().split('\n');
  expect(lines).toHaveLength(10_000);
  const labels = (await readIdxFile(T10K_LABELS, 'labels')).data;
  let correct = 0;
  lines.forEach((line, i) => {
    const row = JSON.parse(line) as { row: number; predictions: number[]; class: string; version: number };
    expect(row.row).toBe(i);
    expect(row.predictions).toHaveLength(10);
    if (row.class === classes[labels[i]!]) correct += 1;
  });
  // The version's evaluation predicted the same 10,000 images (tfjs's predict there, the graph session here).
  expect(Math.abs(correct / 10_000 - fashion.accuracy)).toBeLessThanOrEqual(1 / 10_000);
  // No shard files are left beside the output.
  expect((await readdir(dir)).filter((name) => name.includes('.shards'))).toEqual([]);
}, 120_000);

it('penguins: a CSV with missing values predicted; bad rows skipped and listed, or failing the job', async () => {
  const spec = validatePipeline({
    name: 'penguins-predict',
    description: 'penguin species for the batch prediction test',
    data: { source: 'json', path: PENGUINS_JSON, label: 'Species', missing: 'impute', validationFraction: 0.15 },
    model: { name: 'penguins-predict', architecture: 'tabular', options: { hiddenUnits: [16] } },
    train: { epochs: 15, batchSize: 16, learningRate: 0.01 },
    evaluation: { minAccuracy: 0.5 },
  });
  expect(completedRun(await (await startRun(workers.client, spec)).result())).toMatchObject({ published: true });
  const birds = readJsonRows(PENGUINS_JSON);
  const columns = Object.keys(birds[0]!);
  // Line 2 is the first bird; birds with no measurements (impute) stay in. Two bad rows go in the middle.
  const rows = [...birds.slice(0, 100), { ...birds[100], 'Body Mass (g)': 'heavy' }, ...birds.slice(101)];
  const lines = csvText(rows, columns).split('\n');
  lines.splice(51, 0, 'Adelie,Torgersen'); // file line 52: a short row
  const input = path.join(dir, 'penguins.csv');
  await writeFile(input, `${lines.join('\n')}\n`);
  const output = path.join(dir, 'penguins-preds.csv');
  const args = ['predict', 'penguins-predict:1', '--input', input, '--output', output, '--shard-rows', '100'];
  const cli = await gantry([...args, '--json'], env.env);
  expect(cli.code, cli.stderr).toBe(0);
  const result = JSON.parse(cli.stdout) as BatchPredictResult;
  expect(result).toMatchObject({ rows: birds.length + 1, bad: 2, predicted: birds.length - 1, shards: 4 });
  expect(result.badRows).toEqual([
    { where: `${input}:52`, reason: 'has 2 fields, the header has 7' },
    { where: `${input}:103`, reason: 'column "Body Mass (g)" expected a number, got "heavy"' },
  ]);
  const csv = (await readFile(output, 'utf8')).trimEnd().split('\n');
  expect(csv[0]).toBe('row,predictions_0,predictions_1,predictions_2,class,version');
  expect(csv).toHaveLength(birds.length);
  const predicted = csv.slice(1).map((line) => line.split(','));
  // Input rows 50 and 101 (0-based, after the header) are the bad ones: absent, the others in order.
  expect(predicted.map((cells) => Number(cells[0]))).toEqual(
    Array.from({ length: birds.length + 1 }, (_, i) => i).filter((i) => i !== 50 && i !== 101),
  );
  const right = predicted.filter((cells, i) => cells[4] === birds[i < 50 ? i : i < 100 ? i - 1 : i]!.Species);
  expect(right.length / predicted.length).toBeGreaterThan(0.5);
  const rejects = (await readFile(`${output}.rejects.jsonl`, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(rejects.map((r) => r.row)).toEqual([50, 101]);

  const failed = await gantry([...args, '--on-bad-row', 'fail'], env.env);
  expect(failed.code).toBe(1);
  expect(failed.stderr).toContain(`bad row 50 at ${input}:52: has 2 fields, the header has 7`);

  // The same birds as JSON Lines (JSON numbers and nulls, not CSV text): the same classes.
  const jsonl = path.join(dir, 'penguins.jsonl');
  await writeFile(jsonl, birds.map((b) => `${JSON.stringify(b)}\n`).join(''));
  const versionDir = (await readRegistry(workers.client, spec.model.name))!.versions[0]!.publishedPath!;
  const fromJsonl = await predictOne(versionDir, 'jsonl', jsonl, { index: 0, start: 0, end: 50 });
  expect(fromJsonl.map((r) => r.class)).toEqual(predicted.slice(0, 50).map((cells) => cells[4]));

  // Parquet, chosen by the output's name: the rows of the same job as JSON Lines, a row group a shard, and a rerun
  // (its shards computed again) the same bytes.
  const parquet = path.join(dir, 'penguins-preds.parquet');
  const pq = await gantry([...args.slice(0, 4), '--output', parquet, '--shard-rows', '100', '--json'], env.env);
  expect(pq.code, pq.stderr).toBe(0);
  expect(JSON.parse(pq.stdout)).toMatchObject({ format: 'parquet', predicted: birds.length - 1, bad: 2 });
  const job = (output: string, format: BatchPredictInput['format']): BatchPredictInput => ({
    model: spec.model.name,
    version: 1,
    versionDir,
    input,
    output,
    format,
    onBadRow: 'skip',
    shardRows: 100,
    pool: 'train',
    shardTaskQueue: taskQueueOf('train'),
  });
  const predictJob = async (input: BatchPredictInput, id: string) =>
    (
      await workers.client.workflow.start(batchPredictWorkflow, {
        workflowId: id,
        taskQueue: taskQueueOf('control'),
        args: [input],
      })
    ).result();
  const again = path.join(dir, 'penguins-again.parquet');
  const asJsonl = path.join(dir, 'penguins-preds.jsonl');
  await predictJob(job(again, 'parquet'), 'penguins-parquet-again');
  await predictJob(job(asJsonl, 'jsonl'), 'penguins-jsonl');
  const file = await asyncBufferFromFile(again);
  expect((await parquetMetadataAsync(file)).row_groups.map((g) => Number(g.num_rows))).toEqual([
    99,
    99,
    100,
    birds.length + 1 - 300,
  ]);
  const fromParquet = await parquetReadObjects({ file });
  const expected = (await readFile(asJsonl, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { row: number; predictions: number[]; class: string; version: number })
    .map(({ row, predictions, ...rest }) => ({
      row: BigInt(row),
      ...Object.fromEntries(predictions.map((p, k) => [`predictions_${k}`, Math.fround(p)])),
      ...rest,
    }));
  expect(fromParquet).toEqual(expected);
  expect(await readFile(parquet)).toEqual(await readFile(again));
}, 180_000);

/** One shard run by the activity itself (no workflow): its output rows parsed. */
async function predictOne(
  versionDir: string,
  kind: 'idx' | 'images' | 'jsonl',
  input: string,
  shard: { index: number; start: number; end: number },
): Promise<{ row: number; predictions: number[]; class: string }[] & { result?: ShardResult }> {
  const workDir = await mkdtemp(path.join(dir, 'work-'));
  const job: BatchPredictInput = {
    model: 'm',
    version: 1,
    versionDir,
    input,
    output: path.join(dir, 'unused.jsonl'),
    format: 'jsonl',
    onBadRow: 'skip',
    shardRows: shard.end - shard.start,
    pool: 'train',
    shardTaskQueue: taskQueueOf('train'),
  };
  const input_ = { job, plan: { kind, workDir }, shard };
  const result = (await new MockActivityEnvironment().run(createPredictShardActivity(), input_)) as ShardResult;
  const text = await readFile(shardFiles(workDir, shard.index).part, 'utf8');
  const rows = text
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line));
  return Object.assign(rows, { result });
}

it("a folder of PNG images: decoded as the version's preprocessing says, an unreadable file a bad row", async () => {
  const images = path.join(dir, 'images');
  await mkdir(images);
  const pixels = (await readIdxFile(T10K, 'images')).data;
  for (let i = 0; i < 12; i++) {
    const raw = Buffer.from(pixels.subarray(i * 784, (i + 1) * 784));
    await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toFile(path.join(images, `${String(i).padStart(2, '0')}.png`));
  }
  await writeFile(path.join(images, '12-broken.png'), 'not a PNG');
  const fromPngs = await predictOne(fashion.versionDir, 'images', images, { index: 0, start: 0, end: 13 });
  const fromIdx = await predictOne(fashion.versionDir, 'idx', T10K, { index: 0, start: 0, end: 12 });
  expect(fromPngs.map((r) => r.row)).toEqual(fromIdx.map((r) => r.row));
  expect(fromPngs.map((r) => r.class)).toEqual(fromIdx.map((r) => r.class));
  fromPngs.forEach((r, i) =>
    r.predictions.forEach((p, k) => expect(Math.abs(p - fromIdx[i]!.predictions[k]!)).toBeLessThan(1e-5)),
  );
  expect(fromPngs.result).toMatchObject({ predicted: 12, bad: 1 });
  expect(fromPngs.result!.badRows[0]!.where).toBe(path.join(images, '12-broken.png'));
}, 60_000);

it('a predict worker killed mid-job: finished shards are not recomputed, the output is byte-identical', async () => {
  const traceFile = path.join(dir, 'trace.jsonl');
  const childEnv = { ...env, env: { ...env.env, GANTRY_PREDICT_TRACE: traceFile } };
  // Two predict workers, started together (each takes seconds to start): both take shards, one is killed.
  const first = spawnWorkerProcess(childEnv, 'predict');
  const second = spawnWorkerProcess(childEnv, 'predict');
  children.push(first, second);
  const job = (output: string, batchDelayMs: number, pool: 'train' | 'predict'): BatchPredictInput => ({
    model: 'fashion-mnist',
    version: fashion.version,
    versionDir: fashion.versionDir,
    input: T10K,
    output,
    format: 'jsonl',
    onBadRow: 'fail',
    shardRows: 1000,
    pool,
    shardTaskQueue: taskQueueOf(pool),
    heartbeatTimeout: '3s',
    batchDelayMs,
  });
  const run = async (input: BatchPredictInput, id: string) =>
    workers.client.workflow.start(batchPredictWorkflow, {
      workflowId: id,
      taskQueue: taskQueueOf('control'),
      args: [input],
    });
  // The uninterrupted run, on this process's train worker while the predict workers start.
  const whole = path.join(dir, 'whole.jsonl');
  await (await run(job(whole, 0, 'train'), 'predict-whole')).result();

  // Two batches a shard, each followed by a pause: ten shards take a few seconds.
  const interrupted = path.join(dir, 'interrupted.jsonl');
  const handle = await run(job(interrupted, 300, 'predict'), 'predict-interrupted');
  const events = async () =>
    (await readFile(traceFile, 'utf8').catch(() => ''))
      .trimEnd()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { job: string; shard: number; event: string; pid: number })
      .filter((e) => e.job === 'predict-interrupted');
  const byPid = async (pid: number | undefined) => (await events()).filter((e) => e.pid === pid).length;
  await waitFor(
    'two shards computed by the first worker',
    async () => ((await byPid(first.child.pid)) >= 2 ? true : undefined),
    120_000,
    50,
  );
  await killProcess(first.child, 'SIGKILL');
  const result = await handle.result();
  expect(result).toMatchObject({ rows: 10_000, predicted: 10_000, shards: 10 });
  expect(await readFile(interrupted)).toEqual(await readFile(whole));

  const computed = (await events()).filter((e) => e.event === 'computed');
  // Each shard computed exactly once: those the first worker finished before it was killed are not computed again.
  expect(computed.map((e) => e.shard).sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, i) => i));
  const byFirst = computed.filter((e) => e.pid === first.child.pid).length;
  expect(byFirst).toBeGreaterThanOrEqual(2);
  expect(computed.filter((e) => e.pid === second.child.pid).length).toBe(10 - byFirst);
}, 240_000);

it('a shard whose output is already complete is returned without computing it again', async () => {
  const workDir = await mkdtemp(path.join(dir, 'work-'));
  const input: Parameters<ReturnType<typeof createPredictShardActivity>>[0] = {
    job: {
      model: 'fashion-mnist',
      version: fashion.version,
      versionDir: fashion.versionDir,
      input: T10K,
      output: path.join(dir, 'unused.jsonl'),
      format: 'jsonl',
      onBadRow: 'fail',
      shardRows: 300,
      pool: 'train',
      shardTaskQueue: taskQueueOf('train'),
    },
    plan: { kind: 'idx', workDir },
    shard: { index: 2, start: 600, end: 900 },
  };
  const activity = createPredictShardActivity();
  const first = (await new MockActivityEnvironment().run(activity, input)) as ShardResult;
  expect(first).toMatchObject({ index: 2, predicted: 300, bad: 0, computed: true });
  const files = shardFiles(workDir, 2);
  const bytes = await readFile(files.part);
  expect(bytes.toString().split('\n')[0]).toMatch(/^\{"row":600,"predictions":\[/);
  const again = await new MockActivityEnvironment().run(activity, input);
  expect(again).toEqual({ ...first, computed: false });
  expect(await readFile(files.part)).toEqual(bytes);
}, 60_000);

it('a Parquet shard reads its own row range, the rows the Parquet source reads there', async () => {
  const file = path.join(VEGA_DATA, 'flights-3m.parquet');
  const range = { start: 16_380, end: 16_390 };
  const ranged = [];
  for await (const row of parquetRange(file, range)) ranged.push(row);
  const all = [];
  for await (const row of readParquetRows(file, { maxRows: range.end })) all.push(row);
  expect(ranged).toEqual(all.slice(range.start));
  expect(ranged[0]!.where).toBe(`${file}#16380`);
}, 60_000);
