import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../control/embedded-temporal';
import type { GantryHome } from '../control/home';
import type { Pool } from '../control/task-queues';
import { temporalTargetFromEnv, type TemporalTarget } from '../control/temporal-env';

const WORKERS_DIR = fileURLToPath(new URL('../workers/', import.meta.url));

export interface StackWorker {
  pool: Pool;
  child: ChildProcess;
  logFile: string;
}

export interface LocalStack {
  target: TemporalTarget;
  server: EmbeddedTemporal | null;
  /** The control worker first, then the train workers. */
  workers: StackWorker[];
  stop(): Promise<void>;
}

/**
 * The embedded defaults in one call: a Temporal server (unless TEMPORAL_ADDRESS names one), one
 * control worker and `trainWorkers` train workers (one slot each: a data-parallel job of N
 * replicas needs N), each a child process with its log in GANTRY_HOME/logs.
 */
export async function startLocalStack(home: GantryHome, options: { port?: number | 'auto' | 'free'; headless?: boolean; trainWorkers?: number } = {}): Promise<LocalStack> {
  const external = temporalTargetFromEnv();
  const server = external ? null : await startEmbeddedTemporal(home, options);
  const target: TemporalTarget = external ?? { address: server!.address, namespace: server!.namespace };
  await mkdir(home.logsDir, { recursive: true });
  const env = { ...process.env, GANTRY_HOME: home.root, TEMPORAL_ADDRESS: target.address, TEMPORAL_NAMESPACE: target.namespace };
  const trainWorkers = options.trainWorkers ?? 1;
  // Several train workers on one host split its cores (one "device" each) unless told otherwise.
  const threadsPerTrainer = trainWorkers > 1 && !process.env.GANTRY_TRAIN_THREADS ? String(Math.max(1, Math.floor(os.availableParallelism() / trainWorkers))) : undefined;
  const spawnWorker = (pool: Pool, index = 0): StackWorker => {
    const logFile = path.join(home.logsDir, `worker-${pool}${index ? `-${index + 1}` : ''}.log`);
    const log = createWriteStream(logFile, { flags: 'a' });
    const workerEnv = pool === 'train' && threadsPerTrainer ? { ...env, GANTRY_TRAIN_THREADS: threadsPerTrainer } : env;
    const child = spawn(process.execPath, [...process.execArgv, path.join(WORKERS_DIR, `${pool}.ts`)], { env: workerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    return { pool, child, logFile };
  };
  const workers = [spawnWorker('control'), ...Array.from({ length: trainWorkers }, (_, i) => spawnWorker('train', i))];
  let stopping: Promise<void> | undefined;
  return {
    target,
    server,
    workers,
    stop() {
      stopping ??= (async () => {
        await Promise.all(workers.map((w) => stopChild(w.child)));
        await server?.stop();
      })();
      return stopping;
    },
  };
}

/** SIGTERM lets a worker drain its tasks; SIGKILL after a grace period keeps Ctrl-C from hanging. */
async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
