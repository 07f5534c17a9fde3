import * as grpc from '@grpc/grpc-js';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImageBytes } from '../../data/image-decode';
import { PREPROCESSING_FILE, type ImagePreprocessing } from '../../data/preprocessing';
import { selectBackend, tf } from '../../engine/backend';
import { serializeModel } from '../../engine/model-files';
import { ServingClient } from '../../serving/client';
import type { ModelServer } from '../../serving/server';
import { buildModel } from '../../training/architectures';
import { fashionMnistSlicer } from '../helpers/examples';
import {
  FEATURE_SHAPE,
  maxDiff,
  nestedImage,
  PIXELS,
  publish,
  removeDir,
  request,
  startServer,
  tempDir,
  predictionServiceClient,
} from './helpers';

/**
 * A version published with an image preprocessing.json takes PNG and JPEG files the TF Serving way ({"b64": …} over
 * REST in the row, named and columnar forms; a DT_STRING tensor over gRPC), decodes them as the image-folder ingest
 * did, answers with the same scores as the decoded pixels sent as a float tensor, names the class, and refuses
 * corrupt, oversize and too many images with 400s naming where.
 */

const CLASSES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot'];
const ROWS = 6;
const LIMITS = { imageMaxBytes: 4096, imageMaxRequestBytes: 8192, imageMaxPixels: 100_000 };
const MAX_ROWS = 16;

let base: string;
let server: ModelServer;
let port: number;
let prediction: grpc.Client & Record<string, (...args: any[]) => void>;
/** Test images as PNG and JPEG files, and their pixels as the server should see them (0..255). */
let pngs: Buffer[];
let jpegs: Buffer[];
let pngPixels: Float32Array;
let jpegPixels: Float32Array;
let labels: number[];

const b64 = (bytes: Buffer) => bytes.toString('base64');
const predict = (body: unknown) => request(port, 'POST', '/v1/models/clothes:predict', body);

/** The server's answer to the pixels themselves, as a float tensor (what the images must match). */
async function floatScores(pixels: Float32Array): Promise<number[][]> {
  const rows = pixels.length / PIXELS;
  const answer = await predict({ instances: Array.from({ length: rows }, (_, r) => nestedImage(pixels, r)) });
  expect(answer.status).toBe(200);
  return answer.json.predictions as number[][];
}

function expectAnswers(predictions: { scores: number[]; class: string }[], wanted: number[][]): void {
  expect(predictions).toHaveLength(wanted.length);
  predictions.forEach((p, r) => {
    expect(maxDiff(p.scores, wanted[r]!)).toBeLessThan(1e-5);
    expect(p.class).toBe(CLASSES[wanted[r]!.indexOf(Math.max(...wanted[r]!))]);
  });
}

async function grayPixels(file: Buffer): Promise<Float32Array> {
  const { data } = await sharp(file).grayscale().raw().toBuffer({ resolveWithObject: true });
  return Float32Array.from(data);
}

beforeAll(async () => {
  await selectBackend();
  const slice = await fashionMnistSlicer();
  // A quickly trained MLP, so the named classes mean something.
  const train = await slice('train', 0, 2000);
  const model = buildModel(tf, 'mlp', { featureShape: FEATURE_SHAPE, numClasses: 10, seed: 7 }, { hiddenUnits: [32] });
  model.compile({ optimizer: tf.train.adam(0.003), loss: 'sparseCategoricalCrossentropy' });
  const xs = tf.tensor(Float32Array.from(train.images), [train.count, ...FEATURE_SHAPE]);
  const ys = tf.tensor(Float32Array.from(train.labels), [train.count]);
  await model.fit(xs, ys, { epochs: 3, batchSize: 64, verbose: 0 });
  tf.dispose([xs, ys]);
  const files = await serializeModel(model);
  model.dispose();
  const preprocessing: ImagePreprocessing = {
    kind: 'image',
    formatVersion: 1,
    height: 28,
    width: 28,
    channels: 1,
    label: { name: 'label', task: 'classification', classes: CLASSES },
  };
  base = await tempDir('images');
  await publish(base, 'clothes', 1, { ...files, [PREPROCESSING_FILE]: JSON.stringify(preprocessing) });

  const test = await slice('test', 0, ROWS);
  labels = Array.from(test.labels);
  pngs = [];
  jpegs = [];
  for (let r = 0; r < ROWS; r++) {
    const raw = { raw: { width: 28, height: 28, channels: 1 as const } };
    const pixels = Uint8Array.from(test.images.subarray(r * PIXELS, (r + 1) * PIXELS));
    pngs.push(await sharp(pixels, raw).png().toBuffer());
    jpegs.push(await sharp(pixels, raw).jpeg({ quality: 90 }).toBuffer());
  }
  pngPixels = Float32Array.from(test.images);
  jpegPixels = new Float32Array(ROWS * PIXELS);
  for (let r = 0; r < ROWS; r++) jpegPixels.set(await grayPixels(jpegs[r]!), r * PIXELS);

  server = await startServer(base, {
    grpcPort: 0,
    batching: { max_batch_size: 8, max_enqueued_batches: MAX_ROWS / 8 },
    ...LIMITS,
  });
  port = server.restPort!;
  prediction = predictionServiceClient(server.grpcPort!);
}, 60_000);

afterAll(async () => {
  prediction?.close();
  await server?.close();
  if (base) await removeDir(base);
});

describe('an image version', () => {
  it('answers b64 PNG files (row, named, columnar) with the scores of their pixels and the class', async () => {
    const wanted = await floatScores(pngPixels);
    const bare = await predict({ instances: pngs.map((png) => ({ b64: b64(png) })) });
    expect(bare.status).toBe(200);
    expectAnswers(bare.json.predictions, wanted);
    // The model learnt something: most of the test images are named by their own class.
    const right = bare.json.predictions.filter((p: { class: string }, r: number) => p.class === CLASSES[labels[r]!]);
    expect(right.length).toBeGreaterThanOrEqual(ROWS / 2);

    for (const name of ['image', 'input']) {
      const named = await predict({ instances: pngs.map((png) => ({ [name]: { b64: b64(png) } })) });
      expect(named.status).toBe(200);
      expectAnswers(named.json.predictions, wanted);
    }
    const columnar = await predict({ inputs: { image: pngs.map((png) => ({ b64: b64(png) })) } });
    expect(columnar.status).toBe(200);
    const { scores, class: classes } = columnar.json.outputs as { scores: number[][]; class: string[] };
    expectAnswers(
      scores.map((s, r) => ({ scores: s, class: classes[r]! })),
      wanted,
    );
    // The public client sends the files' bytes the same way.
    const client = new ServingClient({ url: `http://127.0.0.1:${port}` });
    const viaClient = (await client.predictImages('clothes', pngs)).predictions;
    expectAnswers(viaClient as { scores: number[]; class: string }[], wanted);
    // The pixels sent as a float tensor keep the plain answer: one array of scores per image.
    expect(wanted.every((row) => Array.isArray(row) && row.length === CLASSES.length)).toBe(true);
  });

  it('answers JPEG files, and a colour JPEG of another size is converted and resized as at ingest', async () => {
    const wanted = await floatScores(jpegPixels);
    const answer = await predict({ instances: jpegs.map((jpeg) => ({ b64: b64(jpeg) })) });
    expect(answer.status).toBe(200);
    expectAnswers(answer.json.predictions, wanted);

    // A 56×56 colour JPEG, and a grey + alpha PNG: both reach the model as 28×28 greyscale,
    // exactly the pixels the image-folder ingest decodes the same files to (alpha is dropped, not composited).
    const first = Uint8Array.from(pngPixels.subarray(0, PIXELS));
    const colour = await sharp(first, { raw: { width: 28, height: 28, channels: 1 } })
      .resize(56, 56)
      .toColourspace('srgb')
      .tint({ r: 255, g: 200, b: 120 })
      .jpeg()
      .toBuffer();
    const rgba = await sharp(first, { raw: { width: 28, height: 28, channels: 1 } })
      .ensureAlpha(0.5)
      .png()
      .toBuffer();
    expect((await sharp(colour).metadata()).channels).toBe(3);
    expect((await sharp(rgba).metadata()).hasAlpha).toBe(true);
    const shape = { height: 28, width: 28, channels: 1 as const };
    const ingested = new Float32Array(2 * PIXELS);
    ingested.set(await decodeImageBytes(colour, shape), 0);
    ingested.set(await decodeImageBytes(rgba, shape), PIXELS);
    expect(Array.from(ingested.subarray(PIXELS))).toEqual(Array.from(first));
    const mixed = await predict({ instances: [{ b64: b64(colour) }, { b64: b64(rgba) }] });
    expect(mixed.status).toBe(200);
    expectAnswers(mixed.json.predictions, await floatScores(ingested));
  });

  it('answers a DT_STRING tensor of encoded images over gRPC with scores and class', async () => {
    const images = [...pngs.slice(0, 3), ...jpegs.slice(3)];
    const mixedPixels = Float32Array.from([...pngPixels.subarray(0, 3 * PIXELS), ...jpegPixels.subarray(3 * PIXELS)]);
    const mixedWanted = await floatScores(mixedPixels);
    const response = await new Promise<any>((resolve, reject) =>
      prediction.Predict!(
        {
          model_spec: { name: 'clothes' },
          inputs: {
            image: { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: String(ROWS) }] }, string_val: images },
          },
        },
        (error: grpc.ServiceError | null, answer: any) => (error ? reject(error) : resolve(answer)),
      ),
    );
    const scores: number[] = response.outputs.scores.float_val;
    const classes = response.outputs.class.string_val.map((b: Buffer) => b.toString('utf8'));
    expectAnswers(
      classes.map((c: string, r: number) => ({ scores: scores.slice(r * 10, (r + 1) * 10), class: c })),
      mixedWanted,
    );
    // A refused image over gRPC is INVALID_ARGUMENT naming the value.
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      prediction.Predict!(
        {
          model_spec: { name: 'clothes' },
          inputs: {
            input: {
              dtype: 'DT_STRING',
              tensor_shape: { dim: [{ size: '2' }, { size: '1' }] },
              string_val: [pngs[0], pngs[1]!.subarray(0, 60)],
            },
          },
        },
        (e: grpc.ServiceError | null) => resolve(e!),
      ),
    );
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/inputs\.input\.string_val\[1\]: not an image/);
  });

  it('refuses corrupt, oversize and too many images with 400s naming where', async () => {
    const expectError = async (body: unknown, pattern: RegExp) => {
      const answer = await predict(body);
      expect(answer.status, JSON.stringify(answer.json)).toBe(400);
      expect(answer.json.error).toMatch(pattern);
    };
    const truncated = pngs[1]!.subarray(0, pngs[1]!.length - 40);
    await expectError(
      { instances: [{ b64: b64(pngs[0]!) }, { b64: b64(truncated) }] },
      /^instances\[1\]: not an image the server can read/,
    );
    await expectError(
      { inputs: { image: [{ b64: b64(pngs[0]!) }, { b64: b64(Buffer.from('not an image at all')) }] } },
      /^inputs\.image\[1\]: not an image the server can read/,
    );
    // An SVG is an image libvips could render, but not a PNG or JPEG.
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"></svg>');
    await expectError({ instances: [{ image: { b64: b64(svg) } }] }, /^instances\[0\]\.image: .*not PNG or JPEG/);

    // Noise does not compress: one 80×80 PNG is over the 4096-byte limit per image.
    const noise = (side: number) =>
      sharp(
        Uint8Array.from({ length: side * side }, (_, i) => (i * 7919 + ((i * i) % 251)) % 256),
        { raw: { width: side, height: side, channels: 1 } },
      )
        .png({ compressionLevel: 0 })
        .toBuffer();
    const big = await noise(80);
    expect(big.length).toBeGreaterThan(LIMITS.imageMaxBytes);
    await expectError(
      { instances: [{ b64: b64(pngs[0]!) }, { b64: b64(big) }] },
      /^instances\[1\]: the image is about \d+ bytes, over the limit of 4096 bytes per image/,
    );
    // Images each under the limit, together over the 8192 bytes per request.
    const medium = await noise(30);
    expect(medium.length).toBeLessThan(LIMITS.imageMaxBytes);
    const count = Math.floor(LIMITS.imageMaxRequestBytes / medium.length) + 1;
    expect(count).toBeLessThanOrEqual(MAX_ROWS);
    await expectError(
      { instances: Array.from({ length: count }, () => ({ b64: b64(medium) })) },
      new RegExp(`^instances\\[${count - 1}\\]: the request's images add up to over 8192 bytes`),
    );
    // A small file that declares more pixels than the server decodes (a decompression bomb's trick).
    const huge = await sharp({ create: { width: 400, height: 400, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    expect(huge.length).toBeLessThan(LIMITS.imageMaxBytes);
    await expectError({ instances: [{ b64: b64(huge) }] }, /^instances\[0\]: not an image .*pixel limit/);
    await expectError(
      { instances: Array.from({ length: MAX_ROWS + 1 }, () => ({ b64: b64(pngs[0]!) })) },
      /^instances: 17 images exceed the limit of 16 per request/,
    );
    await expectError(
      { instances: [{ b64: b64(pngs[0]!) }, [1, 2, 3]] },
      /^instances\[1\]: expected an image like instances\[0\]/,
    );
    // The server still answers after all that.
    expect((await predict({ instances: [{ b64: b64(pngs[0]!) }] })).status).toBe(200);
  });

  it('still takes raw float32 pixels as b64 bytes (no PNG or JPEG signature), answered as a tensor', async () => {
    const row = pngPixels.slice(0, PIXELS);
    const answer = await predict({ instances: [{ b64: Buffer.from(row.buffer).toString('base64') }] });
    expect(answer.status).toBe(200);
    expect(maxDiff(answer.json.predictions[0], (await floatScores(row))[0]!)).toBeLessThan(1e-6);
  });
});
