import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelServer } from '../../serving/server';
import { selectBackend } from '../../engine/backend';
import type { Examples } from '../../training/batches';
import { fashionBase, metricValue, nestedImage, removeDir, request, startServer, testExamples } from './helpers';

/**
 * Feedback and batching: online accuracy in the metrics equals the accuracy computed from the
 * same labels; concurrent requests are merged into fewer model calls, and the batch sizes and
 * queueing time are measured.
 */

let base: string;
let server: ModelServer;
let port: number;
let examples: Examples;
const COUNT = 120;

beforeAll(async () => {
  await selectBackend();
  examples = await testExamples(500, COUNT);
  ({ base } = await fashionBase('feedback', 5));
  server = await startServer(base, { batching: { max_batch_size: 16, batch_timeout_micros: 5000 } });
  port = server.restPort!;
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

const metrics = async () => (await request(port, 'GET', '/monitoring/prometheus/metrics')).body.toString();

describe('feedback', () => {
  it('turns true labels into an online accuracy equal to the one computed from the same labels', async () => {
    const answers: { id: string; predicted: number[]; labels: number[] }[] = [];
    // Requests of 1 to 3 rows, sent concurrently so that they are batched together.
    const requests: number[][] = [];
    for (let start = 0; start < COUNT; ) {
      const rows = Math.min(1 + (start % 3), COUNT - start);
      requests.push(Array.from({ length: rows }, (_, i) => start + i));
      start += rows;
    }
    await Promise.all(
      requests.map(async (indices) => {
        const answer = await request(port, 'POST', '/v1/models/fashion:predict', {
          instances: indices.map((i) => nestedImage(examples.images, i)),
        });
        expect(answer.status).toBe(200);
        const predicted = (answer.json.predictions as number[][]).map((p) => p.indexOf(Math.max(...p)));
        answers.push({ id: answer.json.request_id, predicted, labels: indices.map((i) => examples.labels[i]!) });
      }),
    );
    const rows = answers.flatMap((a) => a.predicted.map((p, i) => p === a.labels[i]));
    const accuracy = rows.filter(Boolean).length / rows.length;
    const feedback = answers.map((a) => ({
      request_id: a.id,
      labels: a.labels.length === 1 ? a.labels[0]! : a.labels,
    }));
    const posted = await request(port, 'POST', '/v1/models/fashion:feedback', {
      feedback: [...feedback, { request_id: 'not-a-prediction', labels: 1 }],
    });
    expect(posted.status).toBe(200);
    expect(posted.json).toEqual({
      accepted: answers.length,
      rows: COUNT,
      unknown_request_ids: ['not-a-prediction'],
      rejected: [],
    });
    const text = await metrics();
    expect(metricValue(text, 'gantry_serving_online_accuracy', { model: 'fashion', version: '1' })).toBeCloseTo(
      accuracy,
      12,
    );
    expect(metricValue(text, 'gantry_serving_online_accuracy_samples', { model: 'fashion', version: '1' })).toBe(COUNT);
    expect(
      metricValue(text, 'gantry_serving_feedback_total', { model: 'fashion', version: '1', outcome: 'correct' }) ?? 0,
    ).toBe(rows.filter(Boolean).length);
    // The same feedback again is not counted twice.
    const again = await request(port, 'POST', '/v1/models/fashion:feedback', { feedback: feedback.slice(0, 3) });
    expect(again.json.accepted).toBe(0);
    expect(
      metricValue(await metrics(), 'gantry_serving_online_accuracy_samples', { model: 'fashion', version: '1' }),
    ).toBe(COUNT);
    // A client's own request id is echoed for its tracing; the id feedback refers to is the server's.
    const own = await request(
      port,
      'POST',
      '/v1/models/fashion:predict',
      { instances: [nestedImage(examples.images, 0)] },
      { 'x-request-id': 'client-chosen-id-1' },
    );
    expect(own.json.request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(own.headers['x-request-id']).toBe(own.json.request_id);
    expect(own.headers['x-client-request-id']).toBe('client-chosen-id-1');
    const bad = await request(port, 'POST', '/v1/models/fashion:feedback', {
      feedback: [
        { request_id: 'client-chosen-id-1', labels: 1 },
        { request_id: own.json.request_id, labels: [1, 2] },
      ],
    });
    expect(bad.json.unknown_request_ids).toEqual(['client-chosen-id-1']);
    expect(bad.json.rejected).toEqual([
      { request_id: own.json.request_id, reason: '2 labels for a prediction of 1 rows' },
    ]);
    expect(
      (await request(port, 'POST', '/v1/models/fashion:feedback', { feedback: [{ request_id: 'x', labels: -1 }] }))
        .status,
    ).toBe(400);
  });

  it('merges concurrent requests into batches of at most max_batch_size and measures them', async () => {
    const before = await metrics();
    const batchesBefore =
      metricValue(before, 'gantry_serving_batch_size_count', { model: 'fashion', version: '1' }) ?? 0;
    const rowsBefore = metricValue(before, 'gantry_serving_batch_size_sum', { model: 'fashion', version: '1' }) ?? 0;
    await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        request(port, 'POST', '/v1/models/fashion:predict', { instances: [nestedImage(examples.images, i)] }),
      ),
    );
    const text = await metrics();
    const batches =
      (metricValue(text, 'gantry_serving_batch_size_count', { model: 'fashion', version: '1' }) ?? 0) - batchesBefore;
    const rows =
      (metricValue(text, 'gantry_serving_batch_size_sum', { model: 'fashion', version: '1' }) ?? 0) - rowsBefore;
    expect(rows).toBe(64);
    expect(batches).toBeGreaterThanOrEqual(4);
    expect(batches).toBeLessThan(64);
    expect(metricValue(text, 'gantry_serving_batch_size_bucket', { model: 'fashion', version: '1', le: '16' })).toBe(
      metricValue(text, 'gantry_serving_batch_size_count', { model: 'fashion', version: '1' }),
    );
    expect(
      metricValue(text, 'gantry_serving_queue_seconds_count', { model: 'fashion', version: '1' }),
    ).toBeGreaterThanOrEqual(64);
    // One model-call time per batch: the split of a request's latency into the model's share and the server's.
    expect(metricValue(text, 'gantry_serving_model_call_seconds_count', { model: 'fashion', version: '1' })).toBe(
      metricValue(text, 'gantry_serving_batch_size_count', { model: 'fashion', version: '1' }),
    );
    expect(
      metricValue(text, 'gantry_serving_model_call_seconds_sum', { model: 'fashion', version: '1' }),
    ).toBeGreaterThan(0);
  });
});
