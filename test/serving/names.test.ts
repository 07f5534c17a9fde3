import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerOptionsInput } from '../../serving/config';
import { MAX_CLIENT_MESSAGE } from '../../serving/errors';
import { METRIC, UNKNOWN_LABEL } from '../../serving/metric-names';
import type { Servable } from '../../serving/loader';
import type { ModelServer } from '../../serving/server';
import { PREDICT_METHOD } from '../../serving/signature';
import {
  grpcCall,
  metricValue,
  modelServiceClient,
  predictionServiceClient,
  removeDir,
  request,
  startServer,
  tempDir,
} from './helpers';

/**
 * Names a client makes up never reach the metrics or the admin plane's methods: 500 unknown model names, versions,
 * labels and signature names each over REST and gRPC leave the Prometheus series as they were and are counted under
 * `_unknown` (or, for a signature, as the version's INVALID_ARGUMENT); gRPC refuses malformed names with REST's rule;
 * HandleReloadConfigRequest answers only on the admin plane's gRPC port.
 */

const TOKEN = 'names-admin-token-0123456789';
const N = 500;
const AUTH = new grpc.Metadata();
AUTH.set('authorization', `Bearer ${TOKEN}`);
let base: string;
let server: ModelServer;
let prediction: grpc.Client & Record<string, any>;
let models: grpc.Client & Record<string, any>;
let adminModels: grpc.Client & Record<string, any>;

/**
 * Versions that echo their input (one float per row): what is under test is naming and counting, not a model, so
 * no TensorFlow runs here and the file can stay out of CI's fallback-backend pass.
 */
const echo = (): Promise<Servable> => {
  const spec = (key: string) => ({ key, tensorName: `${key}:0`, dtype: 'float32' as const, shape: [-1, 1] });
  return Promise.resolve({
    signature: { name: 'serving_default', methodName: PREDICT_METHOD, inputs: [spec('x')], outputs: [spec('y')] },
    metadata: {},
    weightBytes: 4,
    execution: { mode: 'graph' },
    run: (inputs) => inputs,
    dispose() {},
  });
};

function start(options: Partial<ServerOptionsInput>): Promise<ModelServer> {
  return startServer(base, { warmup: false, ...options }, { loadServable: echo });
}

beforeAll(async () => {
  base = await tempDir('names');
  await mkdir(path.join(base, 'fashion', '1'), { recursive: true });
  await writeFile(path.join(base, 'fashion', '1', 'model.json'), '{}');
  server = await start({ grpcPort: 0, adminPort: 0, adminGrpcPort: 0, adminToken: TOKEN });
  prediction = predictionServiceClient(server.grpcPort!);
  models = modelServiceClient(server.grpcPort!);
  adminModels = modelServiceClient(server.adminGrpcPort!);
  const label = await request(
    server.adminPort!,
    'PUT',
    '/v1/admin/models/fashion/labels/stable',
    { version: 1 },
    {
      authorization: `Bearer ${TOKEN}`,
    },
  );
  expect(label.status).toBe(200);
});

afterAll(async () => {
  for (const client of [prediction, models, adminModels]) client?.close();
  await server?.close();
  await removeDir(base);
});

/** Runs `work(i)` for i < n, 50 at a time: fast, without opening hundreds of sockets at once. */
async function each(n: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < n) await work(next++);
    }),
  );
}

/** The request series (any metric labelled by model) of a scrape, as sorted lines without their values. */
async function series(): Promise<{ text: string; labelled: string[] }> {
  const text = (await request(server.restPort!, 'GET', '/monitoring/prometheus/metrics')).body.toString();
  const labelled = text
    .split('\n')
    .filter((line) => !line.startsWith('#') && line.includes('model="'))
    .map((line) => line.slice(0, line.lastIndexOf(' ')))
    .sort();
  return { text, labelled };
}

const requests = (text: string, labels: Record<string, string>) => metricValue(text, METRIC.requests, labels) ?? 0;

/** The error a gRPC call fails with (code, details); a call that succeeds fails the test. */
async function grpcError(method: string, body: object, client = prediction): Promise<grpc.ServiceError> {
  try {
    await grpcCall(client, method, body);
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error(`${method} answered`);
}

describe('unknown names and the metrics', () => {
  it('unknown models, versions, labels and signatures (500 each, REST and gRPC) add no series', async () => {
    const restPredict = (urlPath: string, body: object = { instances: [1] }) =>
      request(server.restPort!, 'POST', urlPath, body);
    const kinds = {
      model: {
        rest: (i: number) => restPredict(`/v1/models/nope${i}:predict`),
        grpc: (i: number) => grpcError('Predict', { model_spec: { name: `nope${i}` }, inputs: {} }),
      },
      version: {
        rest: (i: number) => restPredict(`/v1/models/fashion/versions/${1000 + i}:predict`),
        grpc: (i: number) =>
          grpcError('Predict', { model_spec: { name: 'fashion', version: { value: String(1000 + i) } }, inputs: {} }),
      },
      label: {
        rest: (i: number) => restPredict(`/v1/models/fashion/labels/nolabel${i}:predict`),
        grpc: (i: number) =>
          grpcError('Predict', { model_spec: { name: 'fashion', version_label: `nolabel${i}` }, inputs: {} }),
      },
      signature: {
        rest: (i: number) => restPredict('/v1/models/fashion:predict', { signature_name: `sig${i}`, instances: [1] }),
        grpc: (i: number) =>
          grpcError('Predict', { model_spec: { name: 'fashion', signature_name: `sig${i}` }, inputs: {} }),
      },
    };
    // One of each first, so that every series the flood may touch exists before the count.
    for (const kind of Object.values(kinds)) {
      await kind.rest(N);
      await kind.grpc(N);
    }
    await request(server.restPort!, 'GET', `/v1/models/nope${N}`);
    const before = await series();

    for (const [name, kind] of Object.entries(kinds)) {
      const rest = await Promise.all(Array.from({ length: 3 }, (_, i) => kind.rest(i)));
      expect({ name, statuses: rest.map((r) => r.status) }).toEqual({
        name,
        statuses: Array(3).fill(name === 'signature' ? 400 : 404),
      });
      const grpcCodes = await Promise.all(Array.from({ length: 3 }, (_, i) => kind.grpc(i)));
      expect({ name, codes: grpcCodes.map((e) => e.code) }).toEqual({
        name,
        codes: Array(3).fill(name === 'signature' ? grpc.status.INVALID_ARGUMENT : grpc.status.NOT_FOUND),
      });
      await each(N - 3, (i) => kind.rest(i + 3));
      await each(N - 3, (i) => kind.grpc(i + 3));
    }
    await each(N, (i) => request(server.restPort!, 'GET', `/v1/models/nope${i}`));
    const after = await series();

    // Not one series more, and no made-up name in any label.
    expect(after.labelled).toEqual(before.labelled);
    expect(after.text).not.toMatch(/nope\d|nolabel|sig\d|version="1\d\d\d"/);
    const count = (protocol: string, labels: Record<string, string>) =>
      requests(after.text, { protocol, api: 'predict', ...labels }) -
      requests(before.text, { protocol, api: 'predict', ...labels });
    for (const protocol of ['rest', 'grpc']) {
      expect({ protocol, n: count(protocol, { model: UNKNOWN_LABEL, version: '', status: 'NOT_FOUND' }) }).toEqual({
        protocol,
        n: N,
      });
      // Versions and labels it does not know: one series of the model, pinned, so no canary window counts them.
      const pinned = { model: 'fashion', version: UNKNOWN_LABEL, status: 'NOT_FOUND', route: 'pinned' };
      expect({ protocol, n: count(protocol, pinned) }).toEqual({ protocol, n: 2 * N });
      // A signature the version lacks: the version's own INVALID_ARGUMENT, no label of its own.
      const signature = { model: 'fashion', version: '1', status: 'INVALID_ARGUMENT', route: 'routed' };
      expect({ protocol, n: count(protocol, signature) }).toEqual({ protocol, n: N });
    }
    const status = { model: UNKNOWN_LABEL, api: 'status', protocol: 'rest', status: 'NOT_FOUND' };
    expect(requests(after.text, status) - requests(before.text, status)).toBe(N);
    // The same registry answers /metrics and metrics.json: nothing made up there either.
    const json = (await request(server.restPort!, 'GET', '/monitoring/metrics.json')).body.toString();
    expect(json).not.toMatch(/nope\d|nolabel|sig\d/);
    expect(json).toContain(`"model":"${UNKNOWN_LABEL}"`);
  }, 120_000);

  it('a known label and version still get their own series', async () => {
    const answer = await request(server.restPort!, 'POST', '/v1/models/fashion/labels/stable:predict', {
      instances: [[0.5]],
    });
    expect(answer.status).toBe(200);
    const { text } = await series();
    expect(requests(text, { model: 'fashion', version: '1', status: 'OK', route: 'pinned' })).toBeGreaterThan(0);
  });
});

describe('gRPC model names', () => {
  const malformed = ['../fashion', 'a/b', '.hidden', '_unknown', 'x'.repeat(5000), 'fa shion', 'é'];

  it("are refused with REST's rule before any lookup: INVALID_ARGUMENT, a bounded message", async () => {
    for (const name of malformed) {
      for (const [client, method, body] of [
        [prediction, 'Predict', { model_spec: { name }, inputs: {} }],
        [prediction, 'Classify', { model_spec: { name }, input: { example_list: { examples: [] } } }],
        [prediction, 'GetModelMetadata', { model_spec: { name }, metadata_field: ['signature_def'] }],
        [models, 'GetModelStatus', { model_spec: { name } }],
      ] as const) {
        const error = await grpcError(method, body, client);
        expect({ name: name.slice(0, 20), method, code: error.code }).toEqual({
          name: name.slice(0, 20),
          method,
          code: grpc.status.INVALID_ARGUMENT,
        });
        expect(error.details).toMatch(/model_spec\.name .* is not valid/);
        expect(error.details.length).toBeLessThanOrEqual(200);
      }
      // REST refuses the same names the same way (a 400 naming the rule), where the path can carry them.
      if (!name.includes('/')) {
        const rest = await request(server.restPort!, 'GET', `/v1/models/${encodeURIComponent(name)}`);
        expect({ name: name.slice(0, 20), status: rest.status }).toEqual({ name: name.slice(0, 20), status: 400 });
        expect(String(rest.json?.error).length).toBeLessThanOrEqual(MAX_CLIENT_MESSAGE);
      }
    }
  });

  it('a well-formed unknown name is NOT_FOUND; so is a label from the prototype chain', async () => {
    for (const name of ['nope', 'constructor', 'hasOwnProperty']) {
      const error = await grpcError('Predict', { model_spec: { name }, inputs: {} });
      expect({ name, code: error.code }).toEqual({ name, code: grpc.status.NOT_FOUND });
    }
    for (const label of ['constructor', '__proto__', 'toString']) {
      const error = await grpcError('Predict', { model_spec: { name: 'fashion', version_label: label }, inputs: {} });
      expect({ label, code: error.code }).toEqual({ label, code: grpc.status.NOT_FOUND });
      expect(error.details).not.toContain('function');
      const status = await grpcError(
        'GetModelStatus',
        { model_spec: { name: 'fashion', version_label: label } },
        models,
      );
      expect({ label, code: status.code }).toEqual({ label, code: grpc.status.NOT_FOUND });
    }
    const badLabel = await grpcError('Predict', { model_spec: { name: 'fashion', version_label: 'a-b' }, inputs: {} });
    expect(badLabel.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badLabel.details).toMatch(/model_spec\.version_label "a-b" is not valid/);
  });
});

describe('HandleReloadConfigRequest with the admin plane apart', () => {
  const config = () => ({
    config: {
      model_config_list: {
        config: [
          { name: 'fashion', base_path: path.join(base, 'fashion'), version_labels: { stable: '1' } },
          { name: 'second', base_path: path.join(base, 'fashion') },
        ],
      },
    },
  });

  it('is UNIMPLEMENTED on the public gRPC port, even with the admin token', async () => {
    const error = await grpcError('HandleReloadConfigRequest', config(), models);
    expect(error.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(error.details).toMatch(/admin address/);
    const withToken = await new Promise<grpc.ServiceError | null>((resolve) =>
      models.HandleReloadConfigRequest(config(), AUTH, (e: grpc.ServiceError | null) => resolve(e)),
    );
    expect(withToken?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(server.manager.hasModel('second')).toBe(false);
  });

  it('is served on the admin gRPC port (loopback, token required), which serves no predictions', async () => {
    expect(server.adminGrpcPort).not.toBeNull();
    expect(server.adminGrpcPort).not.toBe(server.grpcPort);
    const anonymous = await grpcError('HandleReloadConfigRequest', config(), adminModels);
    expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
    const response = await grpcCall(adminModels, 'HandleReloadConfigRequest', config(), AUTH);
    expect(response.status.error_code).toBe('OK');
    const status = await grpcCall(adminModels, 'GetModelStatus', { model_spec: { name: 'second' } });
    expect(status.model_version_status[0].state).toBe('AVAILABLE');
    // The reloaded model answers on the public port.
    expect((await grpcCall(models, 'GetModelStatus', { model_spec: { name: 'second' } })).model_version_status).toEqual(
      status.model_version_status,
    );
    const predictOnAdmin = predictionServiceClient(server.adminGrpcPort!);
    try {
      const error = await grpcError('Predict', { model_spec: { name: 'fashion' }, inputs: {} }, predictOnAdmin);
      expect(error.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      predictOnAdmin.close();
    }
  });

  it("'same' keeps it on the public gRPC port (one plane, as TF Serving has)", async () => {
    const same = await start({ restPort: null, grpcPort: 0, adminPort: 'same', adminToken: TOKEN });
    const client = modelServiceClient(same.grpcPort!);
    try {
      expect(same.adminGrpcPort).toBeNull();
      const response = await grpcCall(client, 'HandleReloadConfigRequest', config(), AUTH);
      expect(response.status.error_code).toBe('OK');
    } finally {
      client.close();
      await same.close();
    }
  });
});
