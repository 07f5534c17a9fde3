import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { readRegistry } from '../control/registry';
import { deploymentPrefix, taskQueueOf } from '../control/task-queues';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { ingestDataset, type DatasetRef } from '../data/ingest';
import { loadSplit } from '../data/shards';
import { selectBackend, tf } from '../engine/backend';
import { deserializeModel, type ModelFiles } from '../engine/model-files';
import { evaluateModel } from '../training/evaluate';
import { measurePublishedFolder } from '../activities/import-model';
import { importWorkflowId, rolloutStatusQuery, rolloutWorkflowId, type ImportResult } from '../workflows/api';
import { importModelWorkflow } from '../workflows/import-model';
import { rootCause } from '../cli/commands/run';
import { gantry } from './helpers/cli';
import { publishVersion, startDeployment, trainedModelFiles, type Deployment } from './helpers/deployment';
import { sliceSpec } from './helpers/specs';

/**
 * `gantry models import`: a Keras model exported by Python TensorFlow becomes the next version of a model that a
 * pipeline-registered version already holds, evaluated on that version's dataset with the numbers Python gets; a
 * SavedModel whose signature fits no such dataset is registered unevaluated, saying why; a bad folder is refused
 * before anything is registered (by the CLI, and by the workflow's own first step); a tfjs folder is imported,
 * served, promoted, rolled back from and targeted by a rollout like any version.
 */

/** The SavedModel is measured only where the worker has the native backend (not in CI's fallback pass). */
const native = (await selectBackend()).engineBackend === 'tensorflow';
const run = promisify(execFile);
const MODEL = 'imported-fmnist';
let deployment: Deployment;
let dataset: DatasetRef;
let pythonModels: string;
let python: { count: number; accuracy: number; loss: number };
let trainedFiles: ModelFiles;

async function registryOf() {
  const state = await readRegistry(deployment.workers.client, MODEL);
  if (!state) throw new Error('no registry');
  return state;
}

beforeAll(async () => {
  deployment = await startDeployment('models-import', ['control']);
  const { env } = deployment;
  const store = new FileArtifactStore(env.home.artifactsDir);
  dataset = await ingestDataset(
    {
      source: 'fashion-mnist',
      path: '/usr/share/datasets/fashion-mnist',
      seed: 3,
      validationFraction: 0.1,
      limits: { train: 1000, test: 2000 },
      statisticsKey: 'pipelines/import-test/last-statistics.json',
    },
    store,
  );
  // A version as a pipeline registers it: trained on this dataset, with the pipeline's spec (and so its gates).
  trainedFiles = await trainedModelFiles(1, 2000, 2);
  const spec = sliceSpec({ evaluation: { minAccuracy: 0.5, minAccuracyDelta: -0.5 } });
  await publishVersion(env, deployment.workers.client, MODEL, trainedFiles, {
    alias: 'champion',
    lineage: { datasetFingerprint: dataset.fingerprint, spec },
  });

  // Python TensorFlow writes the models and measures the Keras one on the same test shards.
  await run('bash', [path.join(PROJECT_ROOT, 'bench/keras/setup.sh')], { timeout: 600_000 });
  pythonModels = await mkdtemp(path.join(os.tmpdir(), 'gantry-import-models-'));
  const shards = dataset.splits.test.shards.flatMap((s) => [fileURLToPath(s.imagesUri), fileURLToPath(s.labelsUri)]);
  const { stdout } = await run(
    path.join(PROJECT_ROOT, '.tools/keras-venv/bin/python'),
    [path.join(PROJECT_ROOT, 'test/helpers/import-models.py'), pythonModels, ...shards],
    { timeout: 300_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } },
  );
  // Keras's export prints the signature first; the measurement is the last line.
  python = JSON.parse(stdout.trim().split('\n').at(-1)!);
}, 600_000);

afterAll(async () => {
  await deployment?.stop();
});

it('imports a Keras-exported SavedModel evaluated on the registry dataset as Python measures it', async () => {
  const { env } = deployment;
  const keras = path.join(pythonModels, 'keras');
  const cli = await gantry(['models', 'import', MODEL, keras, '--json'], env.env, 300_000);
  expect(cli.code, cli.stderr).toBe(0);
  const result = JSON.parse(cli.stdout) as ImportResult;
  if (!native) {
    // CI's fallback pass: a worker without the native backend registers it unevaluated, saying why.
    expect(result).toMatchObject({ version: 2, evaluated: false, metrics: null, blessed: true, published: true });
    expect(result.reason).toMatch(/this worker cannot evaluate it: a SavedModel runs on the native backend/);
    return;
  }
  expect(result).toMatchObject({
    model: MODEL,
    version: 2,
    format: 'saved_model',
    signature: 'serving_default',
    evaluated: true,
    reason: null,
    datasetFingerprint: dataset.fingerprint,
    blessed: true,
    published: true,
  });
  expect(python.count).toBe(dataset.counts.test);
  expect(Math.abs(result.metrics!.testAccuracy - python.accuracy)).toBeLessThan(1e-3);
  expect(Math.abs(result.metrics!.testLoss - python.loss)).toBeLessThan(1e-3);
  // The champion (v1) was measured on the same split and the pipeline's gates decided.
  expect(result.champion?.version).toBe(1);
  expect(result.reasons.some((r) => r.includes('accuracy change against champion v1'))).toBe(true);
  expect(result.reasons.some((r) => r.includes('gated by pipeline fashion-mnist'))).toBe(true);

  const state = await registryOf();
  const v2 = state.versions.find((v) => v.version === 2)!;
  expect(v2).toMatchObject({ status: 'published', blessed: true });
  expect(v2.lineage.source).toMatchObject({
    kind: 'import',
    path: keras,
    format: 'saved_model',
    signature: 'serving_default',
    evaluatedOn: dataset.fingerprint,
    unevaluatedReason: null,
  });
  expect(v2.lineage.runId).toBe(result.importId);
  expect(v2.metrics?.values?.accuracy).toBe(result.metrics!.testAccuracy);
  // An import moves no alias.
  expect(state.aliases.champion).toBe(1);
  // The version folder is the SavedModel, whole, beside gantry.json: a TF Serving base path.
  const folder = v2.publishedPath!;
  expect((await readdir(folder)).sort()).toEqual(
    expect.arrayContaining(['gantry.json', 'saved_model.pb', 'variables']),
  );
  expect(await readFile(path.join(folder, 'saved_model.pb'))).toEqual(
    await readFile(path.join(keras, 'saved_model.pb')),
  );
  expect(await readdir(path.join(folder, 'variables'))).toEqual(await readdir(path.join(keras, 'variables')));

  // As a pipeline's evaluation measures a champion that is an imported SavedModel: the same numbers.
  const test = await loadSplit(new FileArtifactStore(env.home.artifactsDir), dataset, 'test');
  const measured = await measurePublishedFolder(folder, 'serving_default', dataset, test);
  expect(measured.accuracy).toBe(result.metrics!.testAccuracy);

  const describe = await gantry(['models', 'describe', MODEL], env.env);
  expect(describe.code, describe.stderr).toBe(0);
  expect(describe.stdout).toMatch(
    new RegExp(`v2\\tpublished\\tblessed\\tacc [0-9.]+%\\timported saved_model from ${keras}`),
  );
});

it('registers a SavedModel whose signature does not fit the dataset unevaluated, saying why', async () => {
  const cli = await gantry(['models', 'import', MODEL, path.join(pythonModels, 'unfit'), '--json'], deployment.env.env);
  expect(cli.code, cli.stderr).toBe(0);
  const result = JSON.parse(cli.stdout) as ImportResult;
  expect(result).toMatchObject({ version: 3, evaluated: false, metrics: null, blessed: true, published: true });
  expect(result.reason).toBe('input "x" takes [?, 5]; the dataset\'s examples are [28, 28, 1] (784 values)');
  const v3 = (await registryOf()).versions.find((v) => v.version === 3)!;
  expect(v3.metrics).toBeNull();
  expect(v3.lineage.source?.unevaluatedReason).toBe(result.reason);
  expect(v3.reasons[0]).toBe(`pass: not evaluated: ${result.reason}`);
  const describe = await gantry(['models', 'describe', MODEL], deployment.env.env);
  expect(describe.stdout).toContain(`v3\tpublished\tblessed\tunevaluated\t`);
  expect(describe.stdout).toContain(`not evaluated: ${result.reason}`);
});

it('refuses a missing folder, a corrupt saved_model.pb and an unknown signature, registering nothing', async () => {
  const { env } = deployment;
  const corrupt = await mkdtemp(path.join(os.tmpdir(), 'gantry-corrupt-'));
  await mkdir(path.join(corrupt, 'variables'));
  // Bytes that read as a truncated protobuf group.
  await writeFile(path.join(corrupt, 'saved_model.pb'), Buffer.from([0x0a, 0x05, 0x1b, 0x02, 0x03, 0xff, 0xff]));
  const before = (await registryOf()).versions.length;

  const missing = await gantry(['models', 'import', MODEL, '/nonexistent/model'], env.env);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('/nonexistent/model does not exist');
  const bad = await gantry(['models', 'import', MODEL, corrupt], env.env);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain(`${corrupt}/saved_model.pb is not a SavedModel`);
  const signature = await gantry(
    ['models', 'import', MODEL, path.join(pythonModels, 'keras'), '--signature', 'nope'],
    env.env,
  );
  expect(signature.code).toBe(2);
  expect(signature.stderr).toMatch(/has no signature "nope" \(signatures: .*serving_default/);

  // A --dataset that names nothing is refused by the workflow before it registers.
  const noDataset = await gantry(
    ['models', 'import', MODEL, path.join(pythonModels, 'keras'), '--dataset', 'no-such-run'],
    env.env,
  );
  expect(noDataset.code).toBe(1);
  expect(noDataset.stderr).toContain('--dataset no-such-run: not a dataset fingerprint, a manifest or a run');

  // The workflow's own first step refuses it too (a client that skips the CLI's checks), without retrying.
  const direct = deployment.workers.client.workflow.execute(importModelWorkflow, {
    workflowId: importWorkflowId(deploymentPrefix(), MODEL, 'corrupt'),
    taskQueue: taskQueueOf('control'),
    args: [{ model: MODEL, path: corrupt, signature: 'serving_default' }],
  });
  const failure = await direct.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  expect(rootCause(failure)).toContain('is not a SavedModel');
  expect((await registryOf()).versions.length).toBe(before);
});

it('imports a tfjs folder that is served, promoted, rolled back from and rolled out like a trained one', async () => {
  const { env, serving } = deployment;
  const folder = await mkdtemp(path.join(os.tmpdir(), 'gantry-tfjs-'));
  const files = await trainedModelFiles(2, 2000, 2);
  // Saved in two weight shards, as tfjs's own save may write them.
  const modelJson = JSON.parse(files['model.json']);
  const shards = ['group1-shard1of2.bin', 'group1-shard2of2.bin'];
  modelJson.weightsManifest[0].paths = shards;
  const half = Math.floor(files['weights.bin'].length / 8) * 4;
  await writeFile(path.join(folder, 'model.json'), JSON.stringify(modelJson));
  await writeFile(path.join(folder, shards[0]!), files['weights.bin'].subarray(0, half));
  await writeFile(path.join(folder, shards[1]!), files['weights.bin'].subarray(half));
  const cli = await gantry(
    ['models', 'import', MODEL, folder, '--dataset', dataset.fingerprint, '--json'],
    env.env,
    300_000,
  );
  expect(cli.code, cli.stderr).toBe(0);
  const result = JSON.parse(cli.stdout) as ImportResult;
  expect(result).toMatchObject({ version: 4, format: 'tfjs', evaluated: true, published: true });
  // Published as Gantry publishes its own: model.json and one weights.bin.
  expect((await readdir(result.publishedPath!)).sort()).toEqual(['gantry.json', 'model.json', 'weights.bin']);

  // The same numbers as evaluating the model in process on the test split.
  const model = await deserializeModel(files['model.json'], files['weights.bin']);
  const test = await loadSplit(new FileArtifactStore(env.home.artifactsDir), dataset, 'test');
  const expected = await evaluateModel(model, test, dataset.featureShape, dataset.numClasses);
  expect(result.metrics!.testAccuracy).toBe(expected.accuracy);
  expect(result.metrics!.testLoss).toBeCloseTo(expected.loss, 6);

  // Promoted, the server answers with the imported version and the model's own predictions.
  const promote = await gantry(['promote', MODEL, '4'], env.env);
  expect(promote.code, promote.stderr).toBe(0);
  const pixels = Float32Array.from(test.images.subarray(0, 3 * 784));
  const answer = await serving.predict(MODEL, pixels);
  expect(answer.version).toBe(4);
  const local = tf.tidy(() =>
    (model.predict(tf.tensor(pixels, [3, 28, 28, 1])) as tf.Tensor).arraySync(),
  ) as number[][];
  answer.predictions.forEach((row, i) =>
    (row as number[]).forEach((p, j) => expect(Math.abs(p - local[i]![j]!)).toBeLessThan(1e-5)),
  );
  model.dispose();

  const rollback = await gantry(['rollback', MODEL, '--to', '1'], env.env);
  expect(rollback.code, rollback.stderr).toBe(0);
  expect((await registryOf()).aliases.champion).toBe(1);

  // A rollout takes the imported version as its candidate.
  const rollout = await gantry(['rollout', 'start', MODEL, '4', '--json'], env.env);
  expect(rollout.code, rollout.stderr).toBe(0);
  const handle = deployment.workers.client.workflow.getHandle(rolloutWorkflowId(deploymentPrefix(), MODEL));
  expect((await handle.query(rolloutStatusQuery)).candidate).toBe(4);
  await handle.terminate('test over');
});
