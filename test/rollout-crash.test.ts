import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readRegistry } from '../control/registry';
import { deploymentPrefix, taskQueueOf } from '../control/task-queues';
import { RolloutSpecSchema } from '../pipelines/spec';
import type { ServingClient } from '../serving/client';
import type { ModelServer } from '../serving/server';
import { selectBackend } from '../engine/backend';
import { rolloutStatusQuery, rolloutWorkflowId, type RolloutStatus } from '../workflows/api';
import { rolloutWorkflow } from '../workflows/rollout';
import {
  publishVersion,
  startDeploymentServer,
  startFeedbackLoad,
  trainedModelFiles,
  type FeedbackLoad,
} from './helpers/deployment';
import { createTestEnv, type TestEnv } from './helpers/env';
import { killProcess, spawnWorkerProcess, waitFor } from './helpers/workers';

/**
 * The control worker running a rollout is SIGKILLed in the middle of a bake; another worker
 * process takes over and the rollout goes on from the step it was in — no step starts twice —
 * to the promotion, with the server's split following.
 */

const MODEL = 'fashion';
let env: TestEnv;
let server: ModelServer;
let serving: ServingClient;
let connection: Connection;
let client: Client;
const workers: ReturnType<typeof spawnWorkerProcess>[] = [];
let load: FeedbackLoad | undefined;

beforeAll(async () => {
  await selectBackend();
  env = await createTestEnv('rollout-crash');
  ({ server, client: serving } = await startDeploymentServer(env));
  workers.push(spawnWorkerProcess(env, 'control'));
  connection = await Connection.connect({ address: env.address });
  client = new Client({ connection, namespace: 'default' });
}, 60_000);

afterAll(async () => {
  await load?.stop();
  for (const w of workers) await killProcess(w.child, 'SIGTERM');
  await connection?.close();
  await server?.close();
});

it('goes on from the same step after the worker running it is killed mid-bake', async () => {
  await publishVersion(env, client, MODEL, await trainedModelFiles(1), { alias: 'champion' });
  const candidate = await publishVersion(env, client, MODEL, await trainedModelFiles(2), { alias: null });
  load = startFeedbackLoad(server, MODEL, { rps: 120, clients: 40 });

  const spec = RolloutSpecSchema.parse({
    steps: [
      { percent: 30, bake: '6s' },
      { percent: 100, bake: '3s' },
    ],
    analysisInterval: '1s',
    minRequests: 15,
    thresholds: { minFeedback: 30, maxAccuracyDrop: 0.25, maxP99LatencyRatio: 20, maxPredictionDivergence: 0.25 },
  });
  const handle = await client.workflow.start(rolloutWorkflow, {
    workflowId: rolloutWorkflowId(deploymentPrefix(), MODEL),
    taskQueue: taskQueueOf('control'),
    args: [{ model: MODEL, candidate, champion: 1, championAlias: 'champion', spec }],
  });

  // Mid-bake of step 1: the canary has traffic and at least two analyses were made.
  const before = await waitFor(
    'step 1 baking',
    async () => {
      const status = await handle.query(rolloutStatusQuery);
      return status.step === 1 && status.analyses.length >= 2 ? status : undefined;
    },
    60_000,
    100,
  );
  await killProcess(workers[0]!.child, 'SIGKILL');
  workers.push(spawnWorkerProcess(env, 'control'));

  const status: RolloutStatus = await handle.result();
  expect(status.outcome?.result, workers.map((w) => w.output()).join('\n')).toBe('promoted');
  // The step it was in went on: it started once, and its analyses from before the kill are kept.
  expect(status.decisions.filter((d) => d.action === 'start' && d.step === 1)).toHaveLength(1);
  expect(status.analyses.slice(0, before.analyses.length)).toEqual(before.analyses);
  expect(status.decisions.filter((d) => d.action === 'pass').map((d) => d.step)).toEqual([1, 2]);
  expect((await readRegistry(client, MODEL))!.aliases.champion).toBe(candidate);
  await waitFor(
    'v2 alone on the server',
    async () => {
      const split = (await serving.adminState()).state.traffic[MODEL]?.split;
      return JSON.stringify(split) === JSON.stringify([{ version: candidate, weight: 100 }]) ? true : undefined;
    },
    10_000,
  );
}, 180_000);
