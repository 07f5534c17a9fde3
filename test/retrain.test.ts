import { copyFile, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readRegistry } from '../control/registry';
import { completedRun, progressQuery, type RunResult } from '../workflows/api';
import { ModelRepository } from '../artifacts/model-repository';
import { startRun, retrainInput } from '../cli/runs';
import { taskQueueOf } from '../control/task-queues';
import { DEFAULT_FASHION_MNIST_DIR } from '../data/sources';
import { selectBackend } from '../engine/backend';
import { retrainWorkflow } from '../workflows/retrain';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { startInProcessWorkers } from './helpers/workers';

let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;

beforeAll(async () => {
  env = await createTestEnv('retrain');
  workers = await startInProcessWorkers(env, ['control', 'train']);
});
afterAll(async () => {
  await workers?.stop();
});

async function failureOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  let message = '';
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e)
    message += ` ${e.message}`;
  return message;
}

describe('the retrain workflow on a slice of Fashion-MNIST', () => {
  // One test, not two: the worse candidate needs this champion, and no test may rely on another's leftovers.
  it('ingests, trains, evaluates, registers and publishes; a worse next candidate stays unblessed', async () => {
    const spec = sliceSpec();
    const handle = await startRun(workers.client, spec);
    const first: RunResult = completedRun(await handle.result());

    expect(first.version).toBe(1);
    expect(first.blessed).toBe(true);
    expect(first.published).toBe(true);
    expect(first.testAccuracy).toBeGreaterThan(0.6);
    expect(first.backend).toBe((await selectBackend()).name);
    expect(first.dataset.counts).toEqual({ train: 1800, validation: 200, test: 500 });
    expect(first.dataset.drift.drifted).toBe(false);
    expect(first.train.history).toHaveLength(1);

    const registry = await readRegistry(workers.client, spec.model.name);
    expect(registry?.aliases.champion).toBe(1);
    const entry = registry!.versions[0]!;
    expect(entry).toMatchObject({ version: 1, status: 'published', blessed: true });
    expect(entry.lineage).toMatchObject({
      runId: handle.workflowId,
      datasetFingerprint: first.dataset.fingerprint,
      parentVersion: null,
    });
    expect(entry.metrics?.testAccuracy).toBeCloseTo(first.testAccuracy, 10);

    const repository = new ModelRepository(env.home.modelRepositoryDir);
    expect(await repository.versions(spec.model.name)).toEqual([1]);
    expect(entry.publishedPath).toBe(repository.versionPath(spec.model.name, 1));
    const modelJson = JSON.parse(await readFile(path.join(entry.publishedPath!, 'model.json'), 'utf8'));
    expect(modelJson.format).toBe('layers-model');
    const metadata = JSON.parse(await readFile(path.join(entry.publishedPath!, 'gantry.json'), 'utf8'));
    expect(metadata).toMatchObject({ model: spec.model.name, version: 1, runId: handle.workflowId });
    // An image dataset: the version says what the server checks and which classes it names.
    const preprocessing = JSON.parse(await readFile(path.join(entry.publishedPath!, 'preprocessing.json'), 'utf8'));
    expect(preprocessing).toMatchObject({ kind: 'image', height: 28, width: 28, channels: 1 });
    expect(preprocessing.label.classes).toHaveLength(10);

    const progress = await handle.query(progressQuery);
    expect(progress.status).toBe('completed');

    // The recorded history replays against the current workflow code without non-determinism.
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: inject('workflowBundlePath') } },
      await handle.fetchHistory(),
      handle.workflowId,
    );
    // The pipeline's rollout stage runs, and the first version, with nothing to compare against, is promoted at once.
    expect(progress.stages).toEqual({
      ingest: 'done',
      train: 'done',
      evaluate: 'done',
      register: 'done',
      publish: 'done',
      rollout: 'done',
    });
    expect(first.rollout).toMatchObject({
      result: 'promoted',
      reasons: [expect.stringMatching(/no champion to compare against/)],
    });
    expect(first.promoted).toBe(true);

    // A learning rate this small leaves the model near chance after one epoch: registered, not
    // blessed, not published, and the reasons say why.
    const worse = sliceSpec({ train: { learningRate: 1e-7 } });
    const result = completedRun(await (await startRun(workers.client, worse)).result());

    expect(result.version).toBe(2);
    expect(result.blessed).toBe(false);
    expect(result.published).toBe(false);
    expect(result.champion).toEqual({
      version: 1,
      testAccuracy: expect.closeTo(first.testAccuracy, 10),
      metrics: {
        accuracy: expect.closeTo(first.testAccuracy, 10),
        auc: expect.any(Number),
        logLoss: expect.any(Number),
      },
    });
    expect(result.task).toBe('classification');
    expect(result.metrics).toMatchObject({ accuracy: result.testAccuracy, logLoss: result.testLoss });
    expect(result.metrics.auc).toBeGreaterThan(0.5);
    expect(result.reasons.join('\n')).toMatch(/FAIL: accuracy change against champion v1/);

    const after = await readRegistry(workers.client, worse.model.name);
    expect(after?.aliases.champion).toBe(1);
    expect(after?.versions[1]).toMatchObject({
      version: 2,
      status: 'registered',
      blessed: false,
      publishedPath: null,
    });
    expect(after?.versions[1]?.lineage.parentVersion).toBe(1);
    expect(await new ModelRepository(env.home.modelRepositoryDir).versions(worse.model.name)).toEqual([1]);
  });

  it('fails with the file and the reason when a dataset file is corrupt, registering nothing', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-corrupt-'));
    for (const file of ['train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']) {
      await copyFile(path.join(DEFAULT_FASHION_MNIST_DIR, file), path.join(dir, file));
    }
    await writeFile(path.join(dir, 'train-images-idx3-ubyte'), Buffer.from([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28]));
    const spec = sliceSpec({ model: { name: 'corrupt-data' }, data: { path: dir } });
    const message = await failureOf((await startRun(workers.client, spec)).result());
    expect(message).toMatch(/ingest: .*train-images-idx3-ubyte: .*(truncated|header)/);
    expect(await readRegistry(workers.client, 'corrupt-data')).toBeUndefined();
  });

  it('fails clearly when the dataset folder is missing', async () => {
    const spec = sliceSpec({ model: { name: 'missing-data' }, data: { path: '/nonexistent/fashion' } });
    const message = await failureOf((await startRun(workers.client, spec)).result());
    expect(message).toMatch(/\/nonexistent\/fashion/);
    expect(await readRegistry(workers.client, 'missing-data')).toBeUndefined();
  });

  it('refuses in the worker too a spec naming an unknown architecture (a client skipped validation)', async () => {
    const spec = { ...sliceSpec(), model: { name: 'unknown-arch', architecture: 'resnet9000', options: {} } };
    const handle = await workers.client.workflow.start(retrainWorkflow, {
      workflowId: `unknown-arch-${Date.now()}`,
      taskQueue: taskQueueOf('control'),
      args: [retrainInput(spec)],
    });
    const message = await failureOf(handle.result());
    expect(message).toMatch(/model\.architecture: unknown model architecture "resnet9000"; known: mlp, cnn/);
    expect(await readRegistry(workers.client, 'unknown-arch')).toBeUndefined();
  });

  it('trains the CNN too, on cpu where the selected backend lacks a gradient kernel, and says so', async () => {
    const spec = sliceSpec({
      model: { name: 'small-cnn', architecture: 'cnn', options: { filters: [4], denseUnits: 16 } },
      data: { limits: { train: 400, test: 200 } },
      train: { batchSize: 16, epochs: 2, learningRate: 0.003 },
      evaluation: { minAccuracy: 0.2 },
    });
    const result = completedRun(await (await startRun(workers.client, spec)).result());
    const selected = await selectBackend();
    if (selected.name === 'wasm') {
      // tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter: training moves to cpu and reports why.
      expect(result.backends.train).toMatchObject({
        name: 'cpu',
        fallbackReason: expect.stringMatching(/wasm: Kernel 'Conv2DBackpropFilter' not registered/),
      });
    } else {
      expect(result.backends.train.name).toBe(selected.name);
    }
    expect(result.backend).toBe(result.backends.train.name);
    expect(result.train.history[0]!.loss).toBeGreaterThan(0);
    expect(result.testAccuracy).toBeGreaterThan(0.2);
  });

  it('can be cancelled while training', async () => {
    const spec = sliceSpec({ model: { name: 'cancelled' }, train: { epochs: 50, stepDelayMs: 50 } });
    const handle = await startRun(workers.client, spec);
    await expect
      .poll(async () => (await handle.query(progressQuery)).train?.step ?? 0, { timeout: 60_000, interval: 200 })
      .toBeGreaterThan(2);
    await handle.cancel();
    const error = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    expect(await readRegistry(workers.client, 'cancelled')).toBeUndefined();
  });
});
