import { spawn } from 'node:child_process';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, expect, inject, it } from 'vitest';
import { FileArtifactStore } from '../artifacts/store';
import { startRun } from '../cli/runs';
import { connectClient } from '../control/connect';
import { StackStatusSchema, stackStatusFile, type StackStatus } from '../control/dev-stack';
import { isProcessAlive } from '../control/embedded-temporal';
import { gantryHome } from '../control/home';
import { freePort } from '../control/ports';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { completedRun, progressQuery } from '../workflows/api';
import { sliceSpec } from './helpers/specs';
import { killProcess, waitFor } from './helpers/workers';

/**
 * A real `gantry dev` stack with one run in flight, and each of its children SIGKILLed in turn: the
 * train worker, the control worker, the model server and the Temporal server. The stack starts
 * each again; the run completes, is published, and no epoch is trained twice: the attempt that
 * finished resumed from the last checkpoint. Children are found by the stack's own bookkeeping
 * (GANTRY_HOME/dev-stack.json), never by name.
 */

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

it('gantry dev restarts every child it started when killed, and the run in flight completes once', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'gantry-chaos-'));
  const home = gantryHome({ GANTRY_HOME: root });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GANTRY_HOME: root,
    GANTRY_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
  };
  for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'GANTRY_SERVERS', 'GANTRY_TASK_QUEUE_PREFIX'])
    delete env[name];
  delete process.env.GANTRY_TASK_QUEUE_PREFIX;
  const dev = spawn(
    path.join(PROJECT_ROOT, 'bin', 'gantry'),
    ['dev', '--port', String(await freePort()), '--headless'],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  dev.stdout.on('data', (c: Buffer) => (output += c.toString()));
  dev.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const devExited = new Promise<number | null>((resolve) => dev.once('exit', (code) => resolve(code)));
  cleanups.push(() => killProcess(dev, 'SIGINT'));

  const status = async (): Promise<StackStatus> =>
    StackStatusSchema.parse(JSON.parse(await readFile(stackStatusFile(home), 'utf8')));
  await waitFor('gantry dev to come up', async () => (output.includes('task queues') ? true : undefined), 120_000);
  const first = await status();
  expect(first.pid).toBe(dev.pid);
  const { client, connection } = await connectClient({ address: first.temporal!.address, namespace: 'default' });
  cleanups.push(() => connection.close());

  // Six epochs of ~45 steps, slowed so that each lasts a few seconds; a lost trainer is noticed after 4 s.
  const spec = sliceSpec({
    data: { limits: { train: 6000, test: 1000 } },
    train: { epochs: 6, stepDelayMs: 40, heartbeatTimeout: '4s' },
  });
  const handle = await startRun(client, spec);
  const progress = (client: Client) => client.workflow.getHandle(handle.workflowId).query(progressQuery);
  /** Waits until training is at `epoch` (or later) and a few steps into it, so a kill lands mid-epoch. */
  const trainingAt = (epoch: number) =>
    waitFor(
      `training to be inside epoch ${epoch}`,
      async () => {
        const train = (await progress(client)).train;
        return train && (train.epoch > epoch || (train.epoch === epoch && train.step >= 5)) ? train : undefined;
      },
      150_000,
      100,
    );
  const killed: Record<string, number> = {};
  /** SIGKILLs a child and waits until the stack has started a new one (a new pid in its bookkeeping). */
  const killAndAwaitRestart = async (name: string, pidOf: (s: StackStatus) => number | null | undefined) => {
    const pid = pidOf(await status())!;
    expect(isProcessAlive(pid)).toBe(true);
    process.kill(pid, 'SIGKILL');
    killed[name] = pid;
    return waitFor(
      `the stack to start ${name} again`,
      async () => {
        const again = pidOf(await status());
        return again && again !== pid ? again : undefined;
      },
      60_000,
      200,
    );
  };
  const worker = (pool: string) => (s: StackStatus) => s.workers.find((w) => w.pool === pool)?.pid;

  await trainingAt(2);
  await killAndAwaitRestart('the train worker', worker('train'));
  await killAndAwaitRestart('the control worker', worker('control'));
  // The train activity is retried on the new worker once its heartbeat times out, from epoch 1's checkpoint.
  await trainingAt(3);
  const modelServer = first.modelServer!;
  await killAndAwaitRestart('the model server', (s) => s.modelServer?.pid);
  // Same URL (the control worker's servers.json still holds), and it answers again.
  expect((await status()).modelServer!.url).toBe(modelServer.url);
  expect((await fetch(`${modelServer.url}/readyz`)).status).toBe(200);
  await trainingAt(4);
  await killAndAwaitRestart('the Temporal server', (s) => s.temporal?.pid);
  expect((await status()).temporal!.address).toBe(first.temporal!.address);

  // The test's own connection comes back too: wait for the run to end, across the outage.
  const description = await waitFor(
    'the run to end',
    async () => {
      const { status } = await handle.describe();
      return status.name === 'RUNNING' ? undefined : status.name;
    },
    240_000,
    500,
  );
  expect(description).toBe('COMPLETED');
  const result = completedRun(await handle.result());
  expect(result.published).toBe(true);
  expect(result.train.history.map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(result.train.attempt).toBeGreaterThan(1);

  // Each epoch's checkpoint says which attempt trained it: attempts only go up, and the attempt that
  // finished began right after the last checkpoint of the ones before it — nothing trained twice.
  const store = new FileArtifactStore(home.artifactsDir);
  const attempts: number[] = [];
  for (let epoch = 1; epoch <= 6; epoch++) {
    const file = `runs/${handle.workflowId}/checkpoints/epoch-${String(epoch).padStart(4, '0')}/checkpoint.json`;
    attempts.push(JSON.parse((await store.get(store.uri(file))).toString()).attempt);
  }
  expect(attempts).toEqual([...attempts].sort((a, b) => a - b));
  expect(attempts.at(-1)).toBe(result.train.attempt);
  const lastBefore = attempts.filter((a) => a < result.train.attempt).length;
  expect(result.train.resumedFromEpoch).toBe(lastBefore);
  expect(lastBefore).toBeGreaterThanOrEqual(1);

  // The published model is on the restarted model server.
  const servedModel = await fetch(`${modelServer.url}/v1/models/${spec.model.name}`);
  expect(servedModel.status).toBe(200);
  // gantry dev said what it restarted, and why.
  for (const what of ['the train worker', 'the control worker', 'the model server', 'the Temporal server']) {
    expect(output).toMatch(new RegExp(`${what} exited \\(code null, signal SIGKILL\\); starting it again`));
    expect(output).toMatch(new RegExp(`${what} is running again \\(pid \\d+`));
  }

  // Ctrl-C still stops everything: every child, first and restarted, is gone.
  const last = await status();
  dev.kill('SIGINT');
  expect(await devExited).toBe(0);
  const pids = [
    ...Object.values(killed),
    last.temporal!.pid!,
    last.modelServer!.pid!,
    ...last.workers.map((w) => w.pid!),
  ];
  for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid}`).toBe(false);
  await expect(stat(stackStatusFile(home))).rejects.toThrow(/ENOENT/);
}, 420_000);
