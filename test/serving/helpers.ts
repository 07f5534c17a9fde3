import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ModelRepository, METADATA_FILE } from '../../artifacts/model-repository';
import { buildModel } from '../../training/architectures';
import { tf } from '../../engine/backend';
import { serializeModel, type ModelFiles } from '../../engine/model-files';

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
