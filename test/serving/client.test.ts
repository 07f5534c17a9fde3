import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServingClient, ServingClientError } from '../../serving/client';
import { ServingMetrics } from '../../serving/metrics';
import {
  diffSnapshots,
  mergeSnapshots,
  restartedBetween,
  servingSnapshot,
  type MetricsSnapshot,
} from '../../serving/metrics-snapshot';
import { histogramQuantile, windowStats } from '../../serving/metrics-window';
import type { ModelServer } from '../../serving/server';
import { selectBackend } from '../../engine/backend';
import type { Examples } from '../../training/batches';
import type { ModelFiles } from '../../engine/model-files';
import { fashionBase, PIXELS, predictInProcess, removeDir, startServer, testExamples, until } from './helpers';

/**
 * The client side of the model server, against a real server on real sockets: ServingClient's
 * predict / feedback / admin round trips and its errors, and metrics snapshots whose difference
 * over a known burst of traffic is exactly that traffic.
 */

const TOKEN = 'client-test-admin-token-0123456789';
const MODEL = 'fashion';

let base: string;
let server: ModelServer;
let client: ServingClient;
let examples: Examples;
const files: Record<number, ModelFiles> = {};

const argmax = (row: number[]) => row.indexOf(Math.max(...row));
const image = (i: number) => examples.images.subarray(i * PIXELS, (i + 1) * PIXELS);

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  await selectBackend();
  examples = await testExamples(0, 200);
  const published = await fashionBase('client', 11, 12);
  base = published.base;
  for (const [i, versionFiles] of published.files.entries()) files[i + 1] = versionFiles;
  server = await startServer(base, { adminToken: TOKEN });
  client = new ServingClient({ url: `http://127.0.0.1:${server.restPort}`, adminToken: TOKEN }, { timeoutMs: 10_000 });
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

describe('ServingClient', () => {
  it('predicts raw pixel rows (JSON rows or the binary tensor) and reports the version and request id', async () => {
    expect(await client.ready()).toEqual({ ready: true, reasons: [] });
    // The default version policy serves the latest version only.
    expect(await client.modelStatus(MODEL)).toEqual([{ version: 2, state: 'AVAILABLE', error: null }]);

    const rows = examples.images.slice(0, 3 * PIXELS);
    const expected = await predictInProcess(files[2]!, Float32Array.from(rows), 3);
    const json = await client.predict(MODEL, rows);
    expect(json.version).toBe(2);
    expect(json.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(json.predictions).toHaveLength(3);
    json.predictions.forEach((p, r) => {
      expect(p).toHaveLength(10);
      p.forEach((v, c) => expect(v).toBeCloseTo(expected[r * 10 + c]!, 5));
    });
    // A client's x-request-id is for its tracing: the server answers with its own id.
    const binary = await client.predict(MODEL, Float32Array.from(rows), { encoding: 'binary', requestId: 'binary-1' });
    expect(binary.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(binary.version).toBe(2);
    binary.predictions.forEach((p, r) => p.forEach((v, c) => expect(v).toBeCloseTo(json.predictions[r]![c]!, 6)));

    // Feedback for both: the rows of the first, one label for... a mismatched count is rejected.
    const labels = [0, 1, 2].map((i) => examples.labels[i]!);
    const result = await client.feedback(MODEL, [
      { requestId: json.requestId, labels },
      { requestId: binary.requestId, labels: [1] },
      { requestId: 'binary-1', labels: [1, 2, 3] },
    ]);
    expect(result).toEqual({
      accepted: 1,
      rows: 3,
      unknown_request_ids: ['binary-1'],
      rejected: [{ request_id: binary.requestId, reason: '1 labels for a prediction of 3 rows' }],
    });

    // A partial row is refused before anything is sent.
    await expect(client.predict(MODEL, new Uint8Array(PIXELS + 1))).rejects.toThrow(/not a whole number of rows/);
  });

  it('drives the admin API: versions, labels, traffic split, state', async () => {
    const put = await client.putModel(MODEL, { model_version_policy: { all: {} } });
    expect(put.config.model_version_policy).toEqual({ all: {} });
    await until(
      async () => (await client.modelStatus(MODEL)).filter((s) => s.state === 'AVAILABLE').length === 2,
      10_000,
      'both versions AVAILABLE',
    );

    expect(await client.setLabel(MODEL, 'stable', 1)).toEqual({ stable: 1 });
    expect((await client.predict(MODEL, image(0), { label: 'stable' })).version).toBe(1);
    expect((await client.predict(MODEL, image(0), { version: 2 })).version).toBe(2);

    const traffic = await client.setTraffic(MODEL, { split: [{ label: 'stable', weight: 1 }] });
    expect(traffic).toEqual({ split: [{ label: 'stable', weight: 1 }] });
    for (let i = 0; i < 5; i++)
      expect((await client.predict(MODEL, image(i), { clientKey: `user-${i}` })).version).toBe(1);

    const state = await client.adminState();
    expect(state.state.traffic[MODEL]).toEqual({ split: [{ label: 'stable', weight: 1 }] });
    expect(state.state.models[MODEL]?.version_labels).toEqual({ stable: 1 });
    expect(state.models.find((m) => m.name === MODEL)?.versions.map((v) => v.version)).toEqual([1, 2]);
    const listed = (await client.listModels()).find((m) => m.name === MODEL)!;
    expect(listed.versionLabels).toEqual({ stable: 1 });
    expect(listed.traffic).toEqual({ split: [{ label: 'stable', weight: 1 }] });

    await client.clearTraffic(MODEL);
    expect((await client.predict(MODEL, image(0))).version).toBe(2);
    expect(await client.deleteLabel(MODEL, 'stable')).toEqual({});
    expect((await client.adminState()).state.traffic[MODEL]).toBeUndefined();
  });

  it('throws ServingClientError with the status, the server message and the URL', async () => {
    const unknown = await client.predict('no-such-model', image(0)).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(ServingClientError);
    const e = unknown as ServingClientError;
    expect(e.kind).toBe('http');
    expect(e.status).toBe(404);
    expect(e.url).toBe(`${client.url}/v1/models/no-such-model:predict`);
    expect(e.serverMessage).toMatch(/no-such-model/);
    expect(e.message).toContain('404');

    const badLabel = (await client.setLabel(MODEL, 'canary', 99).catch((x: unknown) => x)) as ServingClientError;
    expect(badLabel.status).toBe(400);
    expect(badLabel.serverMessage).toMatch(/version 99 .* is not AVAILABLE/);

    const anonymous = new ServingClient({ url: client.url });
    const denied = (await anonymous.adminState().catch((x: unknown) => x)) as ServingClientError;
    expect(denied).toBeInstanceOf(ServingClientError);
    expect(denied.status).toBe(401);
    expect(denied.message).toMatch(/no admin token/);

    // Nothing listens on a port just freed: unreachable, no status.
    const port = await freePort();
    const nowhere = new ServingClient({ url: `http://127.0.0.1:${port}` });
    const refused = (await nowhere.predict(MODEL, image(0)).catch((x: unknown) => x)) as ServingClientError;
    expect(refused).toBeInstanceOf(ServingClientError);
    expect(refused.kind).toBe('unreachable');
    expect(refused.status).toBeNull();
    expect(refused.url).toBe(`http://127.0.0.1:${port}/v1/models/${MODEL}:predict`);
    expect(refused.message).toMatch(/server unreachable.*ECONNREFUSED/);
    await expect(nowhere.metricsText()).rejects.toThrow(ServingClientError);

    // A server that accepts the connection and never answers: a timeout.
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const slow = new ServingClient(
        { url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` },
        { timeoutMs: 200 },
      );
      const timedOut = (await slow.ready().catch((x: unknown) => x)) as ServingClientError;
      expect(timedOut.kind).toBe('timeout');
      expect(timedOut.message).toMatch(/no answer within 200 ms/);
    } finally {
      silent.close();
    }
  });
});

describe('metrics snapshots', () => {
  it('diff to exactly the requests, errors, feedback, classes and shadow copies sent in between', async () => {
    await until(
      async () => (await client.modelStatus(MODEL)).filter((s) => s.state === 'AVAILABLE').length === 2,
      10_000,
      'both versions AVAILABLE',
    );
    const before = servingSnapshot(await client.metrics(), MODEL);
    expect(before.versions['2']?.requests).toBeGreaterThan(0);

    // K requests: 12 to v1 and 18 to v2 as the router places them (a split of one version, then the
    // other), one row each, timed on this side.
    const sent: { version: number; id: string; predicted: number; label: number; ms: number }[] = [];
    for (let i = 0; i < 30; i++) {
      if (i === 0 || i === 12) await client.setTraffic(MODEL, { split: [{ version: i < 12 ? 1 : 2, weight: 1 }] });
      const t0 = performance.now();
      const answer = await client.predict(MODEL, image(i));
      sent.push({
        version: answer.version,
        id: answer.requestId,
        predicted: argmax(answer.predictions[0]!),
        label: examples.labels[i]!,
        ms: performance.now() - t0,
      });
    }
    // 3 requests the server refuses after routing them to v2 (rows of the wrong shape): the client's
    // mistake, in errorsByStatus but neither a request nor an error of v2's window.
    for (let i = 0; i < 3; i++) {
      await expect(client.predict(MODEL, new Float32Array(10), { rowShape: [10] })).rejects.toMatchObject({
        status: 400,
      });
    }
    // Requests that pin a version are served (and metered per version) but are not in its window.
    for (let i = 0; i < 4; i++) await client.predict(MODEL, image(i), { version: 1 });
    await expect(client.predict(MODEL, new Float32Array(10), { version: 1, rowShape: [10] })).rejects.toMatchObject({
      status: 400,
    });
    await client.clearTraffic(MODEL);
    // L labels: every v1 answer and every other v2 answer.
    const labelled = sent.filter((s, i) => s.version === 1 || i % 2 === 0);
    const fed = await client.feedback(
      MODEL,
      labelled.map((s) => ({ requestId: s.id, labels: s.label })),
    );
    expect(fed.accepted).toBe(labelled.length);

    const window = diffSnapshots(servingSnapshot(await client.metrics(), MODEL), before);
    expect(restartedBetween(servingSnapshot(await client.metrics(), MODEL), before)).toBe(false);
    const stats = windowStats(window);
    for (const v of [1, 2]) {
      const mine = sent.filter((s) => s.version === v);
      const mineLabelled = labelled.filter((s) => s.version === v);
      const s = stats[String(v)]!;
      expect(s.requests).toBe(mine.length);
      expect(s.errors).toBe(0);
      expect(window.versions[String(v)]!.errorsByStatus).toEqual(v === 2 ? { INVALID_ARGUMENT: 3 } : {});
      expect(s.feedback.labelled).toBe(mineLabelled.length);
      expect(s.feedback.correct).toBe(mineLabelled.filter((x) => x.predicted === x.label).length);
      expect(s.feedback.accuracy).toBeCloseTo(
        mineLabelled.filter((x) => x.predicted === x.label).length / mineLabelled.length,
        12,
      );
      // The server's predicted-class counts are the arg-max of what this side received.
      expect(s.classLabels).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'].slice(0, s.classLabels.length));
      const counts = Array.from(
        { length: s.classLabels.length },
        (_, c) => mine.filter((x) => x.predicted === c).length,
      );
      expect(s.classCounts).toEqual(counts);
      // Latency: the histogram holds the successful requests, each shorter than its round trip here.
      const h = window.versions[String(v)]!.latency;
      expect(h.count).toBe(mine.length);
      const slowest = Math.max(...mine.map((x) => x.ms)) / 1000;
      const boundAbove = h.buckets.find((b) => b.le >= slowest)?.le ?? Infinity;
      expect(h.buckets.find((b) => b.le === boundAbove)?.count ?? h.count).toBe(h.count);
      expect(s.p99Ms).not.toBeNull();
      expect(s.p99Ms!).toBeGreaterThan(0);
      expect(s.p99Ms!).toBeLessThanOrEqual(boundAbove * 1000);
      expect(s.p50Ms!).toBeLessThanOrEqual(s.p99Ms!);
      expect(h.sum * 1000).toBeLessThanOrEqual(mine.reduce((t, x) => t + x.ms, 0));
    }

    // Shadow: all of v2's routed traffic copied to v1; each copy agrees or disagrees.
    await client.setTraffic(MODEL, { split: [{ version: 2, weight: 1 }], shadow: { version: 1, percent: 100 } });
    const beforeShadow = servingSnapshot(await client.metrics(), MODEL);
    const served = await Promise.all(Array.from({ length: 8 }, (_, i) => client.predict(MODEL, image(50 + i))));
    expect(served.every((a) => a.version === 2)).toBe(true);
    let shadowWindow: MetricsSnapshot | undefined;
    await until(
      async () => {
        shadowWindow = diffSnapshots(servingSnapshot(await client.metrics(), MODEL), beforeShadow);
        const s = shadowWindow.versions['1']?.shadow;
        return s !== undefined && s.agree + s.disagree + s.error === 8;
      },
      10_000,
      'eight shadow copies',
    );
    const shadowStats = windowStats(shadowWindow!)['1']!;
    expect(shadowStats.shadow.error).toBe(0);
    expect(shadowStats.requests).toBe(0);
    expect(shadowStats.shadow.agreement).toBeCloseTo(shadowStats.shadow.agree / 8, 12);
    await client.clearTraffic(MODEL);
  });

  it('sums replicas and survives a restart (a counter that went down starts over)', async () => {
    const port = await freePort();
    const start = () => startServer(base, { restPort: port });
    let replica = await start();
    const other = new ServingClient({ url: `http://127.0.0.1:${port}` });
    try {
      const a0 = servingSnapshot(await client.metrics(), MODEL);
      const b0 = servingSnapshot(await other.metrics(), MODEL);
      for (let i = 0; i < 7; i++) await client.predict(MODEL, image(i));
      for (let i = 0; i < 4; i++) await other.predict(MODEL, image(i));
      const a1 = servingSnapshot(await client.metrics(), MODEL);
      const b1 = servingSnapshot(await other.metrics(), MODEL);
      const merged = mergeSnapshots([diffSnapshots(a1, a0), diffSnapshots(b1, b0)]);
      expect(merged.replicas).toBe(2);
      expect(merged.versions['2']!.requests).toBe(11);
      expect(merged.versions['2']!.latency.count).toBe(11);
      expect(merged.versions['2']!.latency.buckets).toEqual(
        a1.versions['2']!.latency.buckets.map((b, i) => ({
          le: b.le,
          count:
            b.count -
            (a0.versions['2']?.latency.buckets[i]?.count ?? 0) +
            b1.versions['2']!.latency.buckets[i]!.count -
            (b0.versions['2']?.latency.buckets[i]?.count ?? 0),
        })),
      );

      // The replica restarts (its counters start at 0) and answers 2 more requests.
      await replica.close();
      replica = await start();
      await until(
        async () => (await other.ready().catch(() => ({ ready: false }))).ready,
        10_000,
        'the restarted replica',
      );
      for (let i = 0; i < 2; i++) await other.predict(MODEL, image(i));
      const b2 = servingSnapshot(await other.metrics(), MODEL);
      expect(restartedBetween(b2, b1)).toBe(true);
      const window = diffSnapshots(b2, b1);
      expect(window.versions['2']!.requests).toBe(2);
      expect(window.versions['2']!.latency.count).toBe(2);
      // Summed snapshots cannot tell a restart from the whole: each counter on its own.
      const sumBefore = mergeSnapshots([a1, b1]);
      const sumAfter = mergeSnapshots([servingSnapshot(await client.metrics(), MODEL), b2]);
      expect(diffSnapshots(sumAfter, sumBefore).versions['2']!.requests).toBe(sumAfter.versions['2']!.requests);
    } finally {
      await replica.close();
    }
  });

  it("reads a model's counters from the registry's JSON", async () => {
    const metrics = new ServingMetrics();
    const call = { model: 'm', version: '1', protocol: 'rest' } as const;
    metrics.requests.inc({ ...call, api: 'predict', status: 'OK' }, 3);
    metrics.requests.inc({ ...call, api: 'classify', protocol: 'grpc', status: 'INVALID_ARGUMENT' });
    metrics.requests.inc({ ...call, api: 'predict', status: 'INTERNAL' });
    metrics.requests.inc({ ...call, api: 'predict', status: 'RESOURCE_EXHAUSTED' }, 5);
    // Pinned requests (the caller chose the version): not in the version's window, whatever their outcome.
    metrics.requests.inc({ ...call, api: 'predict', status: 'OK', route: 'pinned' }, 7);
    metrics.requests.inc({ ...call, api: 'predict', status: 'INTERNAL', route: 'pinned' }, 7);
    metrics.latency.observe({ ...call, api: 'predict', route: 'pinned' }, 0.003);
    metrics.requests.inc({ ...call, api: 'metadata', status: 'OK' });
    metrics.requests.inc({ ...call, version: '', api: 'predict', status: 'NOT_FOUND' });
    metrics.requests.inc({ ...call, model: 'other', api: 'predict', status: 'OK' });
    metrics.latency.observe({ ...call, api: 'predict' }, 0.003);
    // Above the last finite bound: only the +Inf bucket, which is the count.
    metrics.latency.observe({ ...call, api: 'classify', protocol: 'grpc' }, 20);
    metrics.feedback.inc({ model: 'm', version: '1', outcome: 'correct' }, 2);
    metrics.predictedClass.inc({ model: 'm', version: '1', class: 'cat' }, 4);
    metrics.shadow.inc({ model: 'm', version: '2', outcome: 'disagree' });
    // A NaN gauge arrives as null after JSON, and is skipped.
    metrics.onlineAccuracy.set({ model: 'm', version: '1' }, NaN);

    const snapshot = servingSnapshot(JSON.parse(JSON.stringify(await metrics.json())), 'm');
    expect(snapshot.processStartTimeSeconds).toBeGreaterThan(0);
    expect(snapshot.unrouted).toEqual({ requests: 1, errorsByStatus: { NOT_FOUND: 1 } });
    const v1 = snapshot.versions['1']!;
    // 3 OK and 1 INTERNAL; the client's INVALID_ARGUMENT and the 429s are not the version's failures.
    expect(v1.requests).toBe(4);
    expect(v1.errors).toBe(1);
    expect(v1.errorsByStatus).toEqual({ INVALID_ARGUMENT: 1, INTERNAL: 1, RESOURCE_EXHAUSTED: 5 });
    expect(v1.latency.count).toBe(2);
    expect(v1.latency.sum).toBeCloseTo(20.003, 12);
    expect(v1.latency.buckets.find((b) => b.le === 0.0025)?.count).toBe(0);
    expect(v1.latency.buckets.find((b) => b.le === 0.005)?.count).toBe(1);
    expect(v1.latency.buckets.at(-1)).toEqual({ le: 10, count: 1 });
    expect(v1.feedback).toEqual({ correct: 2, incorrect: 0 });
    expect(v1.classes).toEqual({ cat: 4 });
    expect(snapshot.versions['2']!.shadow).toEqual({ agree: 0, disagree: 1, error: 0 });
  });

  it('computes histogram_quantile as Prometheus does', () => {
    const buckets = [
      { le: 1, count: 10 },
      { le: 2, count: 30 },
      { le: 4, count: 40 },
      { le: Infinity, count: 40 },
    ];
    expect(histogramQuantile(buckets, 0.5)).toBeCloseTo(1.5, 12);
    expect(histogramQuantile(buckets, 0.99)).toBeCloseTo(3.92, 12);
    expect(histogramQuantile(buckets, 1)).toBe(4);
    expect(histogramQuantile(buckets, 0.1)).toBeCloseTo(0.4, 12);
    expect(histogramQuantile([...buckets].reverse(), 0.5)).toBeCloseTo(1.5, 12);
    // A rank in the +Inf bucket answers the highest finite bound.
    expect(
      histogramQuantile(
        [
          { le: 1, count: 10 },
          { le: Infinity, count: 20 },
        ],
        0.9,
      ),
    ).toBe(1);
    expect(
      histogramQuantile(
        [
          { le: 1, count: 10 },
          { le: 2, count: 20 },
        ],
        0.5,
      ),
    ).toBeNaN();
    expect(
      histogramQuantile(
        [
          { le: 1, count: 0 },
          { le: Infinity, count: 0 },
        ],
        0.5,
      ),
    ).toBeNaN();
    expect(histogramQuantile(buckets, -0.1)).toBe(-Infinity);
    expect(histogramQuantile(buckets, 1.1)).toBe(Infinity);
    // Non-monotonic counts are evened out: 2 → 8 (the 9 before it) does not go backwards.
    expect(
      histogramQuantile(
        [
          { le: 1, count: 9 },
          { le: 2, count: 8 },
          { le: 4, count: 10 },
          { le: Infinity, count: 10 },
        ],
        0.95,
      ),
    ).toBeCloseTo(3, 12);
  });
});
