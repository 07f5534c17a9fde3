import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../control/ports';
import { PROJECT_ROOT, resolveTemporalBinary } from '../../control/temporal-binary';
import { dataSourceNames } from '../../data/sources';

/**
 * Gantry as a user gets it: `npm pack` of this repository, installed into an empty folder outside it with the
 * network closed and no install scripts (no native TensorFlow: the fallback backend), then `gantry init`, the
 * generated project's own test and type check, `gantry dev` and `gantry run` of its pipeline, and a REST predict
 * with a raw record.
 */

interface Result {
  code: number | null;
  output: string;
}

/** Runs a command to its end with a clean environment (none of the test run's Temporal, home or queues). */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 240_000) {
  return new Promise<Result>((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish in ${timeoutMs} ms\n${output.slice(-3000)}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GANTRY_TEMPORAL_BINARY: resolveTemporalBinary().path };
  for (const name of Object.keys(env)) {
    if (/^(GANTRY_(HOME|PROJECT|TASK_QUEUE_PREFIX|WORKFLOW_BUNDLE|SERVERS)|TEMPORAL_(ADDRESS|NAMESPACE))$/.test(name))
      delete env[name];
    // npm run by vitest's parent (npm test) leaves its own settings behind; the installs below are the user's.
    if (name.startsWith('npm_')) delete env[name];
  }
  return env;
}

/**
 * `npm install` with the network closed; a cache filled by `npm ci` holds the tarballs but not always the
 * registry's install metadata, so a machine that can reach the registry tops that up instead.
 */
async function npmInstall(cwd: string, env: NodeJS.ProcessEnv, args: string[]): Promise<Result> {
  const flags = ['--ignore-scripts', '--no-audit', '--no-fund'];
  const offline = await run('npm', ['install', '--offline', ...flags, ...args], cwd, env);
  if (offline.code === 0 || !/ENOTCACHED/.test(offline.output)) return offline;
  return run('npm', ['install', '--prefer-offline', ...flags, ...args], cwd, env);
}

let work: string;
let app: string;
let dev: ChildProcess | undefined;
const env = cleanEnv();
// The generated pipeline reads a CSV: its run needs the tabular sources.
const tabular = dataSourceNames().includes('csv');

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'gantry-package-'));
});
afterAll(async () => {
  if (dev && dev.exitCode === null && dev.signalCode === null) {
    const exited = new Promise((resolve) => dev!.once('exit', resolve));
    dev.kill('SIGINT');
    const timer = setTimeout(() => dev?.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('installs from its tarball outside the repository, scaffolds a project, gives it type declarations', async () => {
    const packed = await run('npm', ['pack', '--pack-destination', work], PROJECT_ROOT, env);
    expect(packed.code, packed.output).toBe(0);
    const tarball = path.join(work, packed.output.trim().split('\n').at(-1)!.trim());
    const consumer = path.join(work, 'consumer');
    await mkdir(consumer);
    await writeFile(path.join(consumer, 'package.json'), '{ "name": "consumer", "private": true }\n');
    const installed = await npmInstall(consumer, env, [tarball]);
    expect(installed.code, installed.output).toBe(0);

    // Only the runtime's folders travel: no tests, benches or tools.
    const pkg = path.join(consumer, 'node_modules', 'gantry');
    const manifest = JSON.parse(await readFile(path.join(pkg, 'package.json'), 'utf8'));
    expect(manifest.private).toBeUndefined();
    await expect(readFile(path.join(pkg, 'dist', 'types', 'index.d.ts'), 'utf8')).resolves.toMatch(/definePipeline/);
    await expect(readFile(path.join(pkg, 'test', 'cli.test.ts'))).rejects.toThrow(/ENOENT/);

    const init = await run('npx', ['gantry', 'init', 'app'], consumer, env, 60_000);
    expect(init.code, init.output).toBe(0);
    app = path.join(consumer, 'app');
    const appManifest = JSON.parse(await readFile(path.join(app, 'package.json'), 'utf8'));
    expect(appManifest.dependencies.gantry).toBe(`file:${pkg}`);
    const appInstall = await npmInstall(app, env, []);
    expect(appInstall.code, appInstall.output).toBe(0);

    // The project's code, typed against the package's declarations.
    const typecheck = await run('npx', ['tsc', '--noEmit'], app, env);
    expect(typecheck.code, typecheck.output).toBe(0);
  });

  it.runIf(tabular)('runs the generated project: its test, gantry dev, gantry run, a REST predict', async () => {
    expect(app, 'the install above failed').toBeDefined();
    const test = await run('npm', ['test'], app, env);
    expect(test.code, test.output).toBe(0);
    expect(test.output).toMatch(/# pass 1/);

    const port = await freePort();
    dev = spawn('npx', ['gantry', 'dev', '--headless', '--port', String(port)], {
      cwd: app,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let devOutput = '';
    dev.stdout!.on('data', (c: Buffer) => (devOutput += c.toString()));
    dev.stderr!.on('data', (c: Buffer) => (devOutput += c.toString()));
    const deadline = Date.now() + 90_000;
    while (!/gantry dev is up/.test(devOutput)) {
      if (Date.now() > deadline || dev.exitCode !== null) throw new Error(`gantry dev did not start:\n${devOutput}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(devOutput).toContain(`state folder     ${path.join(app, '.gantry')}`);
    const rest = /REST (http:\/\/127\.0\.0\.1:\d+)/.exec(devOutput)?.[1];
    expect(rest, devOutput).toBeDefined();

    const result = await run('npx', ['gantry', 'run', 'app', '--json'], app, env);
    expect(result.code, `${result.output}\n${devOutput}`).toBe(0);
    const value = JSON.parse(result.output.trim().split('\n').at(-1)!);
    expect(value).toMatchObject({ pipeline: 'app', model: 'app', version: 1, blessed: true, published: true });

    // A raw record, as the CSV holds it, with the source's own column names.
    const record = {
      Island: 'Biscoe',
      'Beak Length (mm)': 48.6,
      'Beak Depth (mm)': 16,
      'Flipper Length (mm)': 230,
      'Body Mass (g)': 5800,
      Sex: 'MALE',
    };
    let answer: Response | undefined;
    for (let i = 0; i < 40; i++) {
      answer = await fetch(`${rest}/v1/models/app:predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instances: [record] }),
      });
      if (answer.status !== 404) break;
      await new Promise((resolve) => setTimeout(resolve, 500)); // the server picks the version up within its poll
    }
    const body = await answer!.text();
    expect(answer!.status, body).toBe(200);
    expect(body).toMatch(/Adelie|Chinstrap|Gentoo/);
  });
});
