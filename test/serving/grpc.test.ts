import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelServer } from '../../serving/server';
import { selectBackend } from '../../engine/backend';
import type { ModelFiles } from '../../engine/model-files';
import { expectFashionSignature, fashionBase, maxDiff, PIXELS, predictInProcess } from './helpers';
import { removeDir, startServer, testExamples } from './helpers';

/**
 * TF Serving's gRPC API, with a client generated at run time by @grpc/proto-loader from this
 * repository's protos (TF Serving's packages, field numbers and method names).
 */

// TF Serving's API protos, and the TensorFlow protos they import (the engine's).
const PROTOS = ['../../serving/protos', '../../engine/protos'].map((dir) => path.resolve(import.meta.dirname, dir));
const TOKEN = 'grpc-admin-token-0123456789';
const ROWS = 6;

type Unary = (
  request: object,
  metadata: grpc.Metadata | ((e: grpc.ServiceError | null, r: any) => void),
  callback?: (e: grpc.ServiceError | null, r: any) => void,
) => void;
let prediction: Record<string, Unary> & grpc.Client;
let modelService: Record<string, Unary> & grpc.Client;
let base: string;
let server: ModelServer;
let files: ModelFiles;
let pixels: Float32Array;
let expected: Float32Array;

function call(
  client: Record<string, Unary>,
  method: string,
  request: object,
  metadata = new grpc.Metadata(),
): Promise<any> {
  return new Promise((resolve, reject) =>
    client[method]!.call(client, request, metadata, (error: grpc.ServiceError | null, response: any) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

function tensor(rows: number, data: Float32Array, how: 'float_val' | 'tensor_content'): object {
  const tensor_shape = { dim: [rows, 28, 28, 1].map((size) => ({ size: String(size) })) };
  return how === 'float_val'
    ? { dtype: 'DT_FLOAT', tensor_shape, float_val: Array.from(data) }
    : { dtype: 'DT_FLOAT', tensor_shape, tensor_content: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}

beforeAll(async () => {
  await selectBackend();
  pixels = Float32Array.from((await testExamples(100, ROWS)).images);
  const published = await fashionBase('grpc', 3);
  base = published.base;
  files = published.files[0];
  expected = await predictInProcess(files, pixels, ROWS);
  server = await startServer(base, { restPort: null, grpcPort: 0, adminToken: TOKEN });
  // The client's own load of the protos, as a TF Serving user would generate it.
  const definition = protoLoader.loadSync(
    ['tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'],
    {
      includeDirs: PROTOS,
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    },
  );
  expect(definition['tensorflow.serving.SignatureDefMap']).toBeDefined();
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const address = `127.0.0.1:${server.grpcPort}`;
  prediction = new pkg.tensorflow.serving.PredictionService(address, grpc.credentials.createInsecure());
  modelService = new pkg.tensorflow.serving.ModelService(address, grpc.credentials.createInsecure());
});

afterAll(async () => {
  prediction?.close();
  modelService?.close();
  await server?.close();
  await removeDir(base);
});

describe('gRPC PredictionService', () => {
  it('Predict answers the in-process predictions for float_val and tensor_content inputs', async () => {
    for (const how of ['float_val', 'tensor_content'] as const) {
      const response = await call(prediction, 'Predict', {
        model_spec: { name: 'fashion', signature_name: 'serving_default' },
        inputs: { input: tensor(ROWS, pixels, how) },
      });
      expect(response.model_spec.name).toBe('fashion');
      expect(response.model_spec.version.value).toBe('1');
      const out = response.outputs.probabilities;
      expect(out.dtype).toBe('DT_FLOAT');
      expect(out.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual([String(ROWS), '10']);
      expect(maxDiff(out.float_val, expected)).toBeLessThan(1e-6);
    }
  });

  it('Predict by version and by label; Classify returns a class per label with its score', async () => {
    const byVersion = await call(prediction, 'Predict', {
      model_spec: { name: 'fashion', version: { value: '1' } },
      inputs: { input: tensor(1, pixels.subarray(0, PIXELS), 'float_val') },
    });
    expect(maxDiff(byVersion.outputs.probabilities.float_val, expected.subarray(0, 10))).toBeLessThan(1e-6);
    const examples = [0, 1].map((r) => ({
      features: {
        feature: { input: { float_list: { value: Array.from(pixels.subarray(r * PIXELS, (r + 1) * PIXELS)) } } },
      },
    }));
    const classified = await call(prediction, 'Classify', {
      model_spec: { name: 'fashion' },
      input: { example_list: { examples } },
    });
    const classes = classified.result.classifications as { classes: { label: string; score: number }[] }[];
    expect(classes).toHaveLength(2);
    expect(classes[0]!.classes.map((c) => c.label)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(
      maxDiff(
        classes.flatMap((c) => c.classes.map((x) => x.score)),
        expected.subarray(0, 20),
      ),
    ).toBeLessThan(1e-6);
  });

  it('GetModelMetadata packs the SignatureDefMap in an Any', async () => {
    const response = await call(prediction, 'GetModelMetadata', {
      model_spec: { name: 'fashion' },
      metadata_field: ['signature_def'],
    });
    expect(response.model_spec.version.value).toBe('1');
    const any = response.metadata.signature_def;
    expect(any.type_url).toBe('type.googleapis.com/tensorflow.serving.SignatureDefMap');
    // proto-loader gives no decoder for a bare message; the server module's codec is built from the same definition.
    const { loadServingProtos } = await import('../../serving/grpc/protos');
    const map = loadServingProtos().decodeSignatureDefMap(any.value) as any;
    expectFashionSignature(map.signature_def.serving_default);
  });

  it('answers bad calls with the canonical status codes and keeps serving', async () => {
    const codes = async (method: string, request: object) =>
      call(prediction, method, request).then(
        () => 0,
        (e: grpc.ServiceError) => e.code,
      );
    // A Predict call on "fashion" unless `spec` names another model; its status code (0 when it succeeds).
    const predictCode = (spec: object, inputs: object) =>
      codes('Predict', { model_spec: { name: 'fashion', ...spec }, inputs });
    const one = pixels.subarray(0, PIXELS);
    const dims = (...sizes: number[]) => ({ dim: sizes.map((size) => ({ size: String(size) })) });
    const { NOT_FOUND, INVALID_ARGUMENT } = grpc.status;
    expect(await predictCode({ name: 'nope' }, {})).toBe(NOT_FOUND);
    expect(await predictCode({ version: { value: '9' } }, { input: tensor(1, one, 'float_val') })).toBe(NOT_FOUND);
    expect(await predictCode({ version_label: 'canary' }, { input: tensor(1, one, 'float_val') })).toBe(NOT_FOUND);
    const asDouble = { dtype: 'DT_DOUBLE', tensor_shape: dims(1, 28, 28, 1), double_val: Array.from(one) };
    expect(await predictCode({}, { input: asDouble })).toBe(INVALID_ARGUMENT);
    const flat = { dtype: 'DT_FLOAT', tensor_shape: dims(1, 784), float_val: Array.from(one) };
    expect(await predictCode({}, { input: flat })).toBe(INVALID_ARGUMENT);
    expect(await predictCode({}, { input: tensor(2, one, 'float_val') })).toBe(INVALID_ARGUMENT);
    expect(await predictCode({}, { wrong: tensor(1, one, 'float_val') })).toBe(INVALID_ARGUMENT);
    expect(await predictCode({ signature_name: 'other' }, {})).toBe(INVALID_ARGUMENT);
    // A name REST's rule refuses (serving/names.ts) is INVALID_ARGUMENT before any lookup, as over REST.
    expect(await codes('Predict', { model_spec: { name: '../etc' }, inputs: {} })).toBe(INVALID_ARGUMENT);
    const ok = await call(prediction, 'Predict', {
      model_spec: { name: 'fashion' },
      inputs: { input: tensor(1, pixels.subarray(0, PIXELS), 'tensor_content') },
    });
    expect(ok.outputs.probabilities.float_val).toHaveLength(10);
  });
});

describe('gRPC ModelService', () => {
  it('GetModelStatus reports each version with its state', async () => {
    const response = await call(modelService, 'GetModelStatus', { model_spec: { name: 'fashion' } });
    expect(response.model_version_status).toEqual([
      { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
    ]);
    await expect(
      call(modelService, 'GetModelStatus', { model_spec: { name: 'fashion', version: { value: '4' } } }),
    ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('HandleReloadConfigRequest needs the admin token, then replaces the served models', async () => {
    const config = {
      config: {
        model_config_list: {
          config: [
            {
              name: 'fashion',
              base_path: path.join(base, 'fashion'),
              model_platform: 'tensorflow',
              model_version_policy: { all: {} },
              version_labels: { stable: '1' },
            },
            {
              name: 'second',
              base_path: path.join(base, 'fashion'),
              model_version_policy: { latest: { num_versions: 1 } },
            },
          ],
        },
      },
    };
    await expect(call(modelService, 'HandleReloadConfigRequest', config)).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
    });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${TOKEN}`);
    const response = await call(modelService, 'HandleReloadConfigRequest', config, metadata);
    expect(response.status.error_code).toBe('OK');
    const second = await call(modelService, 'GetModelStatus', { model_spec: { name: 'second' } });
    expect(second.model_version_status[0].state).toBe('AVAILABLE');
    const byLabel = await call(prediction, 'Predict', {
      model_spec: { name: 'fashion', version_label: 'stable' },
      inputs: { input: tensor(1, pixels.subarray(0, PIXELS), 'float_val') },
    });
    expect(byLabel.model_spec.version.value).toBe('1');
  });
});
