import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelServer } from '../../serving/server';
import { selectBackend } from '../../engine/backend';
import type { ModelFiles } from '../../engine/model-files';
import { answersByVersion, fashionBase, metricValue, mlpFiles, publish, removeDir, request } from './helpers';
import { startServer, tempDir, testImage, until } from './helpers';

/**
 * The admin API and the router: add / reload / remove one model, labels, an 80/20 split over
 * 10,000 requests, sticky client keys, shadow traffic that never changes an answer, and the
 * admin state surviving a restart.
 */

const TOKEN = 'routing-admin-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
let base: string;
let stateFile: string;
let server: ModelServer;
let port: number;
let image: number[][][];
let expected: Map<number, Float32Array>;

beforeAll(async () => {
  await selectBackend();
  let pixels: Float32Array;
  ({ pixels, image } = await testImage(3));
  compact = Buffer.from(JSON.stringify({ inputs: { b64: Buffer.from(pixels.buffer).toString('base64') } }));
  let files: ModelFiles[];
  ({ base, files } = await fashionBase('routing', 41, 42));
  expected = await answersByVersion(files, pixels);
  stateFile = path.join(await tempDir('routing-state'), 'serving-state.json');
  server = await startServer(base, { adminToken: TOKEN, stateFile });
  port = server.restPort!;
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
  await removeDir(path.dirname(stateFile));
});

const predict = (suffix = '', headers: Record<string, string> = {}) =>
  request(port, 'POST', `/v1/models/fashion${suffix}:predict`, { instances: [image] }, headers);
/** The same image as one b64 tensor: far less JSON for the 10,000-request runs. */
let compact: Buffer;
const predictCompact = (headers: Record<string, string> = {}) =>
  request(port, 'POST', '/v1/models/fashion:predict', compact, { 'content-type': 'application/json', ...headers });

async function many(
  count: number,
  concurrency: number,
  send: (i: number) => Promise<{ status: number; headers: Record<string, unknown> }>,
): Promise<Map<string, number>> {
  const versions = new Map<string, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const answer = await send(i);
        expect(answer.status).toBe(200);
        const version = String(answer.headers['x-gantry-model-version']);
        versions.set(version, (versions.get(version) ?? 0) + 1);
      }
    }),
  );
  return versions;
}

/** The 80/20 split between the stable and canary labels. */
const STABLE_80_CANARY_20 = [
  { label: 'stable', weight: 80 },
  { label: 'canary', weight: 20 },
];
const setTraffic = (policy: object) => request(port, 'PUT', '/v1/admin/models/fashion/traffic', policy, AUTH);

/**
 * What the split, sticky, shadow and restart tests start from, whatever ran before them: both versions
 * loaded, labelled stable → 1 and canary → 2, and no traffic policy.
 */
async function bothVersionsLabelled(): Promise<void> {
  const put = await request(port, 'PUT', '/v1/admin/models/fashion', { model_version_policy: { all: {} } }, AUTH);
  expect(put.status).toBe(200);
  for (const [label, version] of [
    ['stable', 1],
    ['canary', 2],
  ] as const)
    expect((await request(port, 'PUT', `/v1/admin/models/fashion/labels/${label}`, { version }, AUTH)).status).toBe(
      200,
    );
  expect((await request(port, 'DELETE', '/v1/admin/models/fashion/traffic', undefined, AUTH)).status).toBe(200);
}

describe('admin API', () => {
  it('refuses calls without the bearer token', async () => {
    expect((await request(port, 'PUT', '/v1/admin/models/fashion', {})).status).toBe(401);
    expect(
      (await request(port, 'PUT', '/v1/admin/models/fashion', {}, { authorization: 'Bearer wrong-token-wrong-token' }))
        .status,
    ).toBe(401);
    expect((await request(port, 'GET', '/v1/admin/state')).json.error).toMatch(/Bearer/);
  });

  it('changes one model’s version policy, sets labels (only on loaded versions) and routes by label', async () => {
    expect(server.manager.availableVersions('fashion')).toEqual([2]);
    const put = await request(port, 'PUT', '/v1/admin/models/fashion', { model_version_policy: { all: {} } }, AUTH);
    expect(put.status).toBe(200);
    expect(server.manager.availableVersions('fashion')).toEqual([1, 2]);
    expect((await request(port, 'PUT', '/v1/admin/models/fashion/labels/stable', { version: 1 }, AUTH)).status).toBe(
      200,
    );
    expect((await request(port, 'PUT', '/v1/admin/models/fashion/labels/canary', { version: 2 }, AUTH)).status).toBe(
      200,
    );
    const refused = await request(port, 'PUT', '/v1/admin/models/fashion/labels/next', { version: 7 }, AUTH);
    expect(refused.status).toBe(400);
    expect(refused.json.error).toMatch(/version 7 .* not AVAILABLE/);
    expect((await request(port, 'PUT', '/v1/admin/models/fashion/labels/bad-label', { version: 1 }, AUTH)).status).toBe(
      400,
    );
    expect((await predict('/labels/stable')).headers['x-gantry-model-version']).toBe('1');
    expect((await predict('/labels/canary')).headers['x-gantry-model-version']).toBe('2');
    expect((await predict()).headers['x-gantry-model-version']).toBe('2');
  });

  it('splits 80/20 over 10,000 requests within ±2 points', async () => {
    await bothVersionsLabelled();
    expect((await setTraffic({ split: STABLE_80_CANARY_20 })).status).toBe(200);
    const versions = await many(10_000, 32, () => predictCompact());
    const share = (versions.get('1') ?? 0) / 10_000;
    expect(share).toBeGreaterThan(0.78);
    expect(share).toBeLessThan(0.82);
  });

  it('keeps a client key on one version (stable hash), while keys spread over both', async () => {
    await bothVersionsLabelled();
    expect((await setTraffic({ split: STABLE_80_CANARY_20 })).status).toBe(200);
    const byKey = new Map<string, Set<string>>();
    await many(400, 16, async (i) => {
      const key = `client-${i % 80}`;
      const answer = await predictCompact({ 'x-gantry-client-key': key });
      const set = byKey.get(key) ?? new Set<string>();
      set.add(String(answer.headers['x-gantry-model-version']));
      byKey.set(key, set);
      return answer;
    });
    expect([...byKey.values()].every((set) => set.size === 1)).toBe(true);
    const onCanary = [...byKey.values()].filter((set) => set.has('2')).length;
    expect(onCanary).toBeGreaterThan(4);
    expect(onCanary).toBeLessThan(40);
  });

  it('copies requests to a shadow version without changing any answer, and measures it', async () => {
    await bothVersionsLabelled();
    const set = await setTraffic({ split: [{ version: 1, weight: 1 }], shadow: { label: 'canary', percent: 100 } });
    expect(set.status).toBe(200);
    const want = expected.get(1)!;
    for (let i = 0; i < 50; i++) {
      const answer = await predict();
      expect(answer.headers['x-gantry-model-version']).toBe('1');
      const got = answer.json.predictions[0] as number[];
      expect(Math.max(...got.map((p, j) => Math.abs(p - want[j]!)))).toBeLessThan(1e-6);
    }
    const shadowCount = async () => {
      const text = (await request(port, 'GET', '/metrics')).body.toString();
      return ['agree', 'disagree'].reduce(
        (sum, outcome) =>
          sum +
          (metricValue(text, 'gantry_serving_shadow_requests_total', { model: 'fashion', version: '2', outcome }) ?? 0),
        0,
      );
    };
    await until(async () => (await shadowCount()) === 50, 5_000, '50 shadow answers');
  });

  it('writes the admin state to its file and serves the same after a restart', async () => {
    await bothVersionsLabelled();
    await setTraffic({ split: STABLE_80_CANARY_20 });
    const saved = JSON.parse(await readFile(stateFile, 'utf8'));
    expect(saved.models.fashion.version_labels).toEqual({ stable: 1, canary: 2 });
    expect(saved.traffic.fashion.split).toHaveLength(2);
    await server.close();
    server = await startServer(base, { adminToken: TOKEN, stateFile });
    port = server.restPort!;
    expect(server.manager.availableVersions('fashion')).toEqual([1, 2]);
    expect((await predict('/labels/canary')).headers['x-gantry-model-version']).toBe('2');
    const versions = await many(500, 16, () => predictCompact());
    expect(versions.get('2') ?? 0).toBeGreaterThan(40);
  });

  it('removes, adds back and reloads one model without touching another', async () => {
    await publish(base, 'other', 1, await mlpFiles(77));
    await server.poll();
    expect(server.manager.availableVersions('other')).toEqual([1]);
    expect((await request(port, 'DELETE', '/v1/admin/models/fashion', undefined, AUTH)).status).toBe(200);
    expect((await predict()).status).toBe(404);
    expect((await request(port, 'POST', '/v1/models/other:predict', { instances: [image] })).status).toBe(200);
    expect((await request(port, 'DELETE', '/v1/admin/models/fashion', undefined, AUTH)).status).toBe(404);
    const added = await request(
      port,
      'PUT',
      '/v1/admin/models/fashion',
      { model_version_policy: { specific: { versions: [1] } } },
      AUTH,
    );
    expect(added.status).toBe(200);
    expect(added.json.model_version_status).toEqual([
      { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
    ]);
    expect((await predict()).headers['x-gantry-model-version']).toBe('1');
    expect((await request(port, 'POST', '/v1/admin/models/fashion/reload', undefined, AUTH)).status).toBe(200);
    expect(server.manager.availableVersions('other')).toEqual([1]);
  });
});
