import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../../ui/server';
import { wilsonInterval } from '../../ui/views';
import { createTestEnv } from '../helpers/env';

/**
 * The dashboard's HTTP surface without a browser, against the real Temporal test server: its page and assets,
 * hostile parameters and bodies refused naming the field, unknown runs and models as 404, and the admin token's
 * rules for actions. No TensorFlow: nothing trains here.
 */

const TOKEN = 'ui-api-test-admin-token-0123456';
let connection: Connection;
let withToken: Dashboard;
let withoutToken: Dashboard;

beforeAll(async () => {
  const env = await createTestEnv('ui-api');
  connection = await Connection.connect({ address: env.address });
  const client = new Client({ connection, namespace: 'default' });
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

it("draws an arm's interval as Wilson's 95 % score interval", () => {
  const interval = wilsonInterval(81, 100)!;
  expect(interval.low).toBeCloseTo(0.7222, 3);
  expect(interval.high).toBeCloseTo(0.8749, 3);
  expect(wilsonInterval(0, 0)).toBeNull();
  expect(wilsonInterval(10, 10)!.high).toBeCloseTo(1, 12);
});
