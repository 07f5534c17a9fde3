import { afterAll, beforeAll, expect, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { startRun } from '../cli/runs';
import { completedRun, progressQuery } from '../workflows/api';
import { createTestEnv, type TestEnv } from './helpers/env';
import { sliceSpec } from './helpers/specs';
import { killProcess, spawnWorkerProcess, startInProcessWorkers, waitFor } from './helpers/workers';

let env: TestEnv;
let control: Awaited<ReturnType<typeof startInProcessWorkers>>;
const children: ReturnType<typeof spawnWorkerProcess>[] = [];

beforeAll(async () => {
  env = await createTestEnv('crash');
  control = await startInProcessWorkers(env, ['control']);
});
afterAll(async () => {
  for (const { child } of children) await killProcess(child);
  await control?.stop();
});

it('a train worker killed mid-epoch is replaced and the run resumes from the last checkpoint', async () => {
  // Three epochs of ~45 steps, slowed so that an epoch lasts a few seconds; a lost trainer is
  // noticed after 3 s without a heartbeat.
  const spec = sliceSpec({
    data: { limits: { train: 6000, test: 1000 } },
    train: { epochs: 3, stepDelayMs: 40, heartbeatTimeout: '3s' },
  });
  const first = spawnWorkerProcess(env, 'train');
  children.push(first);
  const handle = await startRun(control.client, spec);

  // Wait until epoch 1 is checkpointed and epoch 2 is under way, then kill the trainer outright.
  const atKill = await waitFor(
    'the trainer to be inside epoch 2',
    async () => {
      const train = (await handle.query(progressQuery)).train;
      return train && train.epoch === 2 && train.step >= 5 && train.step < train.stepsPerEpoch - 5 ? train : undefined;
    },
    120_000,
    100,
  );
  await killProcess(first.child, 'SIGKILL');
  expect(first.child.signalCode).toBe('SIGKILL');

  const second = spawnWorkerProcess(env, 'train');
  children.push(second);
  const result = completedRun(await handle.result());

  expect(result.train.attempt).toBe(2);
  expect(result.train.resumedFromEpoch).toBe(1);
  // The history holds each epoch once: epoch 1 from the checkpoint, epochs 2-3 from attempt 2.
  expect(result.train.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
  expect(result.published).toBe(true);
  expect(atKill.attempt).toBe(1);

  // The progress the workflow saw after the restart came from attempt 2, which resumed.
  const progress = (await handle.query(progressQuery)).train!;
  expect(progress).toMatchObject({ attempt: 2, resumedFromEpoch: 1, epoch: 3 });

  // Checkpoints of all three epochs are in the store; the one written after the restart says so.
  const store = new FileArtifactStore(env.home.artifactsDir);
  expect(await store.list(`runs/${handle.workflowId}/checkpoints`)).toEqual([
    'epoch-0001',
    'epoch-0002',
    'epoch-0003',
    'latest.json',
  ]);
  const epoch1 = JSON.parse(
    (await store.get(store.uri(`runs/${handle.workflowId}/checkpoints/epoch-0001/checkpoint.json`))).toString(),
  );
  const epoch3 = JSON.parse(
    (await store.get(store.uri(`runs/${handle.workflowId}/checkpoints/epoch-0003/checkpoint.json`))).toString(),
  );
  expect(epoch1.attempt).toBe(1);
  expect(epoch3.attempt).toBe(2);
});
