import { describe, expect, it } from 'vitest';
import { experimentStatusQuery, stopExperimentUpdate, type ExperimentInput } from '../../workflows/api';
import { experimentWorkflow } from '../../workflows/experiment';
import { FakeDeploy, runWithFakeDeploy, uniqueName, useTimeSkipping, window, withWorker } from './time-skipping';

/**
 * The experiment's decision on the time-skipping server, with the deploy activities faked: the
 * arms' feedback is scripted, so an hour-long experiment is decided by its test in seconds.
 */

const env = useTimeSkipping();

const input = (extra: Partial<ExperimentInput> = {}): ExperimentInput => ({
  model: 'boots',
  arms: [
    { version: 1, weight: 50 },
    { version: 2, weight: 50 },
  ],
  duration: '1h',
  championAlias: 'champion',
  champion: 1,
  alpha: 0.05,
  minFeedback: 100,
  analysisInterval: '5m',
  ...extra,
});

/** Each arm's accuracy over 400 labelled predictions. */
const arms =
  (one: number, two: number, labelled = 400) =>
  () => ({
    versions: { '1': window(1000, { accuracy: one, labelled }), '2': window(1000, { accuracy: two, labelled }) },
    shadow: {},
  });

const runExperiment = (deploy: FakeDeploy, experimentInput: ExperimentInput) =>
  runWithFakeDeploy(env(), experimentWorkflow, deploy, experimentInput);

describe('experiment workflow (time-skipping)', () => {
  it('splits the traffic over the arms for its whole duration, names the better arm, then hands back', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = arms(0.7, 0.85);
    const status = await runExperiment(deploy, input());

    expect(status.phase).toBe('finished');
    expect(status.verdict?.winner).toBe(2);
    expect(status.verdict?.summary).toMatch(/^v2 wins: v1 70\.0 % of 400 vs v2 85\.0 % of 400/);
    expect(status.stoppedEarly).toBe(false);
    expect(Date.parse(status.endsAt!) - Date.parse(status.startedAt!)).toBe(3_600_000);
    // The arms' split, read every 5 minutes of the hour (plus the starting snapshot), then the champion again.
    expect(deploy.named('setServing')[0].request.layout.split).toEqual([
      { version: 1, weight: 50 },
      { version: 2, weight: 50 },
    ]);
    expect(deploy.named('measureServing')).toHaveLength(13);
    expect(deploy.named('releaseTraffic')).toHaveLength(1);
    expect(deploy.events().at(-1)).toMatch(/experiment v1:50 v2:50: v2 wins/);
  });

  it('finds no significant difference between arms a point apart', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = arms(0.8, 0.81);
    const status = await runExperiment(deploy, input());
    expect(status.verdict?.winner).toBeNull();
    expect(status.verdict?.best).toBe(2);
    expect(status.verdict?.summary).toMatch(/^no significant difference/);
  });

  it('names no winner with too little feedback, however large the difference', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = arms(0.1, 0.9, 50);
    const status = await runExperiment(deploy, input());
    expect(status.verdict?.winner).toBeNull();
    expect(status.verdict?.summary).toMatch(/too little feedback \(v1 50, v2 50 of 100/);
  });

  it('stops early on request and decides on the feedback gathered so far', async () => {
    const deploy = new FakeDeploy();
    deploy.measure = arms(0.6, 0.9);
    const taskQueue = uniqueName('experiment');
    const status = await withWorker(env(), taskQueue, deploy.activities, async () => {
      const handle = await env().client.workflow.start(experimentWorkflow, {
        taskQueue,
        workflowId: uniqueName('experiment-stop'),
        args: [input({ duration: '7d' })],
      });
      await env().sleep('12m');
      expect((await handle.query(experimentStatusQuery)).phase).toBe('running');
      return handle.executeUpdate(stopExperimentUpdate, { args: [{ reason: 'enough' }] });
    });
    expect(status.phase).toBe('finished');
    expect(status.stoppedEarly).toBe(true);
    expect(status.verdict?.winner).toBe(2);
    expect(deploy.named('releaseTraffic')).toHaveLength(1);
  });
});
