import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { StackStatusSchema, stackStatusFile } from '../control/dev-stack';
import { isProcessAlive } from '../control/embedded-temporal';
import { gantryHome } from '../control/home';
import { freePort } from '../control/ports';
import { PROJECT_ROOT } from '../control/temporal-binary';
import { waitFor } from './helpers/workers';

it(
  'gantry dev starts Temporal, a model server and both pools, prints where everything is, ' +
    'and stops it all on Ctrl-C',
  async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'gantry-dev-'));
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, GANTRY_HOME: home };
    delete env.TEMPORAL_ADDRESS;
    delete env.GANTRY_SERVERS;
    const child = spawn(path.join(PROJECT_ROOT, 'bin', 'gantry'), ['dev', '--port', String(port), '--headless'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    await waitFor('gantry dev to come up', async () => (output.includes('task queues') ? true : undefined), 90_000);
    expect(output).toContain(`state folder     ${home}`);
    expect(output).toContain(`temporal         127.0.0.1:${port}`);
    expect(output).toContain(`model repository ${path.join(home, 'models')}`);
    const serverPid = Number(/embedded, pid (\d+)/.exec(output)![1]);
    const workerPids = [...output.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
    expect(workerPids).toHaveLength(2);
    // A model server on the home's repository, listed in servers.json for the control worker.
    const url = String.raw`(http://127\.0\.0\.1:\d+)`;
    const [, modelServerUrl, adminUrl, modelServerPid] = new RegExp(
      String.raw`model server {5}REST ${url}, gRPC 127\.0\.0\.1:\d+, admin ${url} \(gantry serve, pid (\d+)`,
    ).exec(output)!;
    const servers = JSON.parse(await readFile(path.join(home, 'servers.json'), 'utf8'));
    const token = (await readFile(path.join(home, 'admin-token'), 'utf8')).trim();
    // The feedback token (GANTRY_HOME/feedback-token, a token file's NAME:TOKEN line) goes to the clients too.
    const feedbackLine = (await readFile(path.join(home, 'feedback-token'), 'utf8')).trim();
    expect(feedbackLine).toMatch(/^local:[\w-]{43}$/);
    expect(servers).toEqual({
      servers: [
        { url: modelServerUrl, adminUrl, adminToken: token, feedbackToken: feedbackLine.slice('local:'.length) },
      ],
    });
    expect((await stat(path.join(home, 'admin-token'))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(home, 'feedback-token'))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(home, 'logs', 'serve.log'), 'utf8')).toContain(
      'feedback: only with a token (local)',
    );
    expect((await fetch(`${modelServerUrl}/readyz`)).status).toBe(200);
    // The dashboard, on its own line, reads the stack's Temporal server.
    const dashboard = /dashboard {8}(http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1];
    expect(await (await fetch(`${dashboard}/api/runs`)).json()).toEqual({ runs: [] });
    // The admin API listens on its own loopback port; the public port does not know its routes.
    const bearer = { headers: { authorization: `Bearer ${token}` } };
    expect((await fetch(`${adminUrl}/v1/admin/state`, bearer)).status).toBe(200);
    expect((await fetch(`${modelServerUrl}/v1/admin/state`, bearer)).status).toBe(404);
    await waitFor(
      'both workers to poll',
      async () => {
        return /gantry control worker/.test(await readLogs(home, 'control')) &&
          /gantry train worker/.test(await readLogs(home, 'train'))
          ? true
          : undefined;
      },
      90_000,
      500,
    );

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain('stopped');
    for (const pid of [serverPid, Number(modelServerPid), ...workerPids]) expect(isProcessAlive(pid)).toBe(false);
    await expect(stat(path.join(home, 'servers.json'))).rejects.toThrow(/ENOENT/);
  },
);

async function readLogs(home: string, pool: string): Promise<string> {
  return readFile(path.join(home, 'logs', `worker-${pool}.log`), 'utf8').catch(() => '');
}

it('gantry dev gives up on a child that cannot start again, says why, exits 1 and leaves nothing running', async () => {
  const home = await mkdtemp(path.join(os.tmpdir(), 'gantry-dev-giveup-'));
  const env: NodeJS.ProcessEnv = { ...process.env, GANTRY_HOME: home };
  delete env.TEMPORAL_ADDRESS;
  delete env.GANTRY_SERVERS;
  const child = spawn(
    path.join(PROJECT_ROOT, 'bin', 'gantry'),
    ['dev', '--port', String(await freePort()), '--headless'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor('gantry dev to come up', async () => (output.includes('task queues') ? true : undefined), 90_000);
  const stack = StackStatusSchema.parse(JSON.parse(await readFile(stackStatusFile(gantryHome(env)), 'utf8')));
  const restPort = Number(new URL(stack.modelServer!.url).port);

  // The model server dies, and its port is taken before the stack can start it again there.
  process.kill(stack.modelServer!.pid!, 'SIGKILL');
  const squatter = createServer();
  await waitFor(
    'the model server port to be free',
    () =>
      new Promise<true | undefined>((resolve) => {
        squatter.once('error', () => resolve(undefined));
        squatter.listen(restPort, '127.0.0.1', () => resolve(true));
      }),
    5_000,
    10,
  );
  try {
    // Six failures in a row: 0.5 + 1 + 2 + 4 + 8 s of backoff, plus the tries.
    expect(await exited).toBe(1);
  } finally {
    squatter.close();
  }
  expect(output).toMatch(/the model server exited \(code null, signal SIGKILL\); starting it again in 0.5 s/);
  expect(output).toMatch(/the model server failed 6 times in a row, each within 60 s of starting; gave up/);
  expect(output).toMatch(/EADDRINUSE/);
  for (const pid of [stack.temporal!.pid!, ...stack.workers.map((w) => w.pid!)])
    expect(isProcessAlive(pid)).toBe(false);
  await expect(stat(path.join(home, 'servers.json'))).rejects.toThrow(/ENOENT/);
  await expect(stat(stackStatusFile(gantryHome(env)))).rejects.toThrow(/ENOENT/);
}, 180_000);
