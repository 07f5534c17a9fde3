import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { z } from 'zod';
import { writeFileAtomically } from '../artifacts/store';
import type { GantryHome } from './home';
import { freePort, isPortFree } from './ports';
import { resolveTemporalBinary, type ResolvedBinary } from './temporal-binary';

/** What a running embedded server leaves in GANTRY_HOME so that other commands can find it. */
export const EmbeddedServerRecordSchema = z.object({
  address: z.string(),
  uiUrl: z.string().nullable(),
  pid: z.number().int(),
  namespace: z.string(),
  binary: z.string(),
  database: z.string(),
  logFile: z.string(),
});
export type EmbeddedServerRecord = z.infer<typeof EmbeddedServerRecordSchema>;

export interface EmbeddedTemporal extends EmbeddedServerRecord {
  binaryOrigin: ResolvedBinary['origin'];
  /** The server process: a new one after restart(). */
  child: ChildProcess;
  /**
   * Starts the server again on the same ports and database (workflow histories are in it, so runs
   * in flight go on); resolves once it answers. For a server that died: call it after 'exit'.
   */
  restart(): Promise<ChildProcess>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** A fixed gRPC port, or 'auto': 7233 when it is free (what Temporal users expect), else any free port. */
  port?: number | 'auto' | 'free';
  headless?: boolean;
  readyTimeoutMs?: number;
}

/** start-dev picks its internal services' ports itself; one taken in between fails its start. */
const FIRST_START_ATTEMPTS = 3;

/**
 * Starts `temporal server start-dev` bound to 127.0.0.1 with its SQLite database in GANTRY_HOME,
 * so workflow histories survive a restart of the server, and waits until it answers. A first start
 * that fails on a port taken meanwhile ("address already in use") is tried again on fresh ports.
 */
export async function startEmbeddedTemporal(home: GantryHome, options: StartOptions = {}): Promise<EmbeddedTemporal> {
  const running = await findRunningEmbeddedTemporal(home);
  if (running) {
    throw new Error(
      `an embedded Temporal server for ${home.root} is already running at ${running.address} (pid ${running.pid}); ` +
        'stop it first, or use it by setting TEMPORAL_ADDRESS',
    );
  }
  const binary = resolveTemporalBinary();
  await mkdir(home.temporalDir, { recursive: true });
  await mkdir(home.logsDir, { recursive: true });
  const logFile = path.join(home.logsDir, 'temporal.log');
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;

  for (let attempt = 1; ; attempt++) {
    const port = await choosePort(options.port ?? 'auto');
    // The Web UI on gRPC port + 1000 as Temporal does by default, or any free port if that is taken.
    const preferredUi = port + 1000;
    const uiPort = options.headless
      ? undefined
      : preferredUi <= 65535 && (await isPortFree(preferredUi))
        ? preferredUi
        : await freePort();
    const args = [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      // Left to itself start-dev picks these at random, but fixing them here keeps every port on loopback.
      '--http-port',
      String(await freePort()),
      '--metrics-port',
      String(await freePort()),
      '--db-filename',
      home.temporalDatabase,
      '--namespace',
      'default',
      '--log-level',
      'warn',
      ...(uiPort ? ['--ui-port', String(uiPort), '--ui-disable-news-fetch'] : ['--headless']),
    ];
    const address = `127.0.0.1:${port}`;
    const launch = () => launchServer(binary.path, args, address, logFile, readyTimeoutMs);
    let child: ChildProcess;
    try {
      child = await launch();
    } catch (error) {
      if (attempt < FIRST_START_ATTEMPTS && /address already in use/i.test((error as Error).message)) continue;
      throw error;
    }
    const record: EmbeddedServerRecord = {
      address,
      uiUrl: uiPort ? `http://127.0.0.1:${uiPort}` : null,
      pid: child.pid!,
      namespace: 'default',
      binary: binary.path,
      database: home.temporalDatabase,
      logFile,
    };
    await writeFileAtomically(home.temporalServerFile, JSON.stringify(record, null, 2));
    const server: EmbeddedTemporal = {
      ...record,
      binaryOrigin: binary.origin,
      child,
      async restart() {
        const next = await launch();
        server.child = next;
        server.pid = next.pid!;
        await writeFileAtomically(home.temporalServerFile, JSON.stringify({ ...record, pid: next.pid }, null, 2));
        return next;
      },
      stop: () => stopServer(server.child, home),
    };
    return server;
  }
}

/** One `temporal server start-dev` process, logging to logFile; resolves once it answers on address. */
async function launchServer(
  binary: string,
  args: string[],
  address: string,
  logFile: string,
  readyTimeoutMs: number,
): Promise<ChildProcess> {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Two pipes feed one log, so neither may end it; the child's 'close' (both pipes drained) does.
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const logClosed = new Promise<void>((resolve) => child.once('close', () => log.end(resolve)));

  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  child.once('exit', (code, signal) => (exited = { code, signal }));
  try {
    await waitUntilAnswering(address, readyTimeoutMs, () => exited);
  } catch (error) {
    child.kill('SIGKILL');
    await logClosed;
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
    throw new Error(`${(error as Error).message}\n--- ${logFile} (last lines) ---\n${tail}`);
  }
  return child;
}

async function choosePort(port: number | 'auto' | 'free'): Promise<number> {
  if (typeof port === 'number') return port;
  if (port === 'auto' && (await isPortFree(7233))) return 7233;
  return freePort();
}

async function waitUntilAnswering(
  address: string,
  timeoutMs: number,
  exitedEarly: () => { code: number | null; signal: NodeJS.Signals | null } | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const exit = exitedEarly();
    if (exit)
      throw new Error(`temporal server start-dev exited during start-up (code ${exit.code}, signal ${exit.signal})`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace: 'default' });
        return;
      } finally {
        await connection.close();
      }
    } catch (error) {
      lastError = error;
      await sleep(250);
    }
  }
  throw new Error(`Temporal at ${address} did not answer within ${timeoutMs} ms: ${(lastError as Error)?.message}`);
}

async function stopServer(child: ChildProcess, home: GantryHome): Promise<void> {
  await rm(home.temporalServerFile, { force: true });
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  // The server flushes SQLite on SIGTERM; a server that hangs there is killed after 15 s.
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(killer);
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The embedded server recorded in GANTRY_HOME, if its process is still alive. */
export async function findRunningEmbeddedTemporal(home: GantryHome): Promise<EmbeddedServerRecord | undefined> {
  let text: string;
  try {
    text = await readFile(home.temporalServerFile, 'utf8');
  } catch {
    return undefined;
  }
  const parsed = EmbeddedServerRecordSchema.safeParse(JSON.parse(text));
  if (!parsed.success || !isProcessAlive(parsed.data.pid)) return undefined;
  return parsed.data;
}
