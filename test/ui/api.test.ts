import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readStudySpace } from '../../control/reads';
import { taskQueueOf } from '../../control/task-queues';
import { startDashboard, type Dashboard } from '../../ui/server';
import { studyParams, wilsonInterval } from '../../ui/views';
import { TUNE_WORKFLOW_TYPE, type StudyStatus } from '../../workflows/tune-api';
import { createTestEnv } from '../helpers/env';

/**
 * The dashboard's HTTP surface without a browser, against the real Temporal test server: its page and assets,
 * hostile parameters and bodies refused naming the field, unknown runs and models as 404, and the admin token's
 * rules for actions. No TensorFlow: nothing trains here.
 */

const TOKEN = 'ui-api-test-admin-token-0123456';
let connection: Connection;
let client: Client;
let withToken: Dashboard;
let withoutToken: Dashboard;

beforeAll(async () => {
  const env = await createTestEnv('ui-api');
  connection = await Connection.connect({ address: env.address });
  client = new Client({ connection, namespace: 'default' });
  withToken = await startDashboard({ client, adminToken: TOKEN });
  withoutToken = await startDashboard({ client, adminToken: null });
});

afterAll(async () => {
  await withToken?.close();
  await withoutToken?.close();
  await connection?.close();
});

const errorOf = async (response: Response) => ((await response.json()) as { error: string }).error;

const post = (base: string, path: string, body: unknown, token?: string) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });

it('serves the page and its assets from the package, nothing else', async () => {
  const page = await fetch(`${withToken.url}/`);
  expect(page.headers.get('content-type')).toContain('text/html');
  expect(await page.text()).toContain('/assets/uPlot.iife.min.js');
  for (const asset of ['app.js', 'app.css', 'uPlot.iife.min.js', 'uPlot.min.css'])
    expect((await fetch(`${withToken.url}/assets/${asset}`)).status, asset).toBe(200);
  expect((await fetch(`${withToken.url}/assets/..%2F..%2Fpackage.json`)).status).toBe(404);
  expect((await fetch(`${withToken.url}/api/tuning`)).status).toBe(200);
});

it('reads this deployment only, and says which parameter is wrong or what is missing', async () => {
  expect(await (await fetch(`${withToken.url}/api/runs`)).json()).toEqual({ runs: [] });
  expect(await (await fetch(`${withToken.url}/api/models`)).json()).toEqual({ models: [] });
  const noRun = await fetch(`${withToken.url}/api/runs/no-such-run`);
  expect(noRun.status).toBe(404);
  expect(await errorOf(noRun)).toContain('no run with id "no-such-run"');
  const badRun = await fetch(`${withToken.url}/api/runs/${encodeURIComponent('a run')}`);
  expect(badRun.status).toBe(400);
  expect(await errorOf(badRun)).toMatch(/^runId/);
  const badModel = await fetch(`${withToken.url}/api/models/Not!A-Model`);
  expect(badModel.status).toBe(400);
  expect(await errorOf(badModel)).toMatch(/^model/);
  expect((await fetch(`${withToken.url}/api/models/nope`)).status).toBe(404);
  // A study's best trial runs as `<study>/best`: a run id with a slash is read, not refused.
  const bestRun = await fetch(`${withToken.url}/api/runs/${encodeURIComponent('fm-tune-1/best')}`);
  expect(bestRun.status).toBe(404);
  expect(await errorOf(bestRun)).toContain('no run with id "fm-tune-1/best"');
});

it('lists tuning studies from visibility and reads one by id, refusing a bad id by name', async () => {
  expect(await (await fetch(`${withToken.url}/api/tuning`)).json()).toEqual({ studies: [] });
  const none = await fetch(`${withToken.url}/api/tuning/no-such-study`);
  expect(none.status).toBe(404);
  expect(await errorOf(none)).toContain('no tuning study with id "no-such-study"');
  const bad = await fetch(`${withToken.url}/api/tuning/${encodeURIComponent('a/b')}`);
  expect(bad.status).toBe(400);
  expect(await errorOf(bad)).toMatch(/^studyId/);

  // A study no worker has picked up yet: listed and read by Temporal's status; its space read from its start input.
  const space = { 'train.learningRate': { logUniform: [0.0001, 0.01] } };
  const handle = await client.workflow.start(TUNE_WORKFLOW_TYPE, {
    workflowId: `ui-api-study-${randomBytes(3).toString('hex')}`,
    taskQueue: taskQueueOf('control'),
    args: [{ spec: { name: 'fashion-mnist', tuning: { space } } }],
  });
  try {
    expect(await readStudySpace(client, handle.workflowId)).toEqual(space);
    const one = await fetch(`${withToken.url}/api/tuning/${handle.workflowId}`);
    expect(await one.json()).toMatchObject({ studyId: handle.workflowId, status: 'RUNNING', study: null, params: [] });
    // Visibility catches up with the start a moment later.
    let listed: { studyId: string; status: string }[] = [];
    for (let i = 0; i < 50 && listed.length === 0; i++) {
      listed = ((await (await fetch(`${withToken.url}/api/tuning`)).json()) as { studies: typeof listed }).studies;
      if (!listed.length) await sleep(100);
    }
    expect(listed).toMatchObject([{ studyId: handle.workflowId, status: 'RUNNING', study: null }]);
  } finally {
    await handle.terminate('test done');
  }
});

it('refuses actions without the token (401), with a wrong one or none configured (403); checks the body', async () => {
  const path = '/api/models/nope/promote';
  expect((await post(withToken.url, path, { version: 1 })).status).toBe(401);
  expect((await post(withToken.url, path, { version: 1 }, `${TOKEN}x`)).status).toBe(403);
  const off = await post(withoutToken.url, path, { version: 1 }, TOKEN);
  expect(off.status).toBe(403);
  expect(await errorOf(off)).toContain('without an admin token');
  const badBody = await post(withToken.url, path, { version: 'one' }, TOKEN);
  expect(badBody.status).toBe(400);
  expect(await errorOf(badBody)).toMatch(/^body\.version/);
  // Allowed, and refused by the registry's own rule: the same words as `gantry promote`.
  const refused = await post(withToken.url, path, { version: 1 }, TOKEN);
  expect(refused.status).toBe(409);
  expect(await errorOf(refused)).toBe('no model named "nope" is registered');
  const tooBig = await post(withToken.url, path, { version: 1, reason: 'x'.repeat(20_000) }, TOKEN);
  expect(tooBig.status).toBe(413);
});

it("plots each study parameter on its space's axis: log for log-uniform draws, choices as categories", () => {
  const trial = (params: Record<string, unknown>) => ({ params }) as unknown as StudyStatus['trials'][number];
  const status = {
    trials: [
      trial({ 'train.learningRate': 0.001, 'model.options.hidden': [64, 32], 'train.batchSize': 32, 'x.y': 'a' }),
      trial({ 'train.learningRate': 0.01, 'model.options.hidden': [128], 'train.batchSize': 64, 'x.y': 'b' }),
    ],
  } as StudyStatus;
  const space = {
    'train.learningRate': { logUniform: [0.0001, 0.1] as [number, number] },
    'model.options.hidden': { choice: [[32], [64, 32]] },
    'train.batchSize': { int: [16, 128] as [number, number] },
  };
  expect(studyParams(status, space)).toEqual([
    { path: 'model.options.hidden', scale: 'category', categories: ['[32]', '[64,32]', '[128]'] },
    { path: 'train.batchSize', scale: 'linear', categories: null },
    { path: 'train.learningRate', scale: 'log', categories: null },
    { path: 'x.y', scale: 'category', categories: ['a', 'b'] },
  ]);
  // Without the space (its start event unread): numbers on a linear axis.
  expect(studyParams(status, null)[2]).toEqual({ path: 'train.learningRate', scale: 'linear', categories: null });
});

it("draws an arm's interval as Wilson's 95 % score interval", () => {
  const interval = wilsonInterval(81, 100)!;
  expect(interval.low).toBeCloseTo(0.7222, 3);
  expect(interval.high).toBeCloseTo(0.8749, 3);
  expect(wilsonInterval(0, 0)).toBeNull();
  expect(wilsonInterval(10, 10)!.high).toBeCloseTo(1, 12);
});
