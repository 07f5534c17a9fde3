import { afterAll, beforeAll, expect, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { startRun } from '../cli/runs';
import { completedRun, jobStateQuery, trainJobWorkflowId } from '../workflows/api';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { killProcess, spawnWorkerProcess, startInProcessWorkers, waitFor } from './helpers/workers';

/**
 * A trainer process of a 2-replica job is killed mid-epoch: the survivor sees its peer's socket
 * close and fails at once, the job workflow stops the attempt and starts another on the trainers
 * still there (three train worker processes: two busy, one spare), which resumes from rank 0's
 * last checkpoint and ends where an undisturbed run ends.
 */
let env: TestEnv;
let control: Awaited<ReturnType<typeof startInProcessWorkers>>;
const trainers: ReturnType<typeof spawnWorkerProcess>[] = [];

beforeAll(async () => {
  env = await createTestEnv('distributed-crash');
  control = await startInProcessWorkers(env, ['control']);
  for (let i = 0; i < 3; i++) trainers.push(spawnWorkerProcess(env, 'train'));
});
afterAll(async () => {
  for (const { child } of trainers) await killProcess(child);
  await control?.stop();
});

const spec = sliceSpec({
  data: { limits: { train: 1200, test: 300 } },
  model: { options: { hiddenUnits: [64], dropout: 0 } },
  // ~19 steps per epoch, slowed so that an epoch lasts a couple of seconds.
  // Rank 0 also checkpoints every 6 steps: the resume starts mid-epoch, at the last of those.
  train: {
    epochs: 3,
    batchSize: 32,
    replicas: 2,
    strategy: 'multi-worker-mirrored',
    learningRate: 0.003,
    stepDelayMs: 100,
    // Long enough that a trainer starting up on a loaded machine (a CI box running other test files) is not taken
    // for dead before the rendezvous; the killed trainer is found by its socket closing, at once, not by this.
    heartbeatTimeout: '8s',
    checkpointEverySteps: 6,
  },
  deployment: { publish: false },
});

it(
  'a killed trainer fails only its attempt: the job resumes from the last checkpoint ' +
    'and ends as an undisturbed run does',
  async () => {
    const undisturbed = completedRun(await (await startRun(control.client, spec)).result());
    expect(undisturbed.train.attempt).toBe(1);

    const handle = await startRun(control.client, spec);
    const job = control.client.workflow.getHandle(trainJobWorkflowId(handle.workflowId));
    const victim = await waitFor(
      'both replicas inside epoch 2',
      async () => {
        const state = await job.query(jobStateQuery);
        const rank1 = state.replicas.find((r) => r.rank === 1);
        return state.phase === 'training' &&
          state.replicas.every(
            (r) => r.progress && r.progress.epoch === 2 && r.progress.step >= 8 && r.progress.step <= 15,
          )
          ? rank1
          : undefined;
      },
      120_000,
      100,
    );
    const pid = Number(victim!.identity.split(':').at(-1));
    const process = trainers.find((t) => t.child.pid === pid);
    expect(process, `replica at ${victim!.identity} is one of the spawned trainers`).toBeDefined();
    await killProcess(process!.child, 'SIGKILL');

    const result = completedRun(await handle.result());
    const state = await job.query(jobStateQuery);
    expect(state.attempt).toBe(2);
    expect(state.attempts).toHaveLength(1);
    expect(state.attempts[0]!.error).toMatch(/rank|connection|closed|heartbeat|timed out/i);
    expect(result.train.attempt).toBe(2);
    expect(result.train.resumedFromEpoch).toBe(1);
    expect(result.train.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(Math.abs(result.testAccuracy - undisturbed.testAccuracy)).toBeLessThanOrEqual(0.01);
    // The mid-epoch checkpoints are there, named by epoch and step.
    const store = new FileArtifactStore(env.home.artifactsDir);
    const checkpoints = await store.list(`runs/${handle.workflowId}/checkpoints`);
    expect(checkpoints).toEqual(expect.arrayContaining(['epoch-0001', 'epoch-0002', 'epoch-0003']));
    expect(checkpoints.filter((c) => /^epoch-0001-step-\d{6}$/.test(c)).length).toBeGreaterThan(0);
  },
);
