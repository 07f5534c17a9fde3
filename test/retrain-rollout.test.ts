import { afterAll, beforeAll, expect, it } from 'vitest';
import { completedRun, progressQuery, rolloutStatusQuery, type RunResult } from '../workflows/api';
import { readRegistry } from '../control/registry';
import { startRun } from '../cli/runs';
import type { ServingClient } from '../serving/client';
import { startDeployment, type Deployment } from './helpers/deployment';
import { sliceSpec } from './helpers/specs';
import { waitFor, type InProcessWorkers } from './helpers/workers';

/**
 * The retrain pipeline's last stage, end to end on the real server: the first run has no champion
 * and is promoted at once; the second run's version goes through the rollout child workflow's
 * canary steps under live traffic with feedback and is promoted; the model server serves it.
 */

let deployment: Deployment | undefined;
let workers: InProcessWorkers;
let serving: ServingClient;

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
  deployment = await startDeployment('retrain-rollout', ['control', 'train']);
  ({ serving, workers } = deployment);
}, 60_000);

afterAll(() => deployment?.stop());

it('promotes the first version at once, then rolls the next one out through canary steps to promotion', async () => {
  const first: RunResult = completedRun(await (await startRun(workers.client, spec(1))).result());
  expect(first.rollout).toEqual({
    result: 'promoted',
    reasons: ['no champion to compare against: the first version is promoted at once'],
    decisions: 1,
  });
  expect(first.promoted).toBe(true);
  expect((await serving.adminState()).state.traffic['fashion-mnist']?.split).toEqual([{ version: 1, weight: 100 }]);

  deployment!.startLoad('fashion-mnist', { rps: 120, clients: 40 });
  const handle = await startRun(workers.client, spec(2));
  const rolloutId = await waitFor(
    'the rollout stage',
    async () => (await handle.query(progressQuery)).rolloutId ?? undefined,
    120_000,
    200,
  );
  const second: RunResult = completedRun(await handle.result());
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
