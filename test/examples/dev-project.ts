import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../control/ports';
import { PROJECT_ROOT } from '../../control/temporal-binary';
import { gantry, type CliResult } from '../helpers/cli';
import { waitFor } from '../helpers/workers';

/**
 * One of examples/<name> as its user runs it: `gantry dev` in the project's folder (its own Temporal, workers and
 * model server; a temporary GANTRY_HOME so the example's folder stays clean), then `gantry` commands from there.
 */
export interface DevProject {
  dir: string;
  home: string;
  /** The model server's REST URL that `gantry dev` printed. */
  restUrl: string;
  env: NodeJS.ProcessEnv;
  gantry(args: string[], timeoutMs?: number): Promise<CliResult>;
  /** `gantry run <args> --json`, parsed; throws with the output when the command fails. */
  runJson(args: string[], timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export const EXAMPLES_DIR = path.join(PROJECT_ROOT, 'examples');

export async function startDevProject(name: string): Promise<DevProject> {
  const dir = path.join(EXAMPLES_DIR, name);
  const home = await mkdtemp(path.join(os.tmpdir(), `gantry-example-${name}-`));
  const env: NodeJS.ProcessEnv = { ...process.env, GANTRY_HOME: home };
  for (const key of ['TEMPORAL_ADDRESS', 'GANTRY_SERVERS', 'GANTRY_PROJECT', 'GANTRY_WORKFLOW_BUNDLE']) delete env[key];
  const port = await freePort();
  const child: ChildProcess = spawn(
    path.join(dir, 'node_modules', '.bin', 'gantry'),
    ['dev', '--port', String(port), '--headless'],
    { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGINT');
    await exited;
    await rm(home, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `gantry dev of examples/${name}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`gantry dev exited:\n${output}`);
        return output.includes('task queues') ? true : undefined;
      },
      120_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  const restUrl = /model server {5}REST (http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1]!;
  const run = (args: string[], timeoutMs = 240_000) => gantry(args, env, timeoutMs, dir);
  return {
    dir,
    home,
    restUrl,
    env,
    gantry: run,
    async runJson(args, timeoutMs) {
      const result = await run(['run', ...args, '--json'], timeoutMs);
      if (result.code !== 0) throw new Error(`gantry run ${args.join(' ')}: ${result.stdout}\n${result.stderr}`);
      return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    },
    stop,
  };
}
