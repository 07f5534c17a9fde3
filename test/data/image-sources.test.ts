import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../artifacts/store';
import { DatasetError } from '../../data/errors';
import { ingestDataset, type IngestOptionsInput } from '../../data/ingest';
import { loadSplit } from '../../data/shards';
import { DEFAULT_FASHION_MNIST_DIR, getDataSource, readFashionMnistSplit, type RawSplit } from '../../data/sources';
import { PipelineSpecError } from '../../pipelines/define';
import { sliceSpec } from '../helpers/specs';
import { makeTempDir, removeTempDir, syntheticSplit, writeIdx } from './helpers';

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const sha1 = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest('hex');

/** Writes example `i` of `split` as a greyscale PNG (lossless) or JPEG; returns the file's path. */
async function writeImage(split: RawSplit, i: number, file: string): Promise<string> {
  const pixels = Buffer.from(split.images.subarray(i * PIXELS, (i + 1) * PIXELS));
  const image = sharp(pixels, { raw: { width: SIDE, height: SIDE, channels: 1 } });
  await writeFile(file, await (file.endsWith('.png') ? image.png() : image.jpeg({ quality: 95 })).toBuffer());
  return file;
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

function thrownByCall(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

let root: string;
let fashion: RawSplit;
const COUNT = 60;

beforeAll(async () => {
  root = await makeTempDir('image-sources');
  fashion = await readFashionMnistSplit(DEFAULT_FASHION_MNIST_DIR, 'train', { limit: COUNT });
});
afterAll(() => removeTempDir(root));

/** The first COUNT Fashion-MNIST training images as `<dir>/class-<label>/<i>.<png|jpg>`. */
async function writeClassFolders(dir: string, indices: number[], extension: (i: number) => string): Promise<void> {
  for (const i of indices) {
    const classDir = path.join(dir, `class-${fashion.labels[i]}`);
    await mkdir(classDir, { recursive: true });
    await writeImage(fashion, i, path.join(classDir, `${String(i).padStart(3, '0')}.${extension(i)}`));
  }
}

const range = (start: number, end: number) => Array.from({ length: end - start }, (_, k) => start + k);

function baseOptions(name: string, extra: Partial<IngestOptionsInput>): IngestOptionsInput {
  return {
    source: 'image-folder',
    path: root,
    seed: 3,
    validationFraction: 0.2,
    statisticsKey: `pipelines/${name}/last-statistics.json`,
    shardSize: 16,
    ...extra,
  };
}

describe('the image-folder source', () => {
  let flat: string;
  beforeAll(async () => {
    flat = path.join(root, 'flat');
    await writeClassFolders(flat, range(0, COUNT), () => 'png');
  });

  it('ingests <class>/*.png at their own size losslessly, holding testFraction out by seed', async () => {
    const store = new FileArtifactStore(path.join(root, 'store-flat'));
    const ref = await ingestDataset(
      baseOptions('flat', { path: flat, image: { height: SIDE, width: SIDE, channels: 1 }, testFraction: 0.25 }),
      store,
    );
    const classes = [...new Set(fashion.labels)].sort().map((label) => `class-${label}`);
    expect(ref.classNames).toEqual(classes);
    expect(ref.numClasses).toBe(classes.length);
    expect(ref.featureShape).toEqual([SIDE, SIDE, 1]);
    expect(ref.counts.test).toBe(15);
    expect(ref.counts.train + ref.counts.validation).toBe(45);
    expect(ref.rows).toEqual({ read: COUNT, malformed: 0, dropped: 0, examples: [] });

    // Every example that comes back is one of the written images, under its own class, each exactly once.
    const original = new Map<string, string>();
    for (let i = 0; i < COUNT; i++) {
      original.set(sha1(fashion.images.subarray(i * PIXELS, (i + 1) * PIXELS)), `class-${fashion.labels[i]}`);
    }
    const seen = new Set<string>();
    for (const split of ['train', 'validation', 'test'] as const) {
      const loaded = await loadSplit(store, ref, split);
      for (let k = 0; k < loaded.count; k++) {
        const key = sha1(loaded.images.subarray(k * PIXELS, (k + 1) * PIXELS) as Uint8Array);
        expect(original.get(key)).toBe(ref.classNames[loaded.labels[k]!]);
        seen.add(key);
      }
    }
    expect(seen.size).toBe(original.size);

    // The same seed holds the same images out; another seed others.
    const again = await getDataSource('image-folder').read(flat, {
      image: { height: SIDE, width: SIDE, channels: 1 },
      onMalformed: 'fail',
      testFraction: 0.25,
      seed: 3,
    });
    const other = await getDataSource('image-folder').read(flat, {
      image: { height: SIDE, width: SIDE, channels: 1 },
      onMalformed: 'fail',
      testFraction: 0.25,
      seed: 4,
    });
    const testSet = await loadSplit(store, ref, 'test');
    expect(sha1(again.test.images)).toBe(sha1(testSet.images as Uint8Array));
    expect(sha1(other.test.images)).not.toBe(sha1(testSet.images as Uint8Array));
  });

  it('reads train/ and test/ folders of PNG and JPEG, resized and made RGB', async () => {
    const split = path.join(root, 'split');
    await writeClassFolders(path.join(split, 'train'), range(0, 40), (i) => (i % 2 ? 'png' : 'jpg'));
    await writeClassFolders(path.join(split, 'test'), range(40, COUNT), (i) => (i % 3 ? 'jpeg' : 'PNG'));
    await writeFile(path.join(split, 'train', 'class-0', 'notes.txt'), 'not an image: ignored');
    const store = new FileArtifactStore(path.join(root, 'store-split'));
    const ref = await ingestDataset(
      baseOptions('split', { path: split, image: { height: 14, width: 14, channels: 3 } }),
      store,
    );
    expect(ref.featureShape).toEqual([14, 14, 3]);
    expect(ref.counts.train + ref.counts.validation).toBe(40);
    expect(ref.counts.test).toBe(20);
    expect(ref.rows?.read).toBe(COUNT);

    // Test examples keep the folder order: compare each with a 2x2 box average of its original (a resize to half
    // the size is close to it; JPEG adds a little noise), and its three channels agree (a grey image).
    const test = await loadSplit(store, ref, 'test');
    const order = range(40, COUNT).sort((a, b) => fashion.labels[a]! - fashion.labels[b]! || a - b);
    let totalError = 0;
    for (let k = 0; k < test.count; k++) {
      const i = order[k]!;
      expect(ref.classNames[test.labels[k]!]).toBe(`class-${fashion.labels[i]}`);
      for (let y = 0; y < 14; y++) {
        for (let x = 0; x < 14; x++) {
          const at = (k * 196 + y * 14 + x) * 3;
          const [r, g, b] = [test.images[at]!, test.images[at + 1]!, test.images[at + 2]!];
          expect(Math.abs(r - g) + Math.abs(g - b)).toBeLessThanOrEqual(2);
          const px = (yy: number, xx: number) => fashion.images[i * PIXELS + yy * SIDE + xx]!;
          const box = (px(2 * y, 2 * x) + px(2 * y, 2 * x + 1) + px(2 * y + 1, 2 * x) + px(2 * y + 1, 2 * x + 1)) / 4;
          totalError += Math.abs(g - box);
        }
      }
    }
    expect(totalError / (test.count * 196)).toBeLessThan(12);
  });

  it('reads an image folder again on a rerun after an image below it is replaced in place', async () => {
    // Only the class folders are listed as the source's files, so nothing may be reused from an earlier read: a
    // replaced image changes no folder's size or times.
    // A folder of its own, so the store created beside it changes no folder the first read saw.
    const dir = path.join(root, 'rerun', 'images');
    await writeClassFolders(dir, range(0, 20), () => 'png');
    const store = new FileArtifactStore(path.join(root, 'store-rerun'));
    const options = baseOptions('rerun', { path: dir, image: { height: SIDE, width: SIDE, channels: 1 } });
    const first = await ingestDataset(options, store);
    const victim = path.join(dir, `class-${fashion.labels[0]}`, '000.png');
    await writeImage(fashion, 1, victim);
    const messages: string[] = [];
    const second = await ingestDataset(options, store, (m) => messages.push(m));
    expect(messages.some((m) => m.startsWith('reading image-folder'))).toBe(true);
    expect(second.fingerprint).not.toBe(first.fingerprint);
  });

  it('fails on an unreadable image naming its path, or skips and counts it', async () => {
    const dirty = path.join(root, 'dirty');
    await writeClassFolders(dirty, range(0, 30), () => 'png');
    const broken = path.join(dirty, 'class-0', 'broken.png');
    await writeFile(broken, Buffer.from('this is not a PNG'));
    const jpeg = await readFile(await writeImage(fashion, 31, path.join(root, 'whole.jpg')));
    const cut = path.join(dirty, 'class-2', 'cut.jpg');
    await writeFile(cut, jpeg.subarray(0, jpeg.length >> 1));
    const svg = path.join(dirty, 'class-3', 'drawing.png');
    await writeFile(
      svg,
      '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="9" height="9"/></svg>',
    );
    const image = { height: SIDE, width: SIDE, channels: 1 as const };

    const store = new FileArtifactStore(path.join(root, 'store-dirty'));
    const error = await failure(ingestDataset(baseOptions('dirty', { path: dirty, image }), store));
    expect(error).toBeInstanceOf(DatasetError);
    expect([broken, cut, svg]).toContain((error as DatasetError).file);
    expect(error.message).toMatch(/unreadable image/);

    const ref = await ingestDataset(baseOptions('dirty', { path: dirty, image, onMalformed: 'skip' }), store);
    expect(ref.counts.train + ref.counts.validation + ref.counts.test).toBe(30);
    expect(ref.rows).toMatchObject({ read: 33, malformed: 3, dropped: 0 });
    expect(ref.rows!.examples).toHaveLength(3);
    expect(ref.rows!.examples[0]).toMatch(new RegExp(`^${broken}: `));
    expect(ref.rows!.examples[1]).toMatch(new RegExp(`^${cut}: `));
    expect(ref.rows!.examples[2]).toBe(`${svg}: is svg, not PNG or JPEG`);
  });

  it('refuses to run without spec.data.image, and names a missing folder', async () => {
    // Before a run starts: the spec check knows the source needs the shape.
    const refused = thrownByCall(() => sliceSpec({ data: { source: 'image-folder', path: root } }));
    expect(refused).toBeInstanceOf(PipelineSpecError);
    expect((refused as PipelineSpecError).issues).toEqual([
      { path: 'data.image', message: 'the image-folder source needs { height, width, channels } to decode to' },
    ]);
    const accepted = sliceSpec({ data: { source: 'image-folder', path: root, image: { height: 8, width: 8 } } });
    expect(accepted.data.image).toEqual({ height: 8, width: 8, channels: 3 });

    // And at ingest, for a caller that skips the spec.
    const store = new FileArtifactStore(path.join(root, 'store-refused'));
    const noShape = await failure(ingestDataset(baseOptions('refused', { path: root }), store));
    expect(noShape.message).toMatch(/needs spec\.data\.image/);
    const missing = path.join(root, 'nowhere');
    const gone = await failure(
      ingestDataset(baseOptions('refused', { path: missing, image: { height: 8, width: 8 } }), store),
    );
    expect(gone.message).toBe(`${missing}: directory not found`);
  });
});

describe('the idx source', () => {
  it('reads the Debian Fashion-MNIST files: shape from the header, classes "0".."9"', async () => {
    const store = new FileArtifactStore(path.join(root, 'store-idx'));
    const options = {
      path: DEFAULT_FASHION_MNIST_DIR,
      seed: 5,
      validationFraction: 0.1,
      limits: { train: 300, test: 100 },
    };
    const ref = await ingestDataset({ ...options, source: 'idx', statisticsKey: 'idx.json' }, store);
    expect(ref.featureShape).toEqual([28, 28, 1]);
    expect(ref.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(ref.counts).toEqual({ train: 270, validation: 30, test: 100 });
    // The same examples as the fashion-mnist source, which knows the shape and classes in advance.
    const named = await ingestDataset({ ...options, source: 'fashion-mnist', statisticsKey: 'fm.json' }, store);
    for (const split of ['train', 'test'] as const) {
      const [a, b] = await Promise.all([loadSplit(store, ref, split), loadSplit(store, named, split)]);
      expect(sha1(a.images as Uint8Array)).toBe(sha1(b.images as Uint8Array));
      expect(sha1(a.labels as Uint8Array)).toBe(sha1(b.labels as Uint8Array));
    }
  });

  it('reads other image sizes and names, holding a test split out when there is no test pair', async () => {
    const dir = path.join(root, 'idx-small');
    await mkdir(dir);
    const train = syntheticSplit(40, (i) => i % 5, 8, 6);
    await writeIdx(path.join(dir, 'train-images.idx3-ubyte.gz'), 'images', [40, 8, 6], train.images);
    await writeIdx(path.join(dir, 'train-labels.idx1-ubyte'), 'labels', [40], train.labels);
    const raw = await getDataSource('idx').read(dir, { onMalformed: 'fail', testFraction: 0.25, seed: 1 });
    expect(raw.featureShape).toEqual([8, 6, 1]);
    expect(raw.numClasses).toBe(5);
    expect(raw.classNames).toEqual(['0', '1', '2', '3', '4']);
    expect([raw.train.count, raw.test.count]).toEqual([30, 10]);
    // Examples stay whole: each one is one of the written ones, with its own label.
    const all = new Map<string, number>();
    for (let i = 0; i < 40; i++) all.set(sha1(train.images.subarray(i * 48, (i + 1) * 48)), train.labels[i]!);
    for (const part of [raw.train, raw.test]) {
      for (let k = 0; k < part.count; k++) {
        expect(all.get(sha1(part.images.subarray(k * 48, (k + 1) * 48)))).toBe(part.labels[k]);
      }
    }

    // A `test-` pair of another image size is refused, naming the file.
    const test = syntheticSplit(4, (i) => i, 7, 6);
    await writeIdx(path.join(dir, 'test-images-idx3-ubyte'), 'images', [4, 7, 6], test.images);
    await writeIdx(path.join(dir, 'test-labels-idx1-ubyte'), 'labels', [4], test.labels);
    const error = await failure(getDataSource('idx').read(dir));
    expect(error.message).toBe(`${path.join(dir, 'test-images-idx3-ubyte')}: images are 7x6, expected 8x6`);

    // An image file without its label file is named.
    const lonely = path.join(root, 'idx-lonely');
    await mkdir(lonely);
    await writeIdx(path.join(lonely, 'train-images-idx3-ubyte'), 'images', [4, 7, 6], test.images);
    const unpaired = await failure(getDataSource('idx').read(lonely));
    expect(unpaired).toBeInstanceOf(DatasetError);
    expect(unpaired.message).toMatch(/train-images-idx3-ubyte: has no partner file/);
  });
});
