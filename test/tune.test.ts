import { afterAll, beforeAll, expect, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { readRegistry } from '../control/registry';
import { taskQueueOf } from '../control/task-queues';
import { retrainInput } from '../cli/runs';
import { completedRun } from '../workflows/api';
import type { tuneWorkflow } from '../workflows/tune';
import {
  studyStatusQuery,
  trialRunId,
  TUNE_WORKFLOW_TYPE,
  type StudyStatus,
  type TrialStatus,
} from '../workflows/tune-api';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { killProcess, spawnWorkerProcess, startInProcessWorkers, waitFor } from './helpers/workers';

// A real study on real Temporal: ASHA over 4 trials of an MLP on 1,000 Fashion-MNIST images, 2 at a time on one
// train worker process with two slots, which is killed while a promoted trial trains on from its checkpoint.

let env: TestEnv;
let control: Awaited<ReturnType<typeof startInProcessWorkers>>;
const children: ReturnType<typeof spawnWorkerProcess>[] = [];
const trainWorker = () => {
  const worker = spawnWorkerProcess({ ...env, env: { ...env.env, GANTRY_TRAIN_SLOTS: '2' } }, 'train');
  children.push(worker);
  return worker;
};

beforeAll(async () => {
  env = await createTestEnv('tune');
  control = await startInProcessWorkers(env, ['control']);
});
afterAll(async () => {
  for (const { child } of children) await killProcess(child);
  await control?.stop();
});

it('a study survives a killed train worker: finished trials kept, the best registered with its study', async () => {
  const spec = sliceSpec({
    data: { limits: { train: 1000, test: 500 } },
    // ~8 steps an epoch, slowed so that an epoch lasts over two seconds; a lost trainer is noticed in 5 s (a loaded
    // machine can take 3 s to start a trainer before its first heartbeat: such retries are no failure here).
    train: { epochs: 4, stepDelayMs: 250, heartbeatTimeout: '5s', maxAttempts: 10, learningRateSchedule: 'constant' },
    model: { options: { hiddenUnits: [64] } },
    deployment: { rollout: { enabled: false } },
    tuning: {
      space: { 'train.learningRate': { logUniform: [3e-4, 3e-2] }, 'model.options.dropout': { uniform: [0, 0.4] } },
      objective: { metric: 'accuracy' },
      budget: { trials: 4 },
      parallelism: 2,
      algorithm: 'asha',
      // Rungs at 1, 2 and 4 epochs.
      asha: { minEpochs: 1, reductionFactor: 2 },
    },
  });
  let worker = trainWorker();
  const studyId = `tune-test-${Date.now()}`;
  const handle = await control.client.workflow.start<typeof tuneWorkflow>(TUNE_WORKFLOW_TYPE, {
    workflowId: studyId,
    taskQueue: taskQueueOf('control'),
    args: [retrainInput(spec)],
  });

  // Kill the trainer while a promoted trial trains on from its first rung's checkpoint.
  const atKill = await waitFor(
    'a promoted trial to be training',
    async () => {
      const status = await handle.query(studyStatusQuery);
      if (status.status !== 'running' && status.status !== 'ingesting') throw new Error(`study ${status.status}`);
      const promoted = status.trials.find((t) => t.state === 'running' && t.trainings >= 2 && t.progress);
      return promoted ? status : undefined;
    },
    150_000,
    100,
  );
  await killProcess(worker.child, 'SIGKILL');
  worker = trainWorker();
  const result = await handle.result();
  if (process.env.GANTRY_TEST_VERBOSE) console.log(JSON.stringify({ atKill, result }, null, 1));

  // Every trial finished or was stopped early by ASHA; none failed.
  expect(result.status).toBe('completed');
  expect(result.trials).toHaveLength(4);
  const byTrial = new Map(result.trials.map((t) => [t.trial, t]));
  expect(result.trials.filter((t) => t.state === 'completed').length).toBeGreaterThanOrEqual(1);
  for (const t of result.trials) {
    expect(['completed', 'stopped']).toContain(t.state);
    expect(t.values).toHaveLength(t.epochs);
    if (t.state === 'stopped') expect(t.stoppedReason).toMatch(/ranked \d of \d/);
  }

  // Trials that had finished a rung when the trainer died kept it: the same values, and they trained once per rung.
  const rungsReached = (t: TrialStatus) => [1, 2, 4].filter((epochs) => t.epochs >= epochs).length;
  const finishedAtKill = atKill.trials.filter((t) => t.state === 'waiting' || t.state === 'completed');
  expect(finishedAtKill.length).toBeGreaterThanOrEqual(1);
  for (const before of finishedAtKill) {
    const after = byTrial.get(before.trial)!;
    expect(after.values.slice(0, before.epochs)).toEqual(before.values);
  }
  for (const t of result.trials) expect(t.trainings).toBe(rungsReached(t));
  // The killed trainer's trials were retried (an attempt more), from their checkpoints: no epoch trained twice.
  const killed = atKill.trials.filter((t) => t.state === 'running').map((t) => byTrial.get(t.trial)!);
  expect(killed.some((t) => t.attempts > t.trainings)).toBe(true);
  // A trial that had finished its rung and trained no more after the kill was never trained again.
  for (const before of finishedAtKill) {
    const after = byTrial.get(before.trial)!;
    if (after.trainings === before.trainings) expect(after.attempts).toBe(before.attempts);
  }

  // The history agrees: one train activity scheduled per rung of each trial, however many attempts.
  const history = await handle.fetchHistory();
  const scheduled = history.events!.filter(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'train',
  );
  expect(scheduled).toHaveLength(result.trials.reduce((sum, t) => sum + t.trainings, 0));

  // Each trial's checkpoints hold each epoch once; the promoted one that was killed wrote its later ones in attempt 2.
  const store = new FileArtifactStore(env.home.artifactsDir);
  for (const t of result.trials) {
    const folders = (await store.list(`runs/${trialRunId(studyId, t.trial)}/checkpoints`)).filter((f) =>
      f.startsWith('epoch-'),
    );
    expect(folders).toEqual(Array.from({ length: t.epochs }, (_, i) => `epoch-${String(i + 1).padStart(4, '0')}`));
  }

  // The best trial is the one with the best last validation accuracy; its model was evaluated and registered,
  // and the version's lineage names the study, the trial and its params.
  const best = result.trials.reduce((a, b) => ((b.metric ?? -1) > (a.metric ?? -1) ? b : a));
  expect(result.best.trial).toBe(best.trial);
  const run = completedRun(result.run);
  expect(run.version).toBe(result.version);
  expect(run.train.history).toHaveLength(best.epochs);
  const registry = await readRegistry(control.client, spec.model.name);
  const version = registry!.versions.find((v) => v.version === run.version)!;
  expect(version.lineage.study).toMatchObject({
    studyId,
    trial: best.trial,
    params: best.params,
    objective: { metric: 'accuracy', goal: 'max' },
    trials: 4,
  });
  expect((version.lineage.spec as { train: { learningRate: number } }).train.learningRate).toBe(
    best.params['train.learningRate'],
  );
  expect((version.lineage.spec as { tuning?: unknown }).tuning).toBeUndefined();

  // `tune status`'s query answers the same trials after the study ended.
  const status: StudyStatus = await handle.query(studyStatusQuery);
  expect(status.trials.map((t) => t.state)).toEqual(result.trials.map((t) => t.state));
}, 420_000);
