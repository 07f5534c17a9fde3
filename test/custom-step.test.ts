import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createControlActivities } from '../activities';
import { createStepActivities } from '../activities/steps';
import { FileArtifactStore } from '../artifacts/store';
import { approveCommand } from '../cli/commands/rollout';
import { runNamedCommand } from '../cli/commands/run';
import { retrainInput, startRun } from '../cli/runs';
import { connectClient, connectWorker } from '../control/connect';
import { readRegistry } from '../control/registry';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { taskQueueOf } from '../control/task-queues';
import { deferringRegistryNames } from '../pipelines/define';
import type { ProjectDefinition } from '../pipelines/project';
import type { PipelineSpec } from '../pipelines/spec';
import { approvalQuery, isStoppedRun, type RunResult, type StoppedRunResult } from '../workflows/api';
import { createTestEnv, type TestEnv } from './helpers/env';
import { startInProcessWorkers, waitFor } from './helpers/workers';

/**
 * examples/custom-step end to end on the real Temporal server with real workers and a real (small) Fashion-MNIST
 * run: its data-quality step on the control pool records its data in the result and the version's lineage, stops a
 * run whose data fails the gate, and its own workflow (`reviewed`) waits for `gantry approve` before publishing.
 *
 * The example imports Gantry as a user's project does (`gantry`, `gantry/workflows`); here those names point at
 * this repository's modules (a `file:../..` install would link them the same way).
 */
vi.mock('gantry', async () => ({
  ...(await import('../pipelines/project')),
  ...(await import('../pipelines/define')),
}));

const EXAMPLE = path.join(PROJECT_ROOT, 'examples', 'custom-step');

let env: TestEnv;
let train: Awaited<ReturnType<typeof startInProcessWorkers>>;
let control: { worker: Worker; running: Promise<void>; close: () => Promise<void> };
let project: ProjectDefinition;

/**
 * A control worker as `gantry worker --pool control` of the project runs it: Gantry's workflows and the project's
 * in one bundle, Gantry's control activities and the project's steps.
 */
async function startProjectControlWorker(): Promise<typeof control> {
  const entry = path.join(env.home.root, 'project-workflows.ts');
  await writeFile(
    entry,
    `export * from ${JSON.stringify(path.join(PROJECT_ROOT, 'workflows', 'index.ts'))};\n` +
      `export * from ${JSON.stringify(path.join(EXAMPLE, 'workflows.ts'))};\n`,
  );
  const { code } = await bundleWorkflowCode({
    workflowsPath: entry,
    webpackConfigHook: (config) => {
      config.resolve = config.resolve ?? {};
      // The entry lies in the test's temporary home: packages come from this repository.
      config.resolve.modules = [
        ...(config.resolve.modules ?? ['node_modules']),
        path.join(PROJECT_ROOT, 'node_modules'),
      ];
      config.resolve.alias = {
        ...(config.resolve.alias as Record<string, string>),
        'gantry/workflows': path.join(PROJECT_ROOT, 'workflows', 'stages.ts'),
      };
      return config;
    },
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) },
  });
  const target = { address: env.address, namespace: 'default' };
  const connection = await connectWorker(target);
  const { client, connection: clientConnection } = await connectClient(target);
  const deps = { client, store: new FileArtifactStore(env.home.artifactsDir), home: env.home, gitCommit: null };
  const worker = await Worker.create({
    connection,
    taskQueue: taskQueueOf('control'),
    workflowBundle: { code },
    activities: { ...createControlActivities(deps), ...createStepActivities(project.steps, deps) },
  });
  const running = worker.run();
  return {
    worker,
    running,
    async close() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await clientConnection.close();
      await connection.close();
    },
  };
}

beforeAll(async () => {
  env = await createTestEnv('custom-step');
  // By path, as the project loader does (the example is not part of this repository's type-check), and like it
  // letting the project's pipeline name the step the project registers.
  const config = path.join(EXAMPLE, 'gantry.config.ts');
  project = (await deferringRegistryNames(() => import(config))).default as ProjectDefinition;
  train = await startInProcessWorkers(env, ['train']);
  control = await startProjectControlWorker();
});
afterAll(async () => {
  await control?.close();
  await train?.stop();
});

function gated(minRows: number, model = 'fashion-gated'): PipelineSpec {
  const spec = structuredClone(project.pipelines[0]!);
  spec.steps[0]!.options.minRows = minRows;
  spec.model.name = model;
  return spec;
}

describe('examples/custom-step', () => {
  it('records the step in the result and the lineage; a run that fails the gate stops unpublished', async () => {
    const handle = await startRun(train.client, gated(1000));
    const result = await handle.result();
    expect(isStoppedRun(result)).toBe(false);
    const done = result as RunResult;
    expect(done.published).toBe(true);
    const quality = { rows: 1800, minRows: 1000, classes: 10, maxClassShare: 0.3 };
    expect(done.steps).toEqual([{ name: 'data-quality', at: 'after-ingest', data: expect.objectContaining(quality) }]);
    const share = done.steps![0]!.data.largestClassShare as number;
    expect(share).toBeGreaterThan(0.1);
    expect(share).toBeLessThan(0.3);

    const registry = await readRegistry(train.client, 'fashion-gated');
    expect(registry!.versions).toHaveLength(1);
    expect(registry!.versions[0]!.lineage.steps).toEqual(done.steps);

    const stopped = (await (await startRun(train.client, gated(100_000))).result()) as StoppedRunResult;
    expect(stopped.status).toBe('stopped');
    expect(stopped.stopped).toEqual({
      step: 'data-quality',
      at: 'after-ingest',
      reason: 'only 1800 training rows, fewer than the 100000 required',
    });
    expect(stopped).toMatchObject({ published: false, version: null, train: null });
    // Nothing was trained or registered.
    expect((await readRegistry(train.client, 'fashion-gated'))!.versions).toHaveLength(1);
  });

  it('`gantry run reviewed` waits for `gantry approve <workflowId>`, then publishes', async () => {
    const workflowId = `reviewed-${Date.now()}`;
    const arg = JSON.stringify({ ...retrainInput(gated(1000, 'fashion-reviewed')), approvalTimeout: '10m' });
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const running = runNamedCommand(
        'reviewed',
        { set: [], json: true, arg, id: workflowId },
        { workflows: ['reviewed'] },
      );
      const handle = train.client.workflow.getHandle(workflowId);
      const waiting = await waitFor(
        'the approval to wait',
        async () => {
          const state = await handle.query(approvalQuery);
          return state.phase === 'waiting' ? state : undefined;
        },
        180_000,
        500,
      );
      expect(waiting.subject).toBe('publish v1 of fashion-reviewed');
      // Nothing is published before a person says so.
      expect((await readRegistry(train.client, 'fashion-reviewed'))!.versions[0]!.status).toBe('registered');

      await approveCommand(workflowId, { reason: 'looked at the confusion matrix', json: true });
      const result = (await running) as Record<string, unknown>;
      expect(result).toMatchObject({
        status: 'published',
        version: 1,
        approvedBecause: 'looked at the confusion matrix',
        quality: expect.objectContaining({ rows: 1800 }),
      });
      const registry = await readRegistry(train.client, 'fashion-reviewed');
      expect(registry!.versions[0]).toMatchObject({ status: 'published', publishedPath: result.publishedPath });
      expect(registry!.versions[0]!.lineage.steps).toEqual([
        { name: 'data-quality', at: 'after-ingest', data: expect.objectContaining({ rows: 1800 }) },
      ]);
      expect(log.mock.calls.map((c) => String(c[0])).join('\n')).toContain('"status":"published"');
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  });
});
