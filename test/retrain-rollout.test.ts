import { afterAll, beforeAll, expect, it } from 'vitest';
import { progressQuery, rolloutStatusQuery, type RunResult } from '../workflows/api';
import { readRegistry } from '../activities/registry-client';
import { runLoad, type LoadSummary } from '../control/load/generator';
import { startRun } from '../cli/runs';
import type { ServingClient } from '../serving/client';
import type { ModelServer } from '../serving/server';
import { selectBackend } from '../engine/backend';
import { startDeploymentServer } from './helpers/deployment';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { startInProcessWorkers, waitFor } from './helpers/workers';

/**
 * The retrain pipeline's last stage, end to end on the real server: the first run has no champion
 * and is promoted at once; the second run's version goes through the rollout child workflow's
 * canary steps under live traffic with feedback and is promoted; the model server serves it.
 */

let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;
let server: ModelServer;
let serving: ServingClient;
const load = new AbortController();
let loadDone: Promise<LoadSummary> | undefined;

const spec = (seed: number) =>
  sliceSpec({
    train: { epochs: 2, seed },
    evaluation: { minAccuracy: 0.5, minAccuracyDelta: -0.1 },
    deployment: {
      rollout: {
        enabled: true,
        steps: [
          { percent: 25, bake: '2s' },
          { percent: 100, bake: '2s' },
        ],
        analysisInterval: '1s',
        minRequests: 15,
        maxExtensions: 5,
        thresholds: { minFeedback: 30, maxAccuracyDrop: 0.25, maxP99LatencyRatio: 20, maxPredictionDivergence: 0.3 },
      },
    },
  });

beforeAll(async () => {
  await selectBackend();
  env = await createTestEnv('retrain-rollout');
  ({ server, client: serving } = await startDeploymentServer(env));
  workers = await startInProcessWorkers(env, ['control', 'train']);
}, 60_000);

afterAll(async () => {
  load.abort();
  await loadDone?.catch(() => undefined);
  await workers?.stop();
  await server?.close();
});

it('promotes the first version at once, then rolls the next one out through canary steps to promotion', async () => {
  const first: RunResult = await (await startRun(workers.client, spec(1))).result();
  expect(first.rollout).toEqual({
    result: 'promoted',
    reasons: ['no champion to compare against: the first version is promoted at once'],
    decisions: 1,
  });
  expect(first.promoted).toBe(true);
  expect((await serving.adminState()).state.traffic['fashion-mnist']?.split).toEqual([{ version: 1, weight: 100 }]);

  loadDone = runLoad(
    {
      model: 'fashion-mnist',
      server: { url: `http://127.0.0.1:${server.restPort}` },
      rps: 120,
      clients: 40,
      feedback: true,
      progressIntervalMs: 60_000,
    },
    load.signal,
  );
  const handle = await startRun(workers.client, spec(2));
  const rolloutId = await waitFor(
    'the rollout stage',
    async () => (await handle.query(progressQuery)).rolloutId ?? undefined,
    120_000,
    200,
  );
  const second: RunResult = await handle.result();
  expect(second.version).toBe(2);
  expect(second.rollout?.result, JSON.stringify(second.rollout)).toBe('promoted');
  expect(second.promoted).toBe(true);
  const progress = await handle.query(progressQuery);
  expect(progress.stages.rollout).toBe('done');

  const status = await workers.client.workflow.getHandle(rolloutId).query(rolloutStatusQuery);
  expect(status.decisions.filter((d) => d.action === 'pass').map((d) => d.percent)).toEqual([25, 100]);
  expect((await readRegistry(workers.client, 'fashion-mnist'))!.aliases.champion).toBe(2);
  expect((await serving.adminState()).state.traffic['fashion-mnist']?.split).toEqual([{ version: 2, weight: 100 }]);
  expect((await serving.predict('fashion-mnist', new Float32Array(784))).version).toBe(2);
}, 300_000);
