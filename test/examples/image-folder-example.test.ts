import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, expect, it } from 'vitest';
import { DEFAULT_FASHION_MNIST_DIR, readFashionMnistSplit } from '../../data/sources';
import { ServingClient } from '../../serving/client';
import { startDevProject, type DevProject } from './dev-project';

/**
 * examples/fashion-folder: a folder of PNG files per class (written from a slice of Fashion-MNIST by the example's
 * own `npm run images`), ingested, trained, published and served; the answers name the folder's classes.
 */
let project: DevProject | undefined;
let images: string | undefined;
afterAll(async () => {
  await project?.stop();
  if (images) await rm(images, { recursive: true, force: true });
});

it('trains an image classifier from class folders and serves it', async () => {
  images = await mkdtemp(path.join(os.tmpdir(), 'gantry-fashion-folder-'));
  project = await startDevProject('fashion-folder');
  await promisify(execFile)('npm', ['run', '--silent', 'images', '--', images, '1500'], { cwd: project.dir });

  const result = await project.runJson(['fashion-folder', '--set', `data.path=${images}`]);
  expect(result).toMatchObject({ version: 1, blessed: true, published: true, task: 'classification' });
  expect((result.dataset as { counts: { test: number } }).counts.test).toBe(300);

  // The first test-set images (never written to the folder): most are answered with their own class.
  const test = await readFashionMnistSplit(DEFAULT_FASHION_MNIST_DIR, 'test', { limit: 20 });
  const client = new ServingClient({ url: project.restUrl });
  const answer = await client.predict('fashion-folder', test.images);
  const predicted = answer.predictions.map((scores) => scores.indexOf(Math.max(...scores)));
  const names = ['ankle-boot', 'bag', 'coat', 'dress', 'pullover', 'sandal', 'shirt', 'sneaker', 't-shirt', 'trouser'];
  const fashionOrder = [
    't-shirt',
    'trouser',
    'pullover',
    'dress',
    'coat',
    'sandal',
    'shirt',
    'sneaker',
    'bag',
    'ankle-boot',
  ];
  const right = predicted.filter((p, i) => names[p] === fashionOrder[test.labels[i]!]).length;
  expect(right).toBeGreaterThanOrEqual(12);

  // The version takes PNG files as TF Serving takes binary strings ({"b64": …}), decoded as the ingest decoded the
  // folder's files, and names the class beside the scores.
  const png = await sharp(test.images.subarray(0, 784), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
  const posted = await fetch(`${project.restUrl}/v1/models/fashion-folder:predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instances: [{ b64: png.toString('base64') }] }),
  });
  expect(posted.status).toBe(200);
  const [image] = ((await posted.json()) as { predictions: { scores: number[]; class: string }[] }).predictions;
  expect(image!.class).toBe(names[predicted[0]!]);
  image!.scores.forEach((score, c) => expect(score).toBeCloseTo(answer.predictions[0]![c]!, 5));

  // TF Serving's classify API answers with the class folders' names.
  const metadata = (await (await fetch(`${project.restUrl}/v1/models/fashion-folder/metadata`)).json()) as {
    metadata: { signature_def: { signature_def: { serving_default: { inputs: Record<string, unknown> } } } };
  };
  const [input] = Object.keys(metadata.metadata.signature_def.signature_def.serving_default.inputs);
  const classify = await fetch(`${project.restUrl}/v1/models/fashion-folder:classify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ examples: [{ [input!]: Array.from(test.images.subarray(0, 784)) }] }),
  });
  expect(classify.status).toBe(200);
  const labels = ((await classify.json()) as { results: [string, number][][] }).results[0]!.map(([name]) => name);
  expect(labels.sort()).toEqual(names);
}, 300_000);
