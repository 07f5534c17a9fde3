import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { bearerOf } from '../serving/feedback-auth';
import { startEmbeddedTemporal, type EmbeddedTemporal } from './embedded-temporal';
import type { GantryHome } from './home';
import { freePort } from './ports';
import { serversFile, servingTargets, type ServerTarget } from './servers';
import { Supervisor, type SupervisorEvents } from './supervisor';
import { temporalTargetFromEnv, type TemporalTarget } from './temporal-env';

const WORKERS_DIR = fileURLToPath(new URL('../workers/', import.meta.url));
// The model server runs as `gantry serve`, the command a user would start, so the stack needs no flags of its own.
const CLI_ENTRY = fileURLToPath(new URL('../cli/main.ts', import.meta.url));

export interface StackWorker {
  /** control, train, or a pool the project's steps name. */
  pool: string;
  /** The running process: a worker that crashes is started again (see StackOptions.onExit). */
  child: ChildProcess;
  logFile: string;
  restarts: number;
}

export type { StackExit } from './supervisor';

export interface StackOptions extends SupervisorEvents {
  port?: number | 'auto' | 'free';
  headless?: boolean;
  trainWorkers?: number;
  /** Pools besides control and train to start one worker each of (those the project's steps name). */
  extraPools?: string[];
}

/**
 * Every child — Temporal, the model server, each worker — is supervised: one that crashes (a
 * native abort in a TensorFlow session, an OOM kill) is started again the same way after a backoff
 * (DEFAULT_BACKOFF), so a run in flight goes on: Temporal keeps its histories in its database, the
 * model server its state in serving-state.json, and a train activity is retried on the new worker
 * once its heartbeat times out, from the last checkpoint. One that keeps dying is given up on
 * (onGiveUp), and the stack's bookkeeping (GANTRY_HOME/dev-stack.json) says every child's pid.
 */
/** The `gantry serve` child the stack runs when GANTRY_SERVERS names no servers of the user's. */
export interface StackModelServer {
  /** REST base URL, http://127.0.0.1:PORT */
  url: string;
  restPort: number;
  grpcPort: number;
  /** The admin API's own loopback port (apart from the public REST port) and its base URL. */
  adminPort: number;
  adminUrl: string;
  /** The running process: a new one, on the same ports, after a crash. */
  child: ChildProcess;
  logFile: string;
  /** Where its admin token is kept (GANTRY_HOME/admin-token, mode 0600). */
  adminTokenFile: string;
}

export interface LocalStack {
  target: TemporalTarget;
  server: EmbeddedTemporal | null;
  /** The model server this stack started; null when GANTRY_SERVERS lists the user's own. */
  modelServer: StackModelServer | null;
  /** The model servers the control worker drives: the one started here, or GANTRY_SERVERS'. */
  servers: ServerTarget[];
  /** The control worker first, then the train workers. */
  workers: StackWorker[];
  stop(): Promise<void>;
}

/**
 * The embedded defaults in one call: a Temporal server (unless TEMPORAL_ADDRESS names one), a
 * model server (`gantry serve` on the home's model repository, unless GANTRY_SERVERS names the
 * servers to drive), one control worker and `trainWorkers` train workers (one slot each: a
 * data-parallel job of N replicas needs N), each a child process with its log in GANTRY_HOME/logs.
 * The started model server is listed in GANTRY_HOME/servers.json before the control worker
 * starts (deploy activities and rollouts read it), and the file goes when the stack stops.
 */
export async function startLocalStack(home: GantryHome, options: StackOptions = {}): Promise<LocalStack> {
  const external = temporalTargetFromEnv();
  await mkdir(home.logsDir, { recursive: true });
  const userServers = process.env.GANTRY_SERVERS?.trim() ? servingTargets(home) : null;
  // Temporal and the model server start side by side: neither needs the other.
  const [temporal, modelServer] = await Promise.allSettled([
    external ? Promise.resolve(null) : startEmbeddedTemporal(home, options),
    userServers ? Promise.resolve(null) : startModelServerChild(home),
  ]);
  if (temporal.status === 'rejected' || modelServer.status === 'rejected') {
    if (temporal.status === 'fulfilled') await temporal.value?.stop();
    if (modelServer.status === 'fulfilled' && modelServer.value) await stopChild(modelServer.value.modelServer.child);
    throw temporal.status === 'rejected' ? temporal.reason : (modelServer as PromiseRejectedResult).reason;
  }
  const server = temporal.value;
  const served = modelServer.value?.modelServer ?? null;
  const servers: ServerTarget[] = userServers ?? [
    {
      url: served!.url,
      adminUrl: served!.adminUrl,
      adminToken: modelServer.value!.adminToken,
      feedbackToken: modelServer.value!.feedbackToken,
    },
  ];
  if (served) {
    try {
      await writePrivateFile(serversFile(home), `${JSON.stringify({ servers }, null, 2)}\n`);
    } catch (error) {
      await stopChild(served.child);
      await server?.stop();
      throw error;
    }
  }
  const target: TemporalTarget = external ?? { address: server!.address, namespace: server!.namespace };
  const env = {
    ...process.env,
    GANTRY_HOME: home.root,
    TEMPORAL_ADDRESS: target.address,
    TEMPORAL_NAMESPACE: target.namespace,
  };
  const trainWorkers = options.trainWorkers ?? 1;
  // Several train workers on one host split its cores (one "device" each) unless told otherwise.
  const threadsPerTrainer =
    trainWorkers > 1 && !process.env.GANTRY_TRAIN_THREADS
      ? String(Math.max(1, Math.floor(os.availableParallelism() / trainWorkers)))
      : undefined;
  let stopping: Promise<void> | undefined;
  let writingStatus = Promise.resolve();
  // Rewritten whenever a child is started again, so that a tool (or a test) finds each child by pid.
  const recordStatus = () => {
    writingStatus = writingStatus
      .then(() => (stopping ? undefined : writeStackStatus(home, statusOf())))
      .catch((error) => console.error(`could not write ${stackStatusFile(home)}: ${(error as Error).message}`));
    return writingStatus;
  };
  const events: SupervisorEvents = {
    onExit: options.onExit,
    onRestarted: (what, pid, restarts) => {
      void recordStatus();
      options.onRestarted?.(what, pid, restarts);
    },
    onGiveUp: options.onGiveUp ?? ((what, error) => console.error(error.message)),
  };
  const supervisors: Supervisor[] = [];
  const spawnWorker = (pool: string, index = 0): StackWorker => {
    // control.ts and train.ts set their pool up; any other pool is workers/main.ts's argument.
    const script =
      pool === 'control' || pool === 'train'
        ? [path.join(WORKERS_DIR, `${pool}.ts`)]
        : [path.join(WORKERS_DIR, 'main.ts'), pool];
    const logFile = path.join(home.logsDir, `worker-${pool}${index ? `-${index + 1}` : ''}.log`);
    const workerEnv = pool === 'train' && threadsPerTrainer ? { ...env, GANTRY_TRAIN_THREADS: threadsPerTrainer } : env;
    const start = () => {
      const log = createWriteStream(logFile, { flags: 'a' });
      const child = spawn(process.execPath, [...process.execArgv, ...script], {
        env: workerEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout!.pipe(log, { end: false });
      child.stderr!.pipe(log, { end: false });
      child.once('close', () => log.end());
      return child;
    };
    const what = `the ${pool} worker${index ? ` ${index + 1}` : ''}`;
    const worker: StackWorker = { pool, child: start(), logFile, restarts: 0 };
    const supervisor = new Supervisor(
      what,
      logFile,
      worker.child,
      async () => start(),
      {
        ...events,
        onRestarted: (w, pid, restarts) => {
          worker.child = supervisor.child;
          worker.restarts = restarts;
          events.onRestarted?.(w, pid, restarts);
        },
      },
      (child) => stopChild(child),
    );
    supervisors.push(supervisor);
    return worker;
  };
  // Temporal and the model server are supervised before the workers start: a death from now on is restarted.
  const temporalSupervisor = server
    ? new Supervisor(
        'the Temporal server',
        server.logFile,
        server.child,
        () => server.restart(),
        events,
        // Its own stop: SIGTERM lets it flush SQLite, and its record in GANTRY_HOME goes.
        () => server.stop(),
      )
    : undefined;
  const modelServerSupervisor = served
    ? new Supervisor(
        'the model server',
        served.logFile,
        served.child,
        async () => {
          const again = await startModelServerChild(home, {
            restPort: served.restPort,
            grpcPort: served.grpcPort,
            adminPort: served.adminPort,
          });
          served.child = again.modelServer.child;
          return again.modelServer.child;
        },
        events,
        (child) => stopChild(child),
      )
    : undefined;
  const workers = [
    spawnWorker('control'),
    ...Array.from({ length: trainWorkers }, (_, i) => spawnWorker('train', i)),
    ...(options.extraPools ?? []).map((pool) => spawnWorker(pool)),
  ];
  const statusOf = (): StackStatus => ({
    pid: process.pid,
    temporal: server
      ? { pid: server.child.pid ?? null, address: server.address, restarts: temporalSupervisor!.restarts }
      : null,
    modelServer: served
      ? { pid: served.child.pid ?? null, url: served.url, restarts: modelServerSupervisor!.restarts }
      : null,
    workers: workers.map((w) => ({ pool: w.pool, pid: w.child.pid ?? null, restarts: w.restarts })),
  });
  await recordStatus();
  return {
    target,
    server,
    modelServer: served,
    servers,
    workers,
    stop() {
      // Workers first (they drive the server and talk to Temporal), then the server, then Temporal.
      stopping ??= (async () => {
        // Children told to stop (or hit by the same Ctrl-C) must not be started again meanwhile.
        for (const s of [...supervisors, modelServerSupervisor, temporalSupervisor]) s?.halt();
        await writingStatus;
        await rm(stackStatusFile(home), { force: true });
        await Promise.all(supervisors.map((s) => s.stop()));
        if (served) {
          await rm(serversFile(home), { force: true });
          await modelServerSupervisor!.stop();
        }
        await temporalSupervisor?.stop();
      })();
      return stopping;
    },
  };
}

/** GANTRY_HOME/dev-stack.json: the children of a running `gantry dev` (or `make demo`), by pid. */
export const StackStatusSchema = z.object({
  pid: z.number().int(),
  temporal: z.object({ pid: z.number().int().nullable(), address: z.string(), restarts: z.number().int() }).nullable(),
  modelServer: z.object({ pid: z.number().int().nullable(), url: z.string(), restarts: z.number().int() }).nullable(),
  workers: z.array(z.object({ pool: z.string(), pid: z.number().int().nullable(), restarts: z.number().int() })),
});
export type StackStatus = z.infer<typeof StackStatusSchema>;

export function stackStatusFile(home: GantryHome): string {
  return path.join(home.root, 'dev-stack.json');
}

async function writeStackStatus(home: GantryHome, status: StackStatus): Promise<void> {
  await writePrivateFile(stackStatusFile(home), `${JSON.stringify(status, null, 2)}\n`);
}

/** The admin token of the home's model server: made once, kept in GANTRY_HOME/admin-token (0600). */
async function adminTokenOf(home: GantryHome): Promise<{ token: string; file: string }> {
  return privateTokenOf(path.join(home.root, 'admin-token'), '');
}

/**
 * The feedback token of the home's model server: made once, kept in GANTRY_HOME/feedback-token (0600) as
 * the token file line `local:TOKEN` (its name labels the feedback in the metrics); `token` is what a
 * client sends. servers.json hands it to `gantry load --feedback` and the rollouts' own clients.
 */
async function feedbackTokenOf(home: GantryHome): Promise<{ token: string; file: string }> {
  const { token, file } = await privateTokenOf(path.join(home.root, 'feedback-token'), 'local:');
  return { token: bearerOf(token), file };
}

/** A secret file's content (trimmed), made as `prefix` + 32 random bytes when missing; kept at mode 0600. */
async function privateTokenOf(file: string, prefix: string): Promise<{ token: string; file: string }> {
  try {
    const token = (await readFile(file, 'utf8')).trim();
    if (token) {
      await chmod(file, 0o600);
      return { token, file };
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const token = `${prefix}${randomBytes(32).toString('base64url')}`;
  await writePrivateFile(file, `${token}\n`);
  return { token, file };
}

/** Temp file (mode 0600) + rename: readers see the old file or the whole new one, and only its owner may. */
async function writePrivateFile(target: string, text: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const temporary = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(temporary, text, { mode: 0o600 });
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/**
 * `gantry serve` as a child process on free loopback ports, serving the home's model repository
 * with its admin API on; resolves once /readyz says the first load is done (or, if a version
 * cannot load, once /healthz has answered for a while), and fails with the end of its output if
 * it exits first. A port taken between choosing and binding it: a few tries, unless `ports` fixes
 * them (a restart: the control worker and clients know the server by its URL).
 */
async function startModelServerChild(
  home: GantryHome,
  ports?: { restPort: number; grpcPort: number; adminPort: number },
  readyTimeoutMs = 60_000,
): Promise<{ modelServer: StackModelServer; adminToken: string; feedbackToken: string }> {
  const { token, file: adminTokenFile } = await adminTokenOf(home);
  const { token: feedbackToken, file: feedbackTokenFile } = await feedbackTokenOf(home);
  const logFile = path.join(home.logsDir, 'serve.log');
  for (let attempt = 1; ; attempt++) {
    const [restPort, grpcPort, adminPort] = ports
      ? [ports.restPort, ports.grpcPort, ports.adminPort]
      : [await freePort(), await freePort(), await freePort()];
    const args = [
      ...process.execArgv,
      CLI_ENTRY,
      'serve',
      '--host',
      '127.0.0.1',
      '--rest-port',
      String(restPort),
      '--grpc-port',
      String(grpcPort),
      '--admin-port',
      String(adminPort),
      '--model-base-path',
      home.modelRepositoryDir,
      '--state-file',
      path.join(home.root, 'serving-state.json'),
      '--admin-token-file',
      adminTokenFile,
      '--feedback-token-file',
      feedbackTokenFile,
    ];
    const log = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(process.execPath, args, {
      env: { ...process.env, GANTRY_HOME: home.root },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Two pipes feed one log, so neither may end it; the child's 'close' (both drained) does.
    let output = '';
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.pipe(log, { end: false });
      stream.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    }
    const closed = new Promise<void>((resolve) => child.once('close', () => log.end(resolve)));
    let exited: string | undefined;
    child.once('exit', (code, signal) => (exited = `code ${code}, signal ${signal}`));
    const modelServer: StackModelServer = {
      url: `http://127.0.0.1:${restPort}`,
      restPort,
      grpcPort,
      adminPort,
      adminUrl: `http://127.0.0.1:${adminPort}`,
      child,
      logFile,
      adminTokenFile,
    };
    const deadline = Date.now() + readyTimeoutMs;
    let answeringSince: number | undefined;
    while (exited === undefined) {
      const status = await fetch(`${modelServer.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status,
        () => undefined,
      );
      if (status === 200) return { modelServer, adminToken: token, feedbackToken };
      if (status !== undefined) answeringSince ??= Date.now();
      // Up but not ready: a version that cannot load keeps /readyz at 503 for good. That is the
      // server's to report (GET /v1/models/<name>), not a reason to refuse to start the stack.
      if (answeringSince !== undefined && Date.now() - answeringSince > 20_000)
        return { modelServer, adminToken: token, feedbackToken };
      if (Date.now() > deadline) {
        await stopChild(child, 2000);
        throw new Error(
          `gantry serve did not answer on ${modelServer.url} within ${readyTimeoutMs} ms; see ${logFile}`,
        );
      }
      await sleep(100);
    }
    await closed;
    if (!ports && attempt < 3 && /EADDRINUSE/.test(output)) continue;
    const tail = output.split('\n').slice(-15).join('\n');
    throw new Error(`gantry serve exited during start-up (${exited})\n--- ${logFile} (last lines) ---\n${tail}`);
  }
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
