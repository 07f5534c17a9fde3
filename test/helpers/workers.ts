import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import type { Pool } from '../../control/task-queues';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { createPoolWorker, type PoolWorker } from '../../workers/pool-worker';
import { installQuietRuntime } from './quiet-runtime';
import type { TestEnv } from './env';

export type InProcessWorkers = Awaited<ReturnType<typeof startInProcessWorkers>>;

/** Workers of the given pools inside the test process, plus a client; `stop` shuts all down. */
export async function startInProcessWorkers(env: TestEnv, pools: Pool[]) {
  installQuietRuntime();
  const target = { address: env.address, namespace: 'default' };
  const workers: PoolWorker[] = [];
  for (const pool of pools) workers.push(await createPoolWorker(pool, target, env.home));
  const running = workers.map((w) => w.worker.run());
  const connection = await Connection.connect({ address: env.address });
  const client = new Client({ connection, namespace: 'default' });
  return {
    client,
    async stop() {
      for (const w of workers) if (w.worker.getState() === 'RUNNING') w.worker.shutdown();
      await Promise.allSettled(running);
      await Promise.all(workers.map((w) => w.close()));
      await connection.close();
    },
  };
}

/** A worker as its own OS process (`workers/<pool>.ts`), the way `gantry worker` runs it. */
export function spawnWorkerProcess(env: TestEnv, pool: Pool): { child: ChildProcess; output: () => string } {
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'workers', `${pool}.ts`)], {
    env: env.env,
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

export async function killProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  const cause = lastError ? ` (last error: ${(lastError as Error).message})` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
}
