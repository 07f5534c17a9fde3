import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServingProtos } from '../../serving/grpc/protos';
import type { ModelServer } from '../../serving/server';
import { selectBackend } from '../../engine/backend';
import type { ModelFiles } from '../../engine/model-files';
import { expectFashionSignature, fashionBase, metricValue, nestedImage, PIXELS, predictInProcess } from './helpers';
import { maxDiff, removeDir, request, startServer, testExamples } from './helpers';

/**
 * TF Serving's REST API on a Fashion-MNIST model: predict (row, columnar, b64, protobuf and raw
 * binary bodies), classify, status, metadata, the model list, health and metrics. Answers must
 * equal the in-process model.predict of the same files on the same images.
 */

let base: string;
let server: ModelServer;
let port: number;
let files: ModelFiles;
let pixels: Float32Array;
let labels: Uint8Array;
let expected: Float32Array;
const ROWS = 8;

beforeAll(async () => {
  await selectBackend();
  const slice = await testExamples(0, ROWS);
  pixels = Float32Array.from(slice.images);
  labels = slice.labels as Uint8Array;
  const published = await fashionBase('rest', 7);
  base = published.base;
  files = published.files[0];
  expected = await predictInProcess(files, pixels, ROWS);
  server = await startServer(base);
  port = server.restPort!;
});

afterAll(async () => {
  await server?.close();
  await removeDir(base);
});

function expectClose(actual: ArrayLike<number>, wanted: ArrayLike<number>): void {
  expect(maxDiff(actual, wanted)).toBeLessThan(1e-6);
}

describe('REST predict', () => {
  it('answers the row format with the in-process predictions, a version header and a request id', async () => {
    const instances = Array.from({ length: ROWS }, (_, r) => nestedImage(pixels, r));
    const answer = await request(port, 'POST', '/v1/models/fashion:predict', { instances });
    expect(answer.status).toBe(200);
    expect(answer.json.predictions).toHaveLength(ROWS);
    expectClose((answer.json.predictions as number[][]).flat(), expected);
    expect(answer.headers['x-gantry-model-version']).toBe('1');
    expect(answer.headers['x-request-id']).toBe(answer.json.request_id);
    expect(answer.json.request_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers the columnar format, named inputs, an explicit version and a b64 tensor alike', async () => {
    const nested = Array.from({ length: ROWS }, (_, r) => nestedImage(pixels, r));
    const columnar = await request(port, 'POST', '/v1/models/fashion/versions/1:predict', {
      signature_name: 'serving_default',
      inputs: { input: nested },
    });
    expect(columnar.status).toBe(200);
    expectClose((columnar.json.outputs as number[][]).flat(), expected);
    const named = await request(port, 'POST', '/v1/models/fashion:predict', {
      instances: nested.slice(0, 2).map((image) => ({ input: image })),
    });
    expectClose((named.json.predictions as number[][]).flat(), expected.subarray(0, 20));
    const b64 = await request(port, 'POST', '/v1/models/fashion:predict', {
      inputs: { b64: Buffer.from(pixels.buffer).toString('base64') },
    });
    expect(b64.status).toBe(200);
    expectClose((b64.json.outputs as number[][]).flat(), expected);
  });

  it('accepts a binary PredictRequest (protobuf in, protobuf out) and a raw tensor body', async () => {
    const protos = loadServingProtos();
    const body = protos.encodePredictRequest({
      model_spec: { name: 'fashion' },
      inputs: {
        input: {
          dtype: 'DT_FLOAT',
          tensor_shape: { dim: [{ size: String(ROWS) }, { size: '28' }, { size: '28' }, { size: '1' }] },
          tensor_content: Buffer.from(pixels.buffer),
        },
      },
    });
    const answer = await request(port, 'POST', '/v1/models/fashion:predict', body, {
      'content-type': 'application/x-protobuf',
      accept: 'application/x-protobuf',
    });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toContain('application/x-protobuf');
    const decoded = protos.decodePredictResponse(answer.body) as {
      outputs: Record<string, { float_val: number[]; tensor_shape: { dim: { size: string }[] } }>;
    };
    expect(decoded.outputs.probabilities!.tensor_shape.dim.map((d) => d.size)).toEqual([String(ROWS), '10']);
    expectClose(decoded.outputs.probabilities!.float_val, expected);
    const raw = await request(port, 'POST', '/v1/models/fashion:predict', Buffer.from(pixels.buffer), {
      'content-type': 'application/octet-stream',
    });
    expect(raw.status).toBe(200);
    expectClose((raw.json.outputs as number[][]).flat(), expected);
  });
});

describe('REST classify, status, metadata', () => {
  it('classifies tf.Example-style flat features into [label, score] pairs per class', async () => {
    const examples = [0, 1, 2].map((r) => ({ input: Array.from(pixels.subarray(r * PIXELS, (r + 1) * PIXELS)) }));
    const answer = await request(port, 'POST', '/v1/models/fashion:classify', { examples });
    expect(answer.status).toBe(200);
    const results = answer.json.results as [string, number][][];
    expect(results).toHaveLength(3);
    expect(results[0]!.map(([label]) => label)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expectClose(
      results.flatMap((classes) => classes.map(([, score]) => score)),
      expected.subarray(0, 30),
    );
  });

  it('reports version status and the signature the way TF Serving does', async () => {
    const status = await request(port, 'GET', '/v1/models/fashion');
    expect(status.json).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    });
    expect((await request(port, 'GET', '/v1/models/fashion/versions/1')).status).toBe(200);
    const metadata = await request(port, 'GET', '/v1/models/fashion/versions/1/metadata');
    expect(metadata.status).toBe(200);
    expect(metadata.json.model_spec).toEqual({ name: 'fashion', signature_name: '', version: '1' });
    const signature = metadata.json.metadata.signature_def.signature_def.serving_default;
    expect(signature.method_name).toBe('tensorflow/serving/predict');
    expectFashionSignature(signature);
  });

  it('lists models with the backend, and answers health, readiness and metrics on both paths', async () => {
    const list = await request(port, 'GET', '/v1/models');
    expect(list.json.backend.name).toBe(server.backend.name);
    expect(list.json.models.map((m: { name: string }) => m.name)).toEqual(['fashion']);
    expect((await request(port, 'GET', '/healthz')).status).toBe(200);
    expect((await request(port, 'GET', '/readyz')).json).toEqual({ ready: true, reasons: [] });
    for (const path of ['/monitoring/prometheus/metrics', '/metrics']) {
      const text = (await request(port, 'GET', path)).body.toString();
      expect(metricValue(text, 'gantry_serving_loaded_versions', { model: 'fashion' })).toBe(1);
      expect(
        metricValue(text, 'gantry_serving_requests_total', {
          model: 'fashion',
          version: '1',
          api: 'predict',
          protocol: 'rest',
          status: 'OK',
        }),
      ).toBeGreaterThanOrEqual(5);
      expect(text).toContain('gantry_serving_request_duration_seconds_bucket');
      expect(text).toContain('gantry_serving_load_seconds_count{model="fashion"} 1');
      const predicted = Array.from(
        { length: 10 },
        (_, c) =>
          metricValue(text, 'gantry_serving_predicted_class_total', {
            model: 'fashion',
            version: '1',
            class: String(c),
          }) ?? 0,
      );
      expect(predicted.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    }
    // The same registry as data (what the rollout's monitor reads).
    const json = (await request(port, 'GET', '/monitoring/metrics.json')).json as {
      name: string;
      values: { labels: Record<string, string>; value: number }[];
    }[];
    const loaded = json.find((m) => m.name === 'gantry_serving_loaded_versions');
    expect(loaded?.values.find((v) => v.labels.model === 'fashion')?.value).toBe(1);
    // What bench/soak.ts reads to show tensors stay flat across hot swaps: tf.memory() at the scrape.
    const tensors = json.find((m) => m.name === 'gantry_serving_tfjs_tensors')?.values[0]?.value;
    expect(Number.isInteger(tensors) && tensors! >= 0).toBe(true);
    expect(
      json.find((m) => m.name === 'gantry_serving_process_resident_memory_bytes')?.values[0]?.value,
    ).toBeGreaterThan(0);
    expect(labels.length).toBe(ROWS);
  });
});
