import path from 'node:path';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createStepActivities } from '../../activities/steps';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { deferringRegistryNames } from '../../pipelines/define';
import type { ProjectDefinition } from '../../pipelines/project';
import { approvalQuery, approveUpdate, type ControlActivities, type RetrainInput } from '../../workflows/api';
import { sliceSpec } from '../helpers/specs';
import { waitFor } from '../helpers/workers';
import { uniqueName, useTimeSkipping } from './time-skipping';

/**
 * Gantry's stages in a user's own workflow (examples/custom-step/workflows.ts, `reviewed`) on the time-skipping
 * server, with the stage activities faked (the project's step runs for real): the approval gate approved, approved
 * twice, and timed out.
 */
vi.mock('gantry', async () => ({
  ...(await import('../../pipelines/project')),
  ...(await import('../../pipelines/define')),
}));

const env = useTimeSkipping();
const EXAMPLE = path.join(PROJECT_ROOT, 'examples', 'custom-step');
let code: string;
let project: ProjectDefinition;

beforeAll(async () => {
  const config = path.join(EXAMPLE, 'gantry.config.ts');
  project = (await deferringRegistryNames(() => import(config))).default as ProjectDefinition;
  ({ code } = await bundleWorkflowCode({
    workflowsPath: path.join(EXAMPLE, 'workflows.ts'),
    webpackConfigHook: (config) => {
      config.resolve = config.resolve ?? {};
      config.resolve.alias = {
        ...(config.resolve.alias as Record<string, string>),
        'gantry/workflows': path.join(PROJECT_ROOT, 'workflows', 'stages.ts'),
      };
      return config;
    },
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) },
  }));
});

function fakeStages(blessed = true) {
  const calls: string[] = [];
  const activities: Partial<ControlActivities> & { train: (input: unknown) => Promise<unknown> } = {
    ingest: async () => {
      calls.push('ingest');
      return {
        fingerprint: 'f'.repeat(64),
        manifestUri: 'file:///m.json',
        counts: { train: 1800, validation: 200, test: 500 },
        statistics: { train: { labelHistogram: Array(10).fill(180) } },
        drift: { drifted: false, reasons: [] },
        anomalies: [],
      } as never;
    },
    train: async () => (calls.push('train'), { modelUri: 'file:///model', history: [], backend: { name: 'cpu' } }),
    evaluate: async () => {
      calls.push('evaluate');
      return { blessed, reasons: [], candidate: { accuracy: 0.8 }, champion: null, reportUri: 'r' } as never;
    },
    register: async () => (calls.push('register'), { version: 4 }),
    publish: async () => (calls.push('publish'), { publishedPath: '/models/m/4' }),
  };
  return { calls, activities: { ...activities, ...createStepActivities(project.steps) } };
}

async function withUserWorker<T>(activities: object, body: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = uniqueName('user');
  const worker = await Worker.create({
    connection: env().nativeConnection,
    taskQueue,
    workflowBundle: { code },
    activities,
  });
  return worker.runUntil(body(taskQueue));
}

function run(taskQueue: string, approvalTimeout: string): RetrainInput & { approvalTimeout: string } {
  const spec = sliceSpec();
  spec.steps = [{ name: 'data-quality', at: 'after-ingest', options: { minRows: 1000, maxClassShare: 0.3 } }];
  return { spec, taskQueues: { control: taskQueue, train: taskQueue }, deploymentPrefix: 'test', approvalTimeout };
}

describe("a user's workflow with an approval before publish", () => {
  it('waits for the approval after register, then publishes', async () => {
    const stages = fakeStages();
    const result = await withUserWorker(stages.activities, async (taskQueue) => {
      const handle = await env().client.workflow.start('reviewed', {
        taskQueue,
        workflowId: uniqueName('reviewed'),
        args: [run(taskQueue, '1h')],
      });
      await waitFor('the approval to wait', async () =>
        (await handle.query(approvalQuery).catch(() => undefined))?.phase === 'waiting' ? true : undefined,
      );
      expect(stages.calls).toEqual(['ingest', 'train', 'evaluate', 'register']);
      const state = await handle.executeUpdate(approveUpdate, { args: [{ reason: 'ok by me' }] });
      expect(state).toMatchObject({ subject: 'publish v4 of fashion-mnist', phase: 'approved', reason: 'ok by me' });
      return handle.result();
    });
    expect(result).toMatchObject({ status: 'published', version: 4, approvedBecause: 'ok by me' });
    expect(stages.calls).toEqual(['ingest', 'train', 'evaluate', 'register', 'publish']);
  });

  it('refuses a second approve: nothing waits for one any more', async () => {
    const stages = fakeStages();
    await withUserWorker(stages.activities, async (taskQueue) => {
      const handle = await env().client.workflow.start('reviewed', {
        taskQueue,
        workflowId: uniqueName('reviewed'),
        args: [run(taskQueue, '1h')],
      });
      await waitFor('the approval to wait', async () =>
        (await handle.query(approvalQuery).catch(() => undefined))?.phase === 'waiting' ? true : undefined,
      );
      await handle.executeUpdate(approveUpdate, { args: [{}] });
      const second = await handle.executeUpdate(approveUpdate, { args: [{}] }).catch((e: unknown) => e);
      expect(second).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((second as WorkflowUpdateFailedError).cause?.message).toContain('nothing is waiting for approval');
      await handle.result();
    });
  });

  it('without an approval in time the version stays registered and unpublished', async () => {
    const stages = fakeStages();
    const result = await withUserWorker(stages.activities, (taskQueue) =>
      env().client.workflow.execute('reviewed', {
        taskQueue,
        workflowId: uniqueName('reviewed'),
        args: [run(taskQueue, '2h')],
      }),
    );
    expect(result).toEqual({ status: 'not-approved', version: 4 });
    expect(stages.calls).not.toContain('publish');
  });
});
