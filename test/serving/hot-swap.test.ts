import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openGraphSessions } from '../../engine/graph-session';
import { RETIRED_VERSIONS_KEPT } from '../../serving/manager';
import type { ModelServer } from '../../serving/server';
import { selectBackend, tf } from '../../engine/backend';
import {
  answersByVersion,
  mlpFiles,
  publish,
  removeDir,
  request,
  startServer,
  tempDir,
  testImage,
  until,
} from './helpers';

/**
 * Hot swap under load: two clients predict without pause while 20 new versions are published
 * one after the other. No request may fail, every answer must be exactly what the version named
 * in its header computes (so it came from a loaded, AVAILABLE version), and once the old
 * versions unloaded the tensor memory is back to one version's worth, with no timer or metric
 * series left behind per version.
 */

const SWAPS = 20;
let base: string;
let server: ModelServer;
let port: number;
let image: number[][][];
let expected: Map<number, Float32Array>;

beforeAll(async () => {
  await selectBackend();
  let pixels: Float32Array;
  ({ pixels, image } = await testImage(7));
  base = await tempDir('swap');
  const files = await Promise.all(Array.from({ length: SWAPS + 1 }, (_, i) => mlpFiles(100 + i)));
  expected = await answersByVersion(files, pixels);
  await publish(base, 'fashion', 1, files[0]!);
  server = await startServer(base, { pollIntervalMs: 20 });
  port = server.restPort!;
  (globalThis as { swapFiles?: typeof files }).swapFiles = files;
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

describe('hot swap', () => {
  it(`swaps ${SWAPS} times under two continuous clients with zero failures and no leaked tensors`, async () => {
    const files = (globalThis as { swapFiles?: Awaited<ReturnType<typeof mlpFiles>>[] }).swapFiles!;
    const baseline = tf.memory();
    // Graph sessions hold their weights outside tfjs's tensor count: they must close too.
    const sessions = openGraphSessions();
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'Immediate').length;
    const timersBefore = timers();
    let running = true;
    const failures: string[] = [];
    const seen = new Map<number, number>();
    const client = async () => {
      let count = 0;
      while (running) {
        const answer = await request(port, 'POST', '/v1/models/fashion:predict', { instances: [image] });
        count++;
        if (answer.status !== 200) {
          failures.push(`${answer.status} ${answer.body.toString()}`);
          continue;
        }
        const version = Number(answer.headers['x-gantry-model-version']);
        const want = expected.get(version);
        const got = answer.json.predictions[0] as number[];
        if (!want || got.some((p, i) => Math.abs(p - want[i]!) > 1e-6))
          failures.push(`version ${version} answered something it does not compute`);
        seen.set(version, (seen.get(version) ?? 0) + 1);
      }
      return count;
    };
    const clients = [client(), client()];
    for (let v = 2; v <= SWAPS + 1; v++) {
      await publish(base, 'fashion', v, files[v - 1]!);
      await until(
        () => server.manager.availableVersions('fashion').join() === String(v),
        10_000,
        `version ${v} alone AVAILABLE`,
      );
      // Let both clients hit the new version before the next swap.
      const before = seen.get(v) ?? 0;
      await until(() => (seen.get(v) ?? 0) >= before + 2, 5_000, `requests on version ${v}`);
    }
    running = false;
    const counts = await Promise.all(clients);
    expect(failures).toEqual([]);
    expect(counts[0]! + counts[1]!).toBeGreaterThan(SWAPS * 4);
    expect(seen.size).toBeGreaterThanOrEqual(SWAPS);
    // Unloads finish once the last requests drained; then memory is one version's again.
    await until(() => server.manager.status('fashion').length === 1, 5_000, 'old versions unloaded');
    const after = tf.memory();
    expect(after.numTensors).toBe(baseline.numTensors);
    expect(after.numBytes).toBe(baseline.numBytes);
    expect(openGraphSessions()).toBe(sessions);
    const metrics = await server.metrics.json();
    expect(metrics.find((m) => m.name === 'gantry_serving_graph_sessions')?.values[0]?.value).toBe(sessions);
    // No version leaves a timer behind (batch timeouts, busy ticks, request deadlines): not one per swap.
    expect(timers()).toBeLessThanOrEqual(timersBefore + 2);
    // Nor its metric series: those of the newest RETIRED_VERSIONS_KEPT unloaded versions are kept, older ones go.
    const versions = new Set(
      metrics.flatMap((m) => m.values.filter((s) => s.labels.model === 'fashion').map((s) => s.labels.version)),
    );
    versions.delete(undefined);
    versions.delete(''); // requests that failed before a version was chosen
    expect([...versions].map(Number).sort((a, b) => a - b)).toEqual(
      Array.from({ length: RETIRED_VERSIONS_KEPT + 1 }, (_, i) => SWAPS + 1 - RETIRED_VERSIONS_KEPT + i),
    );
  });

  it('never replaces a healthy version with one that fails to load, and reports why', async () => {
    const healthy = SWAPS + 1;
    const good = await mlpFiles(999);
    // Corrupt weights: the file is cut short.
    await publish(base, 'fashion', healthy + 1, { ...good, 'weights.bin': good['weights.bin'].subarray(0, 1000) });
    await server.poll();
    expect(server.manager.status('fashion')).toEqual([
      { version: healthy + 1, state: 'END', error: expect.stringMatching(/weights\.bin holds 1000 bytes/) },
      { version: healthy, state: 'AVAILABLE' },
    ]);
    // Wrong shapes: the manifest disagrees with the topology (same byte count, transposed kernel).
    const json = JSON.parse(good['model.json']);
    const kernel = json.weightsManifest[0].weights.find((w: { shape: number[] }) => w.shape.length === 2);
    kernel.shape = [...kernel.shape].reverse();
    await publish(base, 'fashion', healthy + 2, { ...good, 'model.json': JSON.stringify(json) });
    await server.poll();
    const status = await request(port, 'GET', '/v1/models/fashion');
    const states = status.json.model_version_status.map(
      (s: { version: string; state: string; status: { error_code: string } }) =>
        `${s.version}:${s.state}:${s.status.error_code}`,
    );
    // Latest-1: the older failure is no longer aspired, so only the newest failure is reported.
    expect(states).toEqual([`${healthy + 2}:END:UNKNOWN`, `${healthy}:AVAILABLE:OK`]);
    expect(status.json.model_version_status[0].status.error_message).toMatch(/shape/i);
    const answer = await request(port, 'POST', '/v1/models/fashion:predict', { instances: [image] });
    expect(answer.status).toBe(200);
    expect(answer.headers['x-gantry-model-version']).toBe(String(healthy));
    expect((await request(port, 'GET', '/readyz')).status).toBe(200);
    // A warm-up request that does not fit the signature fails the load too.
    await publish(base, 'fashion', healthy + 3, {
      ...good,
      'warmup.json': JSON.stringify({ requests: [{ instances: [[1, 2, 3]] }] }),
    });
    await server.poll();
    expect(server.manager.status('fashion')[0]).toMatchObject({
      version: healthy + 3,
      state: 'END',
      error: expect.stringMatching(/warm-up failed: instances\[0\]/),
    });
    // Fixing the files of a failed version makes it load on the next poll.
    const dir = path.join(base, 'fashion', String(healthy + 3));
    await writeFile(path.join(dir, 'warmup.json'), JSON.stringify({ requests: [{ instances: [image] }] }));
    await server.poll();
    await until(
      () => server.manager.availableVersions('fashion').join() === String(healthy + 3),
      5_000,
      'the fixed version',
    );
    expect(JSON.parse(await readFile(path.join(dir, 'warmup.json'), 'utf8')).requests).toHaveLength(1);
  });
});
