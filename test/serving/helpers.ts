import { execFile } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { ModelRepository, METADATA_FILE } from '../../artifacts/model-repository';
import type { ServerOptionsInput } from '../../serving/config';
import { startModelServer, type ModelServer, type ModelServerHooks } from '../../serving/server';
import { buildModel } from '../../training/architectures';
import { tf } from '../../engine/backend';
import { serializeModel, type ModelFiles } from '../../engine/model-files';
import type { Examples } from '../../training/batches';
import { fashionMnistSlicer } from '../helpers/examples';

/** Shared by the serving tests: models written in TF Serving's layout, and a small HTTP client. */

export const FEATURE_SHAPE = [28, 28, 1];
export const PIXELS = 28 * 28;

export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `gantry-serving-${prefix}-`));
}

export function removeDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/** The fashion-mnist MLP with weights from `seed` (so each version answers differently). */
export async function mlpFiles(seed: number): Promise<ModelFiles> {
  const model = buildModel(tf, 'mlp', { featureShape: FEATURE_SHAPE, numClasses: 10, seed }, { hiddenUnits: [32, 16] });
  try {
    return await serializeModel(model);
  } finally {
    model.dispose();
  }
}

/** A fresh model base (`tempDir(prefix)`) where model "fashion" has versions 1, 2, … built from `seeds`, one each. */
export async function fashionBase(
  prefix: string,
  ...seeds: [number, ...number[]]
): Promise<{ base: string; files: [ModelFiles, ...ModelFiles[]] }> {
  const base = await tempDir(prefix);
  const files = [] as unknown as [ModelFiles, ...ModelFiles[]];
  for (const seed of seeds) {
    files.push(await mlpFiles(seed));
    await publish(base, 'fashion', files.length, files.at(-1)!);
  }
  return { base, files };
}

/** Publishes `files` as `<base>/<model>/<version>/` the way the pipeline does (atomic rename), with gantry.json. */
export async function publish(
  base: string,
  model: string,
  version: number,
  files: ModelFiles | Record<string, Uint8Array | string>,
): Promise<void> {
  const metadata = {
    model,
    version,
    signature: { inputs: { input: { dtype: 'float32' } }, outputs: { probabilities: { dtype: 'float32' } } },
  };
  await new ModelRepository(base).publish(model, version, { ...files, [METADATA_FILE]: JSON.stringify(metadata) });
}

/** A model server over `base` with REST on a free port, no gRPC and a 50 ms poll, unless `options` say otherwise. */
export function startServer(
  base: string,
  options: Partial<ServerOptionsInput> = {},
  hooks?: ModelServerHooks,
): Promise<ModelServer> {
  return startModelServer({ modelBasePath: base, restPort: 0, grpcPort: null, pollIntervalMs: 50, ...options }, hooks);
}

/** `count` real Fashion-MNIST test images from `offset`. */
export async function testExamples(offset: number, count: number): Promise<Examples> {
  return (await fashionMnistSlicer())('test', offset, count);
}

/** One Fashion-MNIST test image: its raw pixels, and as nested [28][28][1] arrays (a JSON row). */
export async function testImage(index: number): Promise<{ pixels: Float32Array; image: number[][][] }> {
  const pixels = Float32Array.from((await testExamples(index, 1)).images);
  return { pixels, image: nestedImage(pixels, 0) };
}

/** The serving_default signature of the fashion MLP, as REST's metadata and gRPC's GetModelMetadata show it. */
export function expectFashionSignature(signature: any): void {
  const sizes = (tensor: { tensor_shape: { dim: { size: string }[] } }) => tensor.tensor_shape.dim.map((d) => d.size);
  expect(signature.inputs.input.dtype).toBe('DT_FLOAT');
  expect(sizes(signature.inputs.input)).toEqual(['-1', '28', '28', '1']);
  expect(sizes(signature.outputs.probabilities)).toEqual(['-1', '10']);
}

/** The largest difference between two equally long arrays of numbers. */
export function maxDiff(actual: ArrayLike<number>, wanted: ArrayLike<number>): number {
  expect(actual.length).toBe(wanted.length);
  let max = 0;
  for (let i = 0; i < wanted.length; i++) max = Math.max(max, Math.abs(actual[i]! - wanted[i]!));
  return max;
}

/** Each version's in-process answer on one image, by version number (`files[0]` is version 1). */
export async function answersByVersion(files: ModelFiles[], pixels: Float32Array): Promise<Map<number, Float32Array>> {
  const answers = new Map<number, Float32Array>();
  for (const [i, versionFiles] of files.entries()) answers.set(i + 1, await predictInProcess(versionFiles, pixels, 1));
  return answers;
}

/** In-process predictions of a model's files on `pixels` (n × 784 raw values), for comparisons. */
export async function predictInProcess(files: ModelFiles, pixels: Float32Array, rows: number): Promise<Float32Array> {
  const { deserializeModel } = await import('../../engine/model-files');
  const model = await deserializeModel(files['model.json'], files['weights.bin']);
  try {
    return tf
      .tidy(() => (model.predict(tf.tensor(pixels, [rows, ...FEATURE_SHAPE])) as tf.Tensor).dataSync() as Float32Array)
      .slice();
  } finally {
    model.dispose();
  }
}

/** `rows` images as nested [28][28][1] arrays (the JSON row format). */
export function nestedImage(pixels: Float32Array | Uint8Array, row: number): number[][][] {
  return Array.from({ length: 28 }, (_, y) =>
    Array.from({ length: 28 }, (_, x) => [pixels[row * PIXELS + y * 28 + x]!]),
  );
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: any;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** A raw HTTP call: no URL normalization (path-traversal tests need `..` to reach the server). */
export function request(
  port: number,
  method: string,
  urlPath: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const payload =
      body === undefined
        ? undefined
        : Buffer.isBuffer(body)
          ? body
          : typeof body === 'string'
            ? Buffer.from(body)
            : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent,
        headers: {
          ...(payload && !Buffer.isBuffer(body) && typeof body !== 'string'
            ? { 'content-type': 'application/json' }
            : {}),
          ...(payload ? { 'content-length': String(payload.length) } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const buffer = Buffer.concat(chunks);
          let json: unknown;
          try {
            json = JSON.parse(buffer.toString('utf8'));
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: buffer, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** Waits until `check` holds (polling every 20 ms) or fails after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The value of one series in Prometheus text, or undefined. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^([^{ ]+)(?:\{(.*)\})? (.+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return undefined;
}

/**
 * POSTs `count` copies of a JSON `body` to `urlPath` at once, from a process of its own (in the test's process the
 * clients would wait for the server's event loop), and returns each answer's status and body.
 */
export async function burst(
  port: number,
  urlPath: string,
  count: number,
  body: string,
): Promise<{ status: number; body: string }[]> {
  // Every connection is open before any request is written, and then all are written in one loop: the requests
  // reach the server together however slowly a loaded machine runs this process (sent one by one as they
  // connected, they could trickle in slower than the model drains them, and no queue would build).
  const script = `
    import net from 'node:net';
    const [port, urlPath, body] = [Number(process.argv[1]), process.argv[2], process.argv[4]];
    const count = Number(process.argv[3]);
    const request = 'POST ' + urlPath + ' HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n' +
      'Content-Type: application/json\\r\\nConnection: close\\r\\n' +
      'Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body;
    const sockets = await Promise.all(Array.from({ length: count }, () => new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
      socket.on('error', reject);
    })));
    const answers = sockets.map((socket) => new Promise((resolve, reject) => {
      const chunks = [];
      socket.on('data', (c) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const split = text.indexOf('\\r\\n\\r\\n');
        resolve({ status: Number(text.split(' ')[1]), body: text.slice(split + 4) });
      });
    }));
    for (const socket of sockets) socket.write(request);
    console.log(JSON.stringify(await Promise.all(answers)));`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', script, String(port), urlPath, String(count), body],
    { maxBuffer: 1 << 24 },
  );
  return JSON.parse(stdout) as { status: number; body: string }[];
}

const SERVING_PROTOS = ['../../serving/protos', '../../engine/protos'].map((dir) =>
  path.resolve(import.meta.dirname, dir),
);

/** TF Serving's gRPC services as TF Serving's own clients load them (keepCase, int64 as strings, enums by name). */
function servingPackage(): any {
  const definition = protoLoader.loadSync(
    ['tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'],
    { includeDirs: SERVING_PROTOS, keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return (grpc.loadPackageDefinition(definition) as any).tensorflow.serving;
}

/** A TF Serving PredictionService client, as TF Serving's own clients build it, for the server's gRPC port. */
export function predictionServiceClient(grpcPort: number): grpc.Client & Record<string, any> {
  return new (servingPackage().PredictionService)(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
}

/** A TF Serving ModelService client (GetModelStatus, HandleReloadConfigRequest) for a gRPC port. */
export function modelServiceClient(grpcPort: number): grpc.Client & Record<string, any> {
  return new (servingPackage().ModelService)(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
}

/** One unary call of a generated client: its response, or the gRPC error it failed with. */
export function grpcCall(
  client: grpc.Client & Record<string, any>,
  method: string,
  request: object,
  metadata = new grpc.Metadata(),
): Promise<any> {
  return new Promise((resolve, reject) =>
    client[method]!.call(client, request, metadata, (error: grpc.ServiceError | null, response: unknown) =>
      error ? reject(error) : resolve(response),
    ),
  );
}
