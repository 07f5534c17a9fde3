import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { startEmbeddedTemporal, findRunningEmbeddedTemporal } from '../control/embedded-temporal';
import { gantryHome } from '../control/home';
import { resolveTemporalBinary, PROJECT_TEMPORAL_BINARY } from '../control/temporal-binary';
import { temporalTargetFromEnv } from '../control/temporal-env';
import { registryWorkflow } from '../workflows/registry';

async function tempHome(name: string) {
  return gantryHome({ GANTRY_HOME: await mkdtemp(path.join(os.tmpdir(), `gantry-${name}-`)) });
}

describe('the embedded Temporal server', () => {
  it('keeps workflow histories in GANTRY_HOME across a restart, and records where it runs', async () => {
    const home = await tempHome('embedded');
    const first = await startEmbeddedTemporal(home, { port: 'free', headless: true });
    expect(first.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const record = JSON.parse(await readFile(home.temporalServerFile, 'utf8'));
    expect(record).toMatchObject({
      address: first.address,
      pid: first.pid,
      database: path.join(home.root, 'temporal', 'temporal.db'),
    });
    expect(await findRunningEmbeddedTemporal(home)).toMatchObject({ address: first.address });
    await expect(startEmbeddedTemporal(home, { port: 'free', headless: true })).rejects.toThrow(/already running/);

    const workflowId = `persist-${Date.now()}`;
    let connection = await Connection.connect({ address: first.address });
    // Started without any worker: the execution exists in the database and waits for one.
    await new Client({ connection }).workflow.start(registryWorkflow, {
      workflowId,
      taskQueue: 'nobody',
      args: [{ model: 'persisted' }],
    });
    await connection.close();
    await first.stop();
    expect(await findRunningEmbeddedTemporal(home)).toBeUndefined();

    const second = await startEmbeddedTemporal(home, { port: 'free', headless: true });
    try {
      connection = await Connection.connect({ address: second.address });
      const description = await new Client({ connection }).workflow.getHandle(workflowId).describe();
      expect(description.status.name).toBe('RUNNING');
      expect(description.type).toBe('registryWorkflow');
      await connection.close();
    } finally {
      await second.stop();
    }
  });

  it('reports a server that dies at start-up with its log', async () => {
    const home = await tempHome('broken');
    const fake = path.join(home.root, 'temporal-broken');
    await writeFile(fake, '#!/bin/sh\necho "cannot open database: disk on fire" >&2\nexit 3\n');
    await chmod(fake, 0o755);
    process.env.GANTRY_TEMPORAL_BINARY = fake;
    try {
      await expect(
        startEmbeddedTemporal(home, { port: 'free', headless: true, readyTimeoutMs: 10_000 }),
      ).rejects.toThrow(/exited during start-up[\s\S]*disk on fire/);
    } finally {
      delete process.env.GANTRY_TEMPORAL_BINARY;
    }
  });
});

describe('resolving the Temporal binary', () => {
  it('prefers a temporal on PATH, then the pinned copy in .tools', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-path-'));
    await writeFile(path.join(dir, 'temporal'), '#!/bin/sh\n');
    await chmod(path.join(dir, 'temporal'), 0o755);
    expect(resolveTemporalBinary({ PATH: dir })).toEqual({ path: path.join(dir, 'temporal'), origin: 'PATH' });
    expect(resolveTemporalBinary({ PATH: '/nonexistent' })).toEqual({
      path: PROJECT_TEMPORAL_BINARY,
      origin: 'project tools folder',
    });
    expect(() => resolveTemporalBinary({ PATH: '', GANTRY_TEMPORAL_BINARY: '/nonexistent/temporal' })).toThrow(
      /GANTRY_TEMPORAL_BINARY/,
    );
  });
});

describe('reaching a real cluster from the environment', () => {
  it('reads address, namespace, API key and TLS files under Temporal’s variable names', async () => {
    expect(temporalTargetFromEnv({})).toBeUndefined();
    expect(temporalTargetFromEnv({ TEMPORAL_ADDRESS: 'temporal.internal:7233' })).toEqual({
      address: 'temporal.internal:7233',
      namespace: 'default',
      apiKey: undefined,
      tls: undefined,
    });

    const cloud = temporalTargetFromEnv({
      TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233',
      TEMPORAL_NAMESPACE: 'ns.acct',
      TEMPORAL_API_KEY: 'secret',
    });
    expect(cloud).toMatchObject({ namespace: 'ns.acct', apiKey: 'secret', tls: {} });

    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-tls-'));
    await writeFile(path.join(dir, 'client.pem'), 'CERT');
    await writeFile(path.join(dir, 'client.key'), 'KEY');
    const mtls = temporalTargetFromEnv({
      TEMPORAL_ADDRESS: 'temporal.internal:7233',
      TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'client.pem'),
      TEMPORAL_TLS_CLIENT_KEY_PATH: path.join(dir, 'client.key'),
      TEMPORAL_TLS_SERVER_NAME: 'temporal',
    });
    expect(mtls?.tls?.clientCertPair?.crt.toString()).toBe('CERT');
    expect(mtls?.tls?.serverNameOverride).toBe('temporal');
  });

  it('names the variable and the reason when the settings are wrong', () => {
    expect(() => temporalTargetFromEnv({ TEMPORAL_ADDRESS: 'no-port' })).toThrow(/TEMPORAL_ADDRESS: must be host:port/);
    expect(() => temporalTargetFromEnv({ TEMPORAL_ADDRESS: 'h:1', TEMPORAL_TLS_CLIENT_CERT_PATH: '/x' })).toThrow(
      /set both or neither/,
    );
    expect(() =>
      temporalTargetFromEnv({
        TEMPORAL_ADDRESS: 'h:1',
        TEMPORAL_TLS_CLIENT_CERT_PATH: '/no/cert',
        TEMPORAL_TLS_CLIENT_KEY_PATH: '/no/key',
      }),
    ).toThrow(/TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read \/no\/cert/);
  });
});

it('GANTRY_HOME puts every piece of local state under one folder', () => {
  const home = gantryHome({ GANTRY_HOME: '/srv/gantry' }, '/work');
  expect(home).toMatchObject({
    root: '/srv/gantry',
    temporalDatabase: '/srv/gantry/temporal/temporal.db',
    artifactsDir: '/srv/gantry/artifacts',
    modelRepositoryDir: '/srv/gantry/models',
    logsDir: '/srv/gantry/logs',
  });
  expect(gantryHome({}, '/work').root).toBe('/work/.gantry');
});
