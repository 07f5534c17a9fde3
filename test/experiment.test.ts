import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRegistry } from '../control/registry';
import { deploymentPrefix } from '../control/task-queues';
import type { ServingClient } from '../serving/client';
import { experimentStatusQuery, experimentWorkflowId } from '../workflows/api';
import { decideExperiment, twoProportionTest } from '../workflows/experiment-analysis';
import { gantry } from './helpers/cli';
import {
  publishVersion,
  startDeployment,
  trainedModelFiles,
  wrongLabelFiles,
  type Deployment,
} from './helpers/deployment';
import type { TestEnv } from './helpers/env';
import { waitFor, type InProcessWorkers } from './helpers/workers';

/**
 * A/B experiments through `gantry experiment start` on the real Temporal server and a real model
 * server under live traffic with feedback: arms of clearly different accuracy → the better one
 * wins. Assignment is sticky per client key, the verdict is recorded in the registry, and the
 * champion gets the traffic back. The verdicts on their own (no significant difference, too
 * little feedback, a stop) are tested on the time-skipping server in
 * test/workflows/experiment.workflow.test.ts.
 */

const MODEL = 'fashion';
let deployment: Deployment | undefined;
let env: TestEnv;
let workers: InProcessWorkers;
let serving: ServingClient;

beforeAll(async () => {
  deployment = await startDeployment('experiment', ['control']);
  ({ env, serving, workers } = deployment);
  const good = await trainedModelFiles(1);
  await publishVersion(env, workers.client, MODEL, good, { alias: 'champion' }); // v1
  // v2: wrong on purpose.
  await publishVersion(env, workers.client, MODEL, await wrongLabelFiles(good), { alias: null });
  deployment.startLoad(MODEL, { rps: 150, clients: 60 });
}, 120_000);

afterAll(() => deployment?.stop());

describe('the two-proportion test', () => {
  it('matches a worked example and needs enough feedback', () => {
    // 560/1000 vs 500/1000: pooled 0.53, z = 0.06 / sqrt(0.53·0.47·0.002) = 2.688, p = 0.00719.
    const { z, pValue } = twoProportionTest({ correct: 560, labelled: 1000 }, { correct: 500, labelled: 1000 });
    expect(z).toBeCloseTo(2.688, 2);
    expect(pValue).toBeCloseTo(0.00719, 4);
    // v1 and v2's feedback as [correct, labelled], judged at `alpha` with at least 100 labels an arm.
    const decide = (one: [number, number], two: [number, number], alpha: number) =>
      decideExperiment(
        [one, two].map(([correct, labelled], i) => ({ version: i + 1, correct, labelled })),
        { alpha, minFeedback: 100 },
      );
    expect(decide([560, 1000], [500, 1000], 0.05).winner).toBe(1);
    expect(decide([560, 1000], [500, 1000], 0.001).winner).toBeNull();
    expect(decide([9, 10], [0, 10], 0.05).summary).toMatch(/too little feedback/);
  });
});

describe('gantry experiment', () => {
  it('names the better arm the winner, keeps users sticky, and gives the traffic back to the champion', async () => {
    const started = gantry(
      [
        'experiment',
        'start',
        MODEL,
        '--arms',
        'v1:50,v2:50',
        '--duration',
        '6s',
        '--interval',
        '1s',
        '--min-feedback',
        '50',
        '--alpha',
        '0.001',
        '--follow',
        '--json',
      ],
      env.env,
    );

    // While it runs, each user keeps one arm.
    const handle = workers.client.workflow.getHandle(experimentWorkflowId(deploymentPrefix(), MODEL));
    await waitFor(
      'the arms on the server',
      async () => ((await serving.adminState()).state.traffic[MODEL]?.split?.length === 2 ? true : undefined),
      20_000,
    );
    const pixels = new Float32Array(784);
    const versionsByUser: Record<string, Set<number>> = {};
    for (let round = 0; round < 4; round++) {
      for (let user = 0; user < 12; user++) {
        const answer = await serving.predict(MODEL, pixels, { clientKey: `sticky-${user}` });
        (versionsByUser[user] ??= new Set()).add(answer.version);
      }
    }
    expect(Object.values(versionsByUser).every((s) => s.size === 1)).toBe(true);
    expect(new Set(Object.values(versionsByUser).map((s) => [...s][0])).size).toBe(2);

    const result = await started;
    expect(result.code, result.stderr).toBe(0);
    const status = JSON.parse(result.stdout);
    expect(status.verdict.winner, status.verdict.summary).toBe(1);
    expect(status.verdict.summary).toMatch(/^v1 wins/);
    expect(status.windows['1'].feedback.labelled).toBeGreaterThanOrEqual(50);
    expect(status.windows['2'].feedback.accuracy).toBeLessThan(0.3);
    expect((await handle.query(experimentStatusQuery)).phase).toBe('finished');

    const registry = (await readRegistry(workers.client, MODEL))!;
    expect(registry.events!.some((e) => e.kind === 'experiment' && /v1 wins/.test(e.message))).toBe(true);
    expect(registry.trafficOwner).toBeNull();
    expect((await serving.adminState()).state.traffic[MODEL]?.split).toEqual([{ version: 1, weight: 100 }]);
  }, 90_000);

  it('refuses bad arms with the field named', async () => {
    const bad = await gantry(['experiment', 'start', MODEL, '--arms', 'v1:50', '--duration', '5s'], env.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--arms: an experiment needs at least two arms/);
    const unknown = await gantry(['experiment', 'start', MODEL, '--arms', 'v1:50,v9:50', '--duration', '5s'], env.env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--arms: "fashion" has no version 9/);
  }, 60_000);
});
