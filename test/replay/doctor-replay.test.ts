import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { findUnreplayable } from '../../cli/commands/doctor';
import { installQuietRuntime } from '../helpers/quiet-runtime';
import { waitFor } from '../helpers/workers';
import { uniqueName } from '../workflows/time-skipping';

/**
 * `gantry doctor`'s replay check on the test run's real Temporal server: a workflow started by one build
 * (fixtures/drift-v1.ts) and still running is reported by the check of a build whose code changed under it
 * (fixtures/drift-v2.ts, an activity call inserted), with its id and the nondeterminism, and not by its own build's.
 */

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m) };
const bundle = async (file: string) => ({
  code: (await bundleWorkflowCode({ workflowsPath: path.join(import.meta.dirname, 'fixtures', file), logger: quiet }))
    .code,
});

let connection: Connection;
let client: Client;

beforeAll(async () => {
  installQuietRuntime();
  connection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection });
});
afterAll(async () => {
  await connection?.close();
});

describe('gantry doctor: running workflows this build cannot replay', () => {
  it('reports a workflow whose code changed under it, and not one whose code did not', async () => {
    const [v1, v2] = await Promise.all([bundle('drift-v1.ts'), bundle('drift-v2.ts')]);
    const taskQueue = uniqueName('drift');
    const workflowId = uniqueName('drifting');
    const noted: string[] = [];
    const native = await NativeConnection.connect({ address: inject('temporalAddress') });
    const worker = await Worker.create({
      connection: native,
      taskQueue,
      workflowBundle: v1,
      activities: { note: async (text: string) => void noted.push(text) },
    });
    const handle = await worker.runUntil(async () => {
      const started = await client.workflow.start('driftingWorkflow', { taskQueue, workflowId });
      await waitFor('the first activity', async () => (noted.length ? true : undefined));
      // Its worker has completed the task after the activity: the history now holds the timer of the wait.
      await waitFor('the wait', async () =>
        (await started.fetchHistory()).events?.some((e) => e.timerStartedEventAttributes) ? true : undefined,
      );
      return started;
    });
    await native.close();
    try {
      // Listing is eventually consistent: wait until the running workflow shows up.
      await waitFor('the listing', async () => {
        const report = await findUnreplayable({ client, bundle: v1, workflowTypes: ['driftingWorkflow'] });
        return report.checked >= 1 ? report : undefined;
      });
      const same = await findUnreplayable({ client, bundle: v1, workflowTypes: ['driftingWorkflow'] });
      expect(same.unreplayable.filter((w) => w.workflowId === workflowId)).toEqual([]);

      const changed = await findUnreplayable({ client, bundle: v2, workflowTypes: ['driftingWorkflow'], limit: 10 });
      const mine = changed.unreplayable.find((w) => w.workflowId === workflowId);
      expect(mine).toMatchObject({ workflowType: 'driftingWorkflow', runId: handle.firstExecutionRunId });
      expect(mine?.error).toMatch(/Nondeterminism/i);

      // Bounded: a limit of 0 replays nothing and counts the workflow as not checked.
      const none = await findUnreplayable({ client, bundle: v2, workflowTypes: ['driftingWorkflow'], limit: 0 });
      expect(none).toMatchObject({ checked: 0, unreplayable: [] });
      expect(none.skipped).toBeGreaterThanOrEqual(1);
    } finally {
      await handle.terminate('test over');
    }
  });
});
