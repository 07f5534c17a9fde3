import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRegistry } from '../activities/registry-client';
import { runLoad, type LoadSummary } from '../control/load/generator';
import { deploymentPrefix } from '../control/task-queues';
import type { ServingClient } from '../serving/client';
import type { ModelServer } from '../serving/server';
import { selectBackend } from '../engine/backend';
import { experimentStatusQuery, experimentWorkflowId } from '../workflows/api';
import { decideExperiment, twoProportionTest } from '../workflows/experiment-analysis';
import { gantry } from './helpers/cli';
import { publishVersion, startDeploymentServer, trainedModelFiles, wrongLabelFiles } from './helpers/deployment';
import { createTestEnv, type TestEnv } from './helpers/env';
import { startInProcessWorkers, waitFor } from './helpers/workers';

/**
 * A/B experiments through `gantry experiment start` on the real Temporal server and a real model
 * server under live traffic with feedback: arms of clearly different accuracy → the better one
 * wins. Assignment is sticky per client key, the verdict is recorded in the registry, and the
 * champion gets the traffic back. The verdicts on their own (no significant difference, too
 * little feedback, a stop) are tested on the time-skipping server in
 * test/workflows/experiment.workflow.test.ts.
 */

const MODEL = 'fashion';
let env: TestEnv;
let workers: Awaited<ReturnType<typeof startInProcessWorkers>>;
let server: ModelServer;
let serving: ServingClient;
const load = new AbortController();
let loadDone: Promise<LoadSummary>;

beforeAll(async () => {
  await selectBackend();
  env = await createTestEnv('experiment');
  ({ server, client: serving } = await startDeploymentServer(env));
  workers = await startInProcessWorkers(env, ['control']);
  const good = await trainedModelFiles(1);
  await publishVersion(env, workers.client, MODEL, good, { alias: 'champion' }); // v1
  // v2: wrong on purpose.
  await publishVersion(env, workers.client, MODEL, await wrongLabelFiles(good), { alias: null });
  loadDone = runLoad(
    {
      model: MODEL,
      server: { url: `http://127.0.0.1:${server.restPort}` },
      rps: 150,
      clients: 60,
      feedback: true,
      progressIntervalMs: 60_000,
    },
    load.signal,
  );
}, 120_000);

afterAll(async () => {
  load.abort();
  await loadDone?.catch(() => undefined);
  await workers?.stop();
  await server?.close();
});

describe('the two-proportion test', () => {
  it('matches a worked example and needs enough feedback', () => {
    // 560/1000 vs 500/1000: pooled 0.53, z = 0.06 / sqrt(0.53·0.47·0.002) = 2.688, p = 0.00719.
    const { z, pValue } = twoProportionTest({ correct: 560, labelled: 1000 }, { correct: 500, labelled: 1000 });
    expect(z).toBeCloseTo(2.688, 2);
    expect(pValue).toBeCloseTo(0.00719, 4);
    expect(
      decideExperiment(
        [
          { version: 1, correct: 560, labelled: 1000 },
          { version: 2, correct: 500, labelled: 1000 },
        ],
        { alpha: 0.05, minFeedback: 100 },
      ).winner,
    ).toBe(1);
    expect(
      decideExperiment(
        [
          { version: 1, correct: 560, labelled: 1000 },
          { version: 2, correct: 500, labelled: 1000 },
        ],
        { alpha: 0.001, minFeedback: 100 },
      ).winner,
    ).toBeNull();
    expect(
      decideExperiment(
        [
          { version: 1, correct: 9, labelled: 10 },
          { version: 2, correct: 0, labelled: 10 },
        ],
        { alpha: 0.05, minFeedback: 100 },
      ).summary,
    ).toMatch(/too little feedback/);
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
