import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../control/embedded-temporal';
import type { GantryHome } from '../control/home';
import type { Pool } from '../control/task-queues';
import { temporalTargetFromEnv, type TemporalTarget } from '../control/temporal-env';

const WORKERS_DIR = fileURLToPath(new URL('../workers/', import.meta.url));

export interface LocalStack {
  target: TemporalTarget;
  server: EmbeddedTemporal | null;
  workers: Record<Pool, ChildProcess>;
  logFiles: Record<Pool, string>;
  stop(): Promise<void>;
}

/**
 * The embedded defaults in one call: a Temporal server (unless TEMPORAL_ADDRESS names one), one
 * control worker and one train worker, each a child process with its log in GANTRY_HOME/logs.
 */
export async function startLocalStack(home: GantryHome, options: { port?: number | 'auto' | 'free'; headless?: boolean } = {}): Promise<LocalStack> {
  const external = temporalTargetFromEnv();
  const server = external ? null : await startEmbeddedTemporal(home, options);
  const target: TemporalTarget = external ?? { address: server!.address, namespace: server!.namespace };
  await mkdir(home.logsDir, { recursive: true });
  const env = { ...process.env, GANTRY_HOME: home.root, TEMPORAL_ADDRESS: target.address, TEMPORAL_NAMESPACE: target.namespace };
  const logFiles = { control: path.join(home.logsDir, 'worker-control.log'), train: path.join(home.logsDir, 'worker-train.log') };
  const spawnWorker = (pool: Pool) => {
    const log = createWriteStream(logFiles[pool], { flags: 'a' });
    const child = spawn(process.execPath, [...process.execArgv, path.join(WORKERS_DIR, `${pool}.ts`)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    return child;
  };
  const workers = { control: spawnWorker('control'), train: spawnWorker('train') };
  let stopping: Promise<void> | undefined;
  return {
    target,
    server,
    workers,
    logFiles,
    stop() {
      stopping ??= (async () => {
        await Promise.all(Object.values(workers).map((child) => stopChild(child)));
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
