import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../engine/backend';
import { ServingClient, ServingClientError } from '../../serving/client';
import { FeedbackStore } from '../../serving/feedback';
import { parseFeedbackTokens } from '../../serving/feedback-auth';
import { loadServable, type LoadOptions, type Servable } from '../../serving/loader';
import { ServingMetrics } from '../../serving/metrics';
import { diffSnapshots, servingSnapshot, type MetricsSnapshot } from '../../serving/metrics-snapshot';
import { versionWindow, windowStats } from '../../serving/metrics-window';
import type { ModelServer } from '../../serving/server';
import type { Examples } from '../../training/batches';
import {
  burst,
  fashionBase,
  metricValue,
  nestedImage,
  PIXELS,
  removeDir,
  request,
  startServer,
  testExamples,
} from './helpers';

/**
 * Feedback steers rollouts, so who may send it is checked, against a real server on real sockets: a
 * client without the feedback token (none, or a wrong one) cannot move a canary's online accuracy or
 * error rate — its wrong labels are refused, and its pinned garbage, pinned traffic and overload
 * leave the window the canary analysis reads as it was — while the token holder's labels move it;
 * a client-chosen x-request-id cannot overwrite another's prediction; and the predictions remembered
 * for feedback stay within their byte bound under a flood of large ones.
 */

const MODEL = 'fashion';
const ADMIN = 'trust-test-admin-token-0123456789';
const LABELER = 'trust-test-feedback-token-0123456789';
let base: string;
let server: ModelServer;
let url: string;
let admin: ServingClient;
let anonymous: ServingClient;
let labeler: ServingClient;
let examples: Examples;
let imageBody: string;

/** While > 0, each model call takes this long (a flood then piles up in the queue). */
let slowMs = 0;
const slowWhenAsked = async (dir: string, options: LoadOptions): Promise<Servable> => {
  const servable = await loadServable(dir, options);
  return {
    ...servable,
    run(inputs: Parameters<typeof servable.run>[0]) {
      const end = performance.now() + slowMs;
      while (performance.now() < end);
      return servable.run(inputs);
    },
  };
};

/** `count` concurrent POSTs from a process of their own (in this one they would wait for the server's loop). */
const image = (i: number) => examples.images.subarray(i * PIXELS, (i + 1) * PIXELS);
const argmax = (row: number[]) => row.indexOf(Math.max(...row));
const snapshot = async () => servingSnapshot(await admin.metrics(), MODEL);
/** What the canary analysis judges, per version, over the window between two snapshots. */
const judged = (later: MetricsSnapshot, earlier: MetricsSnapshot) =>
  Object.fromEntries(Object.entries(windowStats(diffSnapshots(later, earlier))).map(([v, s]) => [v, versionWindow(s)]));

beforeAll(async () => {
  await selectBackend();
  examples = await testExamples(0, 300);
  imageBody = JSON.stringify({ instances: [nestedImage(examples.images, 0)] });
  ({ base } = await fashionBase('trust', 31, 32));
  server = await startServer(
    base,
    {
      modelConfig: {
        model_config_list: {
          config: [{ name: MODEL, base_path: path.join(base, MODEL), model_version_policy: { all: {} } }],
        },
      },
      adminToken: ADMIN,
      feedbackTokens: [
        { name: 'labeler', token: LABELER },
        { name: 'other', token: 'trust-test-other-token-0123456789' },
      ],
      // A short queue, so that a flood of pinned requests is refused with 429s.
      batching: { max_batch_size: 1, max_enqueued_batches: 2 },
    },
    { loadServable: slowWhenAsked },
  );
  url = `http://127.0.0.1:${server.restPort}`;
  admin = new ServingClient({ url, adminToken: ADMIN });
  anonymous = new ServingClient({ url });
  labeler = new ServingClient({ url, feedbackToken: LABELER });
  await server.poll();
  // Version 2 is the canary: half the routed traffic, sticky per client key.
  await admin.setTraffic(MODEL, {
    split: [
      { version: 1, weight: 50 },
      { version: 2, weight: 50 },
    ],
  });
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

describe('trusted feedback', () => {
  it("a client without the feedback token cannot move a canary's online accuracy or error rate", async () => {
    const s0 = await snapshot();
    // Honest routed traffic from 8 users.
    const answers: { id: string; version: number; predicted: number; label: number }[] = [];
    for (let i = 0; i < 40; i++) {
      const a = await anonymous.predict(MODEL, image(i), { clientKey: `user-${i % 8}` });
      answers.push({
        id: a.requestId,
        version: a.version,
        predicted: argmax(a.predictions[0]!),
        label: examples.labels[i]!,
      });
    }
    expect(new Set(answers.map((a) => a.version))).toEqual(new Set([1, 2]));
    const s1 = await snapshot();
    const honest = judged(s1, s0);
    const metricsBefore = await (await fetch(`${url}/monitoring/prometheus/metrics`)).text();

    // The attacker: wrong labels for every answer, without a token and with a wrong one.
    const wrong = answers.map((a) => ({ request_id: a.id, labels: (a.predicted + 1) % 10 }));
    const none = await request(server.restPort!, 'POST', `/v1/models/${MODEL}:feedback`, { feedback: wrong });
    expect(none.status).toBe(401);
    const bad = await request(
      server.restPort!,
      'POST',
      `/v1/models/${MODEL}:feedback`,
      { feedback: wrong },
      { authorization: 'Bearer not-the-token-0123456789' },
    );
    expect(bad.status).toBe(403);
    await expect(anonymous.feedback(MODEL, [{ requestId: answers[0]!.id, labels: 0 }])).rejects.toThrow(
      /401.*no feedback token/,
    );
    // Pinned garbage (wrong shapes) and pinned traffic to the canary, routed garbage, and a flood of
    // pinned requests into the overload protection's 429s.
    for (let i = 0; i < 10; i++) {
      await expect(anonymous.predict(MODEL, new Float32Array(10), { version: 2, rowShape: [10] })).rejects.toThrow(
        ServingClientError,
      );
      await expect(anonymous.predict(MODEL, new Float32Array(10), { rowShape: [10] })).rejects.toThrow(
        ServingClientError,
      );
      await anonymous.predict(MODEL, image(100 + i), { version: 2 });
    }
    // Each model call takes 250 ms while the flood lasts, long enough for the flooding process to get all its
    // requests in even when a loaded machine starves it; a flood that still drew no 429 is sent again.
    slowMs = 250;
    let flood: number[] = [];
    for (let attempt = 0; attempt < 3 && !flood.includes(429); attempt++)
      flood = (await burst(server.restPort!, `/v1/models/${MODEL}/versions/2:predict`, 40, imageBody)).map(
        (a) => a.status,
      );
    slowMs = 0;
    const refused = flood.filter((status) => status !== 200);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((status) => status === 429)).toBe(true);

    const s2 = await snapshot();
    // The canary's window (and the baseline's) is exactly what the honest traffic made it.
    expect(judged(s2, s0)).toEqual(honest);
    const metricsAfter = await (await fetch(`${url}/monitoring/prometheus/metrics`)).text();
    for (const version of ['1', '2'])
      expect(metricValue(metricsAfter, 'gantry_serving_online_accuracy', { model: MODEL, version })).toBe(
        metricValue(metricsBefore, 'gantry_serving_online_accuracy', { model: MODEL, version }),
      );
    // The refused calls are counted, as refused, untrusted and anonymous.
    expect(
      metricValue(metricsAfter, 'gantry_serving_feedback_total', {
        model: MODEL,
        outcome: 'refused',
        client: 'anonymous',
        trusted: 'false',
      }),
    ).toBe(2 * wrong.length + 1);
    // The pinned requests were served and metered per version, for dashboards.
    expect(
      metricValue(metricsAfter, 'gantry_serving_requests_total', {
        model: MODEL,
        version: '2',
        api: 'predict',
        status: 'RESOURCE_EXHAUSTED',
        route: 'pinned',
      }),
    ).toBe(refused.length);

    // The token holder's true labels move the window, and are counted as theirs.
    const result = await labeler.feedback(
      MODEL,
      answers.map((a) => ({ requestId: a.id, labels: a.label })),
    );
    expect(result).toMatchObject({ accepted: answers.length, unknown_request_ids: [], rejected: [] });
    const labelled = judged(await snapshot(), s0);
    for (const v of [1, 2]) {
      const mine = answers.filter((a) => a.version === v);
      const correct = mine.filter((a) => a.predicted === a.label).length;
      expect(labelled[String(v)]!.feedback).toMatchObject({ labelled: mine.length, correct });
      expect(labelled[String(v)]!.feedback.accuracy).toBeCloseTo(correct / mine.length, 12);
      expect(labelled[String(v)]!.requests).toBe(mine.length);
      expect(labelled[String(v)]!.errorRate).toBe(0);
    }
    const text = await (await fetch(`${url}/monitoring/prometheus/metrics`)).text();
    const trusted = ['correct', 'incorrect'].reduce(
      (n, outcome) =>
        n +
        ['1', '2'].reduce(
          (m, version) =>
            m +
            (metricValue(text, 'gantry_serving_feedback_total', {
              model: MODEL,
              version,
              outcome,
              client: 'labeler',
              trusted: 'true',
            }) ?? 0),
          0,
        ),
      0,
    );
    expect(trusted).toBe(answers.length);
  });

  it("a client-chosen x-request-id cannot overwrite another client's prediction", async () => {
    // Alice's prediction, then Mallory's with Alice's own x-request-id and with the server's id of Alice's
    // answer: each answer gets a fresh server id, and Alice's prediction stays as it was.
    const alice = await anonymous.predict(MODEL, image(0), { version: 1, requestId: 'shared-id' });
    const predicted = argmax(alice.predictions[0]!);
    let other = 1;
    let mallory = await anonymous.predict(MODEL, image(other), { version: 1, requestId: 'shared-id' });
    while (argmax(mallory.predictions[0]!) === predicted && other < 200)
      mallory = await anonymous.predict(MODEL, image(++other), { version: 1, requestId: alice.requestId });
    expect(argmax(mallory.predictions[0]!)).not.toBe(predicted);
    const again = await request(
      server.restPort!,
      'POST',
      `/v1/models/${MODEL}/versions/1:predict`,
      { instances: [nestedImage(examples.images, other)] },
      { 'x-request-id': alice.requestId },
    );
    expect(again.status).toBe(200);
    expect(again.headers['x-client-request-id']).toBe(alice.requestId);
    for (const id of [mallory.requestId, again.json.request_id]) expect(id).not.toBe(alice.requestId);

    // Alice's label is her own prediction's class: correct, because her prediction was not replaced.
    const before = await snapshot();
    const result = await labeler.feedback(MODEL, [
      { requestId: alice.requestId, labels: predicted },
      { requestId: 'shared-id', labels: predicted },
    ]);
    expect(result).toMatchObject({ accepted: 1, unknown_request_ids: ['shared-id'] });
    const window = judged(await snapshot(), before);
    expect(window['1']!.feedback).toMatchObject({ labelled: 1, correct: 1 });
  });
});

describe('feedback memory', () => {
  it('stays within its byte bound under a flood of large predictions, forgetting the oldest', async () => {
    const bound = 64 * 1024;
    const small = await startServer(base, {
      feedbackMemoryBytes: bound,
      feedbackTokens: [{ name: 'labeler', token: LABELER }],
      batching: { max_batch_size: 64, max_enqueued_batches: 64 },
    });
    try {
      const client = new ServingClient({ url: `http://127.0.0.1:${small.restPort}`, feedbackToken: LABELER });
      const rows = 64;
      const body = Float32Array.from(examples.images.subarray(0, rows * PIXELS));
      const ids: string[] = [];
      let peak = 0;
      for (let round = 0; round < 15; round++) {
        const answers = await Promise.all(
          Array.from({ length: 20 }, () => client.predict(MODEL, body, { encoding: 'binary' })),
        );
        ids.push(...answers.map((a) => a.requestId));
        const text = await (await fetch(`http://127.0.0.1:${small.restPort}/monitoring/prometheus/metrics`)).text();
        peak = Math.max(peak, metricValue(text, 'gantry_serving_feedback_memory_bytes', {}) ?? 0);
      }
      // 300 predictions of 64 rows: more than the bound holds, so the memory is full, never over.
      expect(peak).toBeGreaterThan(bound * 0.8);
      expect(peak).toBeLessThanOrEqual(bound);
      const text = await (await fetch(`http://127.0.0.1:${small.restPort}/monitoring/prometheus/metrics`)).text();
      const evicted = metricValue(text, 'gantry_serving_feedback_evictions_total', { model: MODEL })!;
      expect(evicted).toBeGreaterThan(0);
      // Oldest first: labels for every prediction find exactly the ones not forgotten, the last rounds'
      // (the rounds ran one after another; within a round the order is the server's).
      const labels = Array.from({ length: rows }, () => 0);
      const result = await client.feedback(
        MODEL,
        ids.map((requestId) => ({ requestId, labels })),
      );
      expect(result.accepted).toBe(ids.length - evicted);
      expect(result.unknown_request_ids).toHaveLength(evicted);
      const forgotten = new Set(result.unknown_request_ids);
      for (const id of ids.slice(0, 20 * Math.floor(evicted / 20))) expect(forgotten.has(id)).toBe(true);
      for (const id of ids.slice(20 * Math.ceil(evicted / 20))) expect(forgotten.has(id)).toBe(false);
    } finally {
      await small.close();
    }
  });

  it('never remembers a prediction larger than the whole memory', async () => {
    const metrics = new ServingMetrics();
    const store = new FeedbackStore(metrics, 100, 1000, 64 * 1024);
    store.remember('small', MODEL, 1, new Int32Array(10));
    store.remember('huge', MODEL, 1, new Int32Array(20_000));
    expect(store.remembered).toBe(1);
    expect(store.memoryUsed).toBeLessThanOrEqual(64 * 1024);
    expect(metricValue(await metrics.text(), 'gantry_serving_feedback_evictions_total', { model: MODEL })).toBe(1);
    expect(store.record(MODEL, { feedback: [{ request_id: 'huge', labels: 0 }] }).unknown_request_ids).toEqual([
      'huge',
    ]);
  });
});

describe('a server without feedback tokens', () => {
  it('refuses all feedback unless anonymous feedback is allowed (gantry serve allows it only when told)', async () => {
    const closed = await startServer(base, { anonymousFeedback: false });
    try {
      const fed = await request(closed.restPort!, 'POST', `/v1/models/${MODEL}:feedback`, {
        feedback: [{ request_id: 'x', labels: 1 }],
      });
      expect(fed.status).toBe(403);
      expect(fed.json.error).toMatch(/takes no feedback.*--feedback-token-file/);
    } finally {
      await closed.close();
    }
  });
});

describe('feedback token files', () => {
  it('reads NAME:TOKEN lines and bare tokens, and names the line at fault without the token', () => {
    expect(
      parseFeedbackTokens('# labelers\nops:ops-token-0123456789abcdef\n\nbare-token-0123456789abcdef\n', 'f'),
    ).toEqual([
      { name: 'ops', token: 'ops-token-0123456789abcdef' },
      { name: 'default', token: 'bare-token-0123456789abcdef' },
    ]);
    expect(() => parseFeedbackTokens('ops:short', 'tokens.txt')).toThrow(
      /^tokens.txt line 1: token must be at least 16/,
    );
    expect(() => parseFeedbackTokens('a:0123456789abcdef0\na:0123456789abcdef1', 'f')).toThrow(/line 2.*twice/);
    expect(() => parseFeedbackTokens('anonymous:0123456789abcdef0', 'f')).toThrow(/reserved/);
  });
});
