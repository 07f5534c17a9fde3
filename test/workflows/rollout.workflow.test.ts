import { describe, expect, it } from 'vitest';
import { RolloutSpecSchema } from '../../pipelines/spec';
import {
  approveRolloutUpdate,
  rollbackRolloutUpdate,
  rolloutStatusQuery,
  type RolloutInput,
  type RolloutStatus,
} from '../../workflows/api';
import { rolloutWorkflow } from '../../workflows/rollout';
import { FakeDeploy, runWithFakeDeploy, uniqueName, useTimeSkipping, window, withWorker } from './time-skipping';

/**
 * The rollout's decisions on the time-skipping server, with the deploy activities faked: what the
 * servers measure is scripted per test, so every path (pass, breach, too little traffic, the
 * approval gate, a manual rollback) runs in seconds although its bakes last minutes.
 */

const env = useTimeSkipping();

const MODEL = 'shirts';
const THREE_STEPS = [
  { percent: 10, bake: '1m' },
  { percent: 50, bake: '1m' },
  { percent: 100, bake: '1m' },
];

function input(extra: Record<string, unknown> = {}, champion: number | null = 1): RolloutInput {
  return {
    model: MODEL,
    candidate: 2,
    champion,
    championAlias: 'champion',
    spec: RolloutSpecSchema.parse({ steps: THREE_STEPS, analysisInterval: '20s', minRequests: 100, ...extra }),
  };
}

const healthy = () => ({ versions: { '1': window(1000), '2': window(1000) }, shadow: {} });
/** Deploy activities whose servers measure both versions healthy. */
const healthyDeploy = () => Object.assign(new FakeDeploy(), { measure: healthy });

/** Runs one rollout to its end with `deploy`'s activities on a task queue of its own. */
const runRollout = (deploy: FakeDeploy, rolloutInput: RolloutInput): Promise<RolloutStatus> =>
  runWithFakeDeploy(env(), rolloutWorkflow, deploy, rolloutInput);

const elapsedMinutes = (status: RolloutStatus) =>
  (Date.parse(status.outcome!.at) - Date.parse(status.decisions[0]!.at)) / 60_000;

describe('rollout workflow (time-skipping)', () => {
  it('walks a healthy candidate through 3 one-minute steps, judging every interval, then promotes it', async () => {
    const deploy = healthyDeploy();
    const status = await runRollout(deploy, input());

    expect(status.phase).toBe('promoted');
    expect(status.outcome?.reasons).toEqual(['all 3 steps passed']);
    expect(deploy.named('setServing').map((i) => i.request.layout.split)).toEqual([
      [
        { version: 1, weight: 90 },
        { version: 2, weight: 10 },
      ],
      [
        { version: 1, weight: 50 },
        { version: 2, weight: 50 },
      ],
      [{ version: 2, weight: 100 }],
    ]);
    // Three analyses per step (every 20 s of a 1 m bake), plus the window each step starts from.
    expect(status.analyses).toHaveLength(9);
    expect(deploy.named('measureServing')).toHaveLength(12);
    expect(status.decisions.map((d) => `${d.phase} ${d.step} ${d.action}`)).toEqual([
      'canary 1 start',
      'canary 1 pass',
      'canary 2 start',
      'canary 2 pass',
      'canary 3 start',
      'canary 3 pass',
      'final 3 promote',
    ]);
    expect(deploy.named('claimTraffic')).toHaveLength(1);
    expect(deploy.named('conclude').map((i) => i.request.outcome)).toEqual(['promoted']);
    // Three minutes of workflow time went by (in far less real time: the test server skipped it).
    expect(elapsedMinutes(status)).toBeGreaterThanOrEqual(3);
  });

  it('rolls back at the first analysis that sees a breach, and goes no further', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = () => {
      // Healthy for step 1; at step 2 the candidate starts failing one request in five.
      const step = deploy.named('setServing').length;
      return step < 2 ? healthy() : { versions: { '1': window(1000), '2': window(1000, { errors: 200 }) }, shadow: {} };
    };
    const status = await runRollout(deploy, input());

    expect(status.phase).toBe('rolled-back');
    expect(status.outcome?.reasons.join('; ')).toMatch(/error rate 20\.00 % \(max 1\.00 %\)/);
    expect(status.step).toBe(2);
    expect(deploy.named('setServing')).toHaveLength(2);
    expect(status.decisions.map((d) => `${d.step} ${d.action}`)).toEqual([
      '1 start',
      '1 pass',
      '2 start',
      '2 breach',
      '2 rollback',
    ]);
    expect(deploy.named('conclude').map((i) => i.request.outcome)).toEqual(['rolled-back']);
    // The breach was seen at step 2's first analysis: 1 minute + 20 seconds in.
    expect(elapsedMinutes(status)).toBeCloseTo(80 / 60, 1);
  });

  it('extends a bake with too little traffic, and rolls back when the extensions run out', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = () => ({ versions: { '1': window(1000), '2': window(10, { labelled: 0 }) }, shadow: {} });
    const status = await runRollout(deploy, input({ maxExtensions: 2 }));

    expect(status.phase).toBe('rolled-back');
    expect(status.extensions).toBe(2);
    expect(status.decisions.map((d) => d.action)).toEqual(['start', 'extend', 'extend', 'breach', 'rollback']);
    expect(status.outcome?.reasons[0]).toMatch(/too little traffic to judge step 1 after 2 extension\(s\)/);
  });

  it('rolls back in the shadow phase when the copies disagree too often, before the candidate answers', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = () => ({
      versions: { '1': window(1000) },
      shadow: { '2': { agree: 300, disagree: 700, error: 0 } },
    });
    const status = await runRollout(deploy, input({ shadow: { percent: 100, bake: '2m' } }));

    expect(status.phase).toBe('rolled-back');
    expect(status.step).toBeNull();
    expect(status.decisions.map((d) => `${d.phase} ${d.action}`)).toEqual([
      'shadow start',
      'shadow breach',
      'final rollback',
    ]);
    expect(status.outcome?.reasons.join('; ')).toMatch(/shadow disagreement/);
    // The candidate only ever received copies: the one layout sent keeps the champion answering everything.
    expect(deploy.named('setServing').map((i) => i.request.layout)).toEqual([
      expect.objectContaining({ split: [{ version: 1, weight: 100 }], shadow: { version: 2, percent: 100 } }),
    ]);
  });

  it('promotes the first version at once: nothing to compare against', async () => {
    const deploy = new FakeDeploy();
    const status = await runRollout(deploy, input({}, null));
    expect(status.phase).toBe('promoted');
    expect(status.outcome?.reasons[0]).toMatch(/no champion to compare against/);
    expect(deploy.named('measureServing')).toHaveLength(0);
  });

  it('waits at the approval gate: rolls back when nobody approves within the timeout', async () => {
    const deploy = healthyDeploy();
    const status = await runRollout(deploy, input({ approval: { timeout: '1h', onTimeout: 'rollback' } }));

    expect(status.phase).toBe('rolled-back');
    expect(status.outcome?.reasons).toEqual(['not approved within 1h']);
    expect(status.decisions.slice(-3).map((d) => `${d.phase} ${d.action}`)).toEqual([
      'approval start',
      'approval timeout',
      'final rollback',
    ]);
    expect(elapsedMinutes(status)).toBeGreaterThanOrEqual(63);
  });

  it('takes the spec’s default action "promote" when the approval times out', async () => {
    const deploy = healthyDeploy();
    const status = await runRollout(deploy, input({ approval: { timeout: '30m', onTimeout: 'promote' } }));
    expect(status.phase).toBe('promoted');
    expect(status.outcome?.reasons).toEqual(['all 3 steps passed']);
  });

  it('promotes as soon as it is approved at the gate, and rolls back at once by hand', async () => {
    const deploy = healthyDeploy();
    const taskQueue = uniqueName('rollout');
    await withWorker(env(), taskQueue, deploy.activities, async () => {
      const approval = await env().client.workflow.start(rolloutWorkflow, {
        taskQueue,
        workflowId: uniqueName('rollout-approval'),
        args: [input({ approval: { timeout: '1h', onTimeout: 'rollback' } })],
      });
      // Three one-minute steps, then the gate: skip past them, well inside the hour.
      await env().sleep('4m');
      expect((await approval.query(rolloutStatusQuery)).phase).toBe('awaiting-approval');
      const approved = await approval.executeUpdate(approveRolloutUpdate, { args: [{ reason: 'looks good' }] });
      expect(approved.phase).toBe('promoted');
      expect(approved.outcome?.reasons).toEqual(['all 3 steps passed, approved']);
      expect(elapsedMinutes(approved)).toBeLessThan(60);

      const manual = await env().client.workflow.start(rolloutWorkflow, {
        taskQueue,
        workflowId: uniqueName('rollout-manual'),
        args: [input()],
      });
      await env().sleep('70s');
      expect((await manual.query(rolloutStatusQuery)).step).toBe(2);
      const rolledBack = await manual.executeUpdate(rollbackRolloutUpdate, { args: [{ reason: 'on call said so' }] });
      expect(rolledBack.phase).toBe('rolled-back');
      expect(rolledBack.outcome?.reasons).toEqual(['rolled back by hand: on call said so']);
    });
    expect(deploy.named('conclude').map((i) => i.request.outcome)).toEqual(['promoted', 'rolled-back']);
  });
});
