import { WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deploymentPrefix, taskQueueOf } from '../control/task-queues';
import { publishVersionUpdate, registerVersionUpdate, registryStateQuery, registryWorkflowId } from '../workflows/api';
import { registryWorkflow } from '../workflows/registry';
import { createTestEnv, type TestEnv } from './helpers/env';
import { registerRequest } from './helpers/registry';
import { startInProcessWorkers } from './helpers/workers';

let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;

beforeAll(async () => {
  env = await createTestEnv('registry');
  workers = await startInProcessWorkers(env, ['control']);
});
afterAll(async () => {
  await workers?.stop();
});

it(
  'numbers versions, deduplicates retried registrations, guards aliases ' + 'and continues as new without losing state',
  async () => {
    const handle = await workers.client.workflow.start(registryWorkflow, {
      workflowId: registryWorkflowId(deploymentPrefix(), `entity-${Date.now()}`),
      taskQueue: taskQueueOf('control'),
      // A tiny history budget, so that this test sees several continue-as-new hand-overs.
      args: [{ model: 'entity', maxHistoryEvents: 25 }],
    });
    const firstRunId = (await handle.describe()).runId;

    for (let i = 1; i <= 6; i++) {
      expect(
        await handle.executeUpdate(registerVersionUpdate, { args: [registerRequest(`run-${i}`, i !== 3)] }),
      ).toEqual({
        version: i,
      });
    }
    // A retried register activity of run 2 gets version 2 again, not a new version.
    expect(await handle.executeUpdate(registerVersionUpdate, { args: [registerRequest('run-2')] })).toEqual({
      version: 2,
    });

    expect(
      await handle.executeUpdate(publishVersionUpdate, {
        args: [{ version: 2, publishedPath: '/m/2', alias: 'champion' }],
      }),
    ).toEqual({ version: 2, alias: 'champion', previous: null });
    expect(
      await handle.executeUpdate(publishVersionUpdate, {
        args: [{ version: 5, publishedPath: '/m/5', alias: 'champion' }],
      }),
    ).toEqual({ version: 5, alias: 'champion', previous: 2 });

    // Rejected by the validators, so nothing is written to history.
    await expect(
      handle.executeUpdate(publishVersionUpdate, { args: [{ version: 3, publishedPath: '/m/3', alias: 'champion' }] }),
    ).rejects.toThrow(WorkflowUpdateFailedError);
    await expect(
      handle.executeUpdate(publishVersionUpdate, { args: [{ version: 99, publishedPath: '/m/99', alias: 'stable' }] }),
    ).rejects.toThrow(WorkflowUpdateFailedError);
    // Publishing again moves another alias to an already published version.
    expect(
      await handle.executeUpdate(publishVersionUpdate, {
        args: [{ version: 2, publishedPath: '/m/2', alias: 'stable' }],
      }),
    ).toEqual({ version: 2, alias: 'stable', previous: null });

    // Still the same entity after several new runs: every version, alias and dedup entry survived.
    const latest = workers.client.workflow.getHandle(handle.workflowId);
    const state = await latest.query(registryStateQuery);
    expect(state.versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(state.versions.map((v) => v.status)).toEqual([
      'registered',
      'published',
      'registered',
      'registered',
      'published',
      'registered',
    ]);
    expect(state.aliases).toEqual({ champion: 5, stable: 2 });
    expect(state.versionByRunId['run-6']).toBe(6);
    expect((await latest.describe()).runId).not.toBe(firstRunId);
    expect(state.versions.map((v) => v.blessed)).toEqual([true, true, false, true, true, true]);
  },
);
