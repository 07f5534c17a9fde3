import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readRegistry } from '../control/registry';
import { deploymentPrefix, taskQueueOf } from '../control/task-queues';
import { RolloutSpecSchema } from '../pipelines/spec';
import type { ServingClient } from '../serving/client';
import type { ModelFiles } from '../engine/model-files';
import {
  registryWorkflowId,
  rollbackRolloutUpdate,
  rollbackUpdate,
  rolloutStatusQuery,
  rolloutWorkflowId,
  type RolloutStatus,
} from '../workflows/api';
import { rolloutWorkflow } from '../workflows/rollout';
import { publishVersion, startDeployment, startDeploymentServer, trainedModelFiles } from './helpers/deployment';
import { wrongLabelFiles, type Deployment } from './helpers/deployment';
import type { TestEnv } from './helpers/env';
import { waitFor, type InProcessWorkers } from './helpers/workers';
import { gantry } from './helpers/cli';

/**
 * Canary rollouts on the real Temporal server against a real model server under live traffic
 * with feedback (`gantry load`'s engine): a good candidate walks every step and is promoted, a
 * wrong-label candidate is rolled back at the first analysis that can see it, a manual rollback
 * reaches the server within a second, and a server that restarts with no state gets the desired
 * split back from reconciliation. The decision logic on its own (bakes, extensions, the approval
 * timeout) is tested on the time-skipping server in test/workflows/rollout.workflow.test.ts.
 */

const MODEL = 'fashion';
const spec = (steps: { percent: number; bake: string }[], extra: Record<string, unknown> = {}) =>
  RolloutSpecSchema.parse({
    ...extra,
    steps,
    analysisInterval: '1s',
    minRequests: 15,
    maxExtensions: 5,
    // Sized to the sample (about 30 labels a judgement): a wrong-label canary is ~70 points below, two good models a
    // few points apart, and 25 points is over 3 standard deviations of the difference at that size.
    thresholds: {
      minFeedback: 30,
      maxAccuracyDrop: 0.25,
      maxP99LatencyRatio: 20,
      maxPredictionDivergence: 0.25,
      maxShadowDisagreement: 0.5,
    },
  });

let deployment: Deployment | undefined;
let env: TestEnv;
let workers: InProcessWorkers;
let serving: ServingClient;
let port: number;
let good1: ModelFiles;
let good2: ModelFiles;

beforeAll(async () => {
  deployment = await startDeployment('rollout', ['control']);
  ({ env, serving, workers } = deployment);
  port = deployment.server.restPort!;
  [good1, good2] = [await trainedModelFiles(1), await trainedModelFiles(2)];
  await publishVersion(env, workers.client, MODEL, good1, { alias: 'champion' });
  // Live traffic for the whole file: 40 sticky users, true labels sent back as feedback.
  deployment.startLoad(MODEL, { rps: 120, clients: 40 });
}, 120_000);

afterAll(() => deployment?.stop());

/** The split the server applies now, as "v1:90 v2:10". */
async function currentSplit(): Promise<string> {
  const { state } = await serving.adminState();
  return (state.traffic[MODEL]?.split ?? [])
    .map((s) => ('version' in s ? `v${s.version}:${s.weight}` : `${s.label}:${s.weight}`))
    .join(' ');
}

async function startRollout(
  candidate: number,
  champion: number,
  steps: { percent: number; bake: string }[],
  extra: Record<string, unknown> = {},
) {
  return workers.client.workflow.start(rolloutWorkflow, {
    workflowId: rolloutWorkflowId(deploymentPrefix(), MODEL),
    taskQueue: taskQueueOf('control'),
    args: [{ model: MODEL, candidate, champion, championAlias: 'champion', spec: spec(steps, extra) }],
  });
}

/** Unversioned predictions answered now, by version. */
async function answeredBy(n: number): Promise<Record<number, number>> {
  const pixels = new Float32Array(784);
  const counts: Record<number, number> = {};
  for (let i = 0; i < n; i++) {
    const answer = await serving.predict(MODEL, pixels, { clientKey: `probe-${i}` });
    counts[answer.version] = (counts[answer.version] ?? 0) + 1;
  }
  return counts;
}

/** The champion now: each test starts from whatever the registry says, never from an earlier test's outcome. */
async function currentChampion(): Promise<number> {
  return (await readRegistry(workers.client, MODEL))!.aliases.champion!;
}

// A test that failed midway must not leave its rollout steering the model's traffic for the next one.
afterEach(async () => {
  const handle = workers.client.workflow.getHandle(rolloutWorkflowId(deploymentPrefix(), MODEL));
  const running = await handle
    .describe()
    .then((d) => d.status.name === 'RUNNING')
    .catch(() => false);
  if (!running) return;
  await handle.cancel();
  await handle.result().catch(() => undefined);
});

describe('canary rollout', () => {
  it('walks a good candidate through every step, the server following each, then promotes it', async () => {
    const champion = await currentChampion();
    const candidate = await publishVersion(env, workers.client, MODEL, good2, { alias: null });
    // Both steps share the traffic with the champion, so each is judged against the champion's
    // latency over the same seconds (a 100 % step's judgement is tested in test/workflows/).
    const handle = await startRollout(candidate, champion, [
      { percent: 30, bake: '3s' },
      { percent: 60, bake: '3s' },
    ]);
    const seen: string[] = [];
    let finished = false;
    const result = handle.result().finally(() => (finished = true));
    while (!finished) {
      const split = await currentSplit();
      if (seen.at(-1) !== split) seen.push(split);
      await sleep(100);
    }
    const status: RolloutStatus = await result;
    expect(status.outcome?.result, JSON.stringify(status.decisions, null, 1)).toBe('promoted');
    const [first, second] = [`v${champion}:70 v${candidate}:30`, `v${champion}:40 v${candidate}:60`];
    expect(seen).toEqual(expect.arrayContaining([first, second]));
    expect(seen.indexOf(first)).toBeLessThan(seen.indexOf(second));
    expect(status.decisions.filter((d) => d.action === 'pass').map((d) => d.step)).toEqual([1, 2]);
    // Every pass was judged on feedback from the live traffic: accuracy is among the checks that held.
    for (const pass of status.decisions.filter((d) => d.action === 'pass'))
      expect(pass.message).toMatch(/online accuracy/);

    const registry = (await readRegistry(workers.client, MODEL))!;
    expect(registry.aliases.champion).toBe(candidate);
    expect(registry.events!.map((e) => e.message).join('\n')).toMatch(
      new RegExp(`v${candidate} promoted: all 2 steps passed`),
    );
    // After promotion the champion alone is loaded and takes everything.
    await waitFor(
      'the new champion alone on the server',
      async () => ((await currentSplit()) === `v${candidate}:100` ? true : undefined),
      5000,
    );
    expect(await answeredBy(20)).toEqual({ [candidate]: 20 });
  }, 120_000);

  it('rolls a wrong-label candidate back at the first analysis that can judge it; no traffic after', async () => {
    const champion = await currentChampion();
    const bad = await publishVersion(env, workers.client, MODEL, await wrongLabelFiles(good2), { alias: null });
    const handle = await startRollout(bad, champion, [
      { percent: 30, bake: '20s' },
      { percent: 100, bake: '20s' },
    ]);
    const status = await handle.result();
    expect(status.outcome?.result).toBe('rolled-back');
    expect(status.outcome!.reasons.join(' ')).toMatch(/online accuracy .* vs champion/);
    // Within one analysis interval of the breach: every earlier analysis lacked the labels to judge accuracy.
    const breach = status.decisions.find((d) => d.action === 'breach')!;
    expect(breach.step).toBe(1);
    const judgedBefore = status.analyses.filter((a) => a.at < breach.at && (a.canary?.feedback.labelled ?? 0) >= 30);
    expect(judgedBefore).toEqual([]);
    expect(breach.canary!.feedback.accuracy!).toBeLessThan(0.3);

    expect(await currentSplit()).toBe(`v${champion}:100`);
    expect(await answeredBy(30)).toEqual({ [champion]: 30 });
    const registry = (await readRegistry(workers.client, MODEL))!;
    expect(registry.aliases.champion).toBe(champion);
    expect(registry.versions.find((v) => v.version === bad)!.rolledBack!.reasons.join(' ')).toMatch(/online accuracy/);
  }, 120_000);

  it('promotes by hand with the CLI, and rolls back to an earlier version, on the server within a second', async () => {
    const earlier = await currentChampion();
    const next = await publishVersion(env, workers.client, MODEL, good1, { alias: null });
    // The CLI promotes, and says what changed.
    const cli = await gantry(['promote', MODEL, String(next), '--reason', 'by hand'], env.env);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`champion v${next} \\(promoted\\) — 1/1 server\\(s\\) serve it`));
    expect(await answeredBy(20)).toEqual({ [next]: 20 });

    const handle = workers.client.workflow.getHandle(registryWorkflowId(deploymentPrefix(), MODEL));
    const started = performance.now();
    const change = await handle.executeUpdate(rollbackUpdate, { args: [{ to: earlier, reason: 'test' }] });
    const elapsed = performance.now() - started;
    expect(change.champion).toBe(earlier);
    expect(change.apply.servers).toEqual([expect.objectContaining({ ok: true })]);
    expect(elapsed).toBeLessThan(1000);
    expect(await answeredBy(20)).toEqual({ [earlier]: 20 });
    const refused = await gantry(['rollback', MODEL, '--to', '99'], env.env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/no version 99/);
  }, 60_000);

  it('gives a restarted model server the desired split back (reconciliation)', async () => {
    const champion = await currentChampion();
    const candidate = await publishVersion(env, workers.client, MODEL, good2, { alias: null });
    const handle = await startRollout(candidate, champion, [{ percent: 40, bake: '1h' }]);
    const canaryStep = `v${champion}:60 v${candidate}:40`;
    await waitFor(
      'the canary step on the server',
      async () => ((await currentSplit()) === canaryStep ? true : undefined),
      20_000,
    );

    // One owner of the traffic at a time (the registry's rule is tested in test/workflows/): the CLI says so.
    const second = await gantry(['rollout', 'start', MODEL, String(champion)], env.env);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/a rollout of "fashion" is already running/);
    const shown = await gantry(['rollout', 'status', MODEL], env.env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`rollout of v${candidate} against v${champion}: canary, step 1/1 at 40 %`));

    // The server dies and comes back on the same port with no state at all.
    await deployment!.server.close();
    ({ server: deployment!.server, client: serving } = await startDeploymentServer(env, port, 'fresh-state.json'));
    const restarted = performance.now();
    await waitFor(
      'the split restored',
      async () => ((await currentSplit()) === canaryStep ? true : undefined),
      10_000,
      100,
    );
    expect(performance.now() - restarted).toBeLessThan(5000);

    const ended = await handle.executeUpdate(rollbackRolloutUpdate, { args: [{ reason: 'test over' }] });
    expect(ended.outcome?.result).toBe('rolled-back');
    expect(ended.outcome?.reasons).toEqual(['rolled back by hand: test over']);
    expect(await currentSplit()).toBe(`v${champion}:100`);
    expect((await handle.query(rolloutStatusQuery)).phase).toBe('rolled-back');
  }, 90_000);

  it('shadows first (answers unchanged), then waits at the approval gate for `gantry approve`', async () => {
    const champion = await currentChampion();
    const candidate = await publishVersion(env, workers.client, MODEL, good2, { alias: null });
    const handle = await startRollout(candidate, champion, [{ percent: 50, bake: '2s' }], {
      shadow: { percent: 100, bake: '3s' },
      approval: { timeout: '2m', onTimeout: 'rollback' },
    });
    await waitFor(
      'the shadow phase on the server',
      async () => ((await serving.adminState()).state.traffic[MODEL]?.shadow ? true : undefined),
      20_000,
    );
    // In the shadow phase the champion answers everything.
    expect(await answeredBy(20)).toEqual({ [champion]: 20 });
    await waitFor(
      'the approval gate',
      async () => ((await handle.query(rolloutStatusQuery)).phase === 'awaiting-approval' ? true : undefined),
      60_000,
      200,
    );
    const shadowPass = (await handle.query(rolloutStatusQuery)).decisions.find(
      (d) => d.phase === 'shadow' && d.action === 'pass',
    );
    expect(shadowPass?.message).toMatch(/shadow disagreement/);

    const approved = await gantry(['approve', MODEL, '--reason', 'looks good'], env.env);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(new RegExp(`v${candidate} promoted`));
    const status = await handle.result();
    expect(status.outcome?.reasons.join(' ')).toMatch(/all 1 steps passed after the shadow phase, approved/);
    expect((await readRegistry(workers.client, MODEL))!.aliases.champion).toBe(candidate);
  }, 120_000);
});
