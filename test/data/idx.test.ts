import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../data/errors';
import { parseIdx, readIdxFile, readIdxHead } from '../../data/idx';
import { DEFAULT_FASHION_MNIST_DIR, dataSourceNames, getDataSource, readFashionMnistSplit } from '../../data/sources';
import { idxBytes, makeTempDir, removeTempDir, syntheticSplit, writeFashionLayout, writeIdx } from './helpers';

const real = (name: string) => path.join(DEFAULT_FASHION_MNIST_DIR, name);

/** Runs `read` and returns the DatasetError it must throw. */
async function datasetError(read: () => Promise<unknown>): Promise<DatasetError> {
  try {
    await read();
  } catch (error) {
    expect(error).toBeInstanceOf(DatasetError);
    const e = error as DatasetError;
    expect(e.message).toBe(`${e.file}: ${e.reason}`);
    return e;
  }
  throw new Error('expected a DatasetError, got success');
}

describe('IDX parsing of the real Fashion-MNIST files', () => {
  it('reads the gzipped training images and labels', async () => {
    const images = await readIdxFile(real('train-images-idx3-ubyte.gz'), 'images');
    expect(images.dims).toEqual([60000, 28, 28]);
    expect(images.data.length).toBe(60000 * 28 * 28);

    const labels = await readIdxFile(real('train-labels-idx1-ubyte.gz'), 'labels');
    expect(labels.dims).toEqual([60000]);
    expect(Math.max(...labels.data)).toBe(9);
    expect(Math.min(...labels.data)).toBe(0);
    // The first training example is an ankle boot (checked with gunzip + od on the file).
    expect(labels.data[0]).toBe(9);
  });

  it('reads the test set through the fashion-mnist source', async () => {
    const raw = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
    expect(raw.train.count).toBe(60000);
    expect(raw.test.count).toBe(10000);
    expect(raw.test.images.length).toBe(10000 * 784);
    expect(raw.test.labels[0]).toBe(9);
    expect(raw.featureShape).toEqual([28, 28, 1]);
    expect(raw.numClasses).toBe(10);
    expect(raw.classNames[9]).toBe('Ankle boot');
    expect(raw.sourceFiles).toHaveLength(4);
    expect(raw.sourceFiles.every((f) => f.endsWith('.gz'))).toBe(true);
  });
});

describe('data source registry', () => {
  it('lists and finds sources by name', () => {
    expect(dataSourceNames()).toContain('fashion-mnist');
    expect(getDataSource('fashion-mnist').name).toBe('fashion-mnist');
  });

  it('names the known sources when asked for an unknown one', () => {
    expect(() => getDataSource('imagenet')).toThrow(/unknown data source "imagenet".*fashion-mnist/);
  });
});

describe('reading a Fashion-MNIST layout from a temp dir', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('idx');
  });
  afterAll(() => removeTempDir(dir));

  /** A fresh subdirectory with a valid synthetic dataset (uncompressed unless gzip). */
  let counter = 0;
  async function validDir(gzip = false): Promise<string> {
    const d = path.join(dir, `case-${counter++}`);
    await mkdir(d);
    await writeFashionLayout(d, { gzip });
    return d;
  }
  const read = (d: string) => getDataSource('fashion-mnist').read(d);
  /** Reading `d` must fail on `file`: the reason given. */
  async function rejectionOf(d: string, file: string): Promise<string> {
    const e = await datasetError(() => read(d));
    expect(e.file).toBe(file);
    return e.reason;
  }

  it('accepts uncompressed and gzipped files with the same content', async () => {
    const plain = await validDir(false);
    const gz = await validDir(true);
    const a = await read(plain);
    const b = await read(gz);
    expect(a.sourceFiles.every((f) => !f.endsWith('.gz'))).toBe(true);
    expect(b.sourceFiles.every((f) => f.endsWith('.gz'))).toBe(true);
    expect(Buffer.from(a.train.images).equals(Buffer.from(b.train.images))).toBe(true);
    expect(Array.from(a.test.labels)).toEqual(Array.from(b.test.labels));
    expect(a.train.count).toBe(20);
  });

  it('rejects a bad magic number', async () => {
    const d = await validDir();
    const file = path.join(d, 'train-images-idx3-ubyte');
    const data = syntheticSplit(20, () => 0).images;
    await writeFile(file, idxBytes(0x00000801, [20, 28, 28], data)); // a label magic on an image file
    expect(await rejectionOf(d, file)).toBe('bad magic number 0x00000801 (expected 0x00000803 for an IDX image file)');
  });

  it('rejects a truncated file', async () => {
    const d = await validDir();
    const file = path.join(d, 't10k-images-idx3-ubyte');
    const full = await readFile(file);
    await writeFile(file, full.subarray(0, full.length - 100));
    expect(await rejectionOf(d, file)).toBe(
      `truncated: header says 10x28x28 = 7840 bytes, file has 7740 after its 16-byte header`,
    );
  });

  it('rejects trailing bytes after the data', async () => {
    const d = await validDir();
    const file = path.join(d, 'train-labels-idx1-ubyte');
    await writeFile(file, Buffer.concat([await readFile(file), Buffer.from([1, 2, 3])]));
    expect(await rejectionOf(d, file)).toMatch(/^trailing bytes: header says 20 = 20 bytes, file has 23/);
  });

  it('rejects a .gz file that is not gzip data', async () => {
    const d = await validDir(true);
    const file = path.join(d, 'train-labels-idx1-ubyte.gz');
    await writeFile(file, idxBytes(0x00000801, [20], new Uint8Array(20)));
    expect(await rejectionOf(d, file)).toMatch(/^not gzip data/);
  });

  it('rejects a corrupt gzip stream', async () => {
    const d = await validDir(true);
    const file = path.join(d, 'train-images-idx3-ubyte.gz');
    const gz = await readFile(file);
    await writeFile(file, gz.subarray(0, 40));
    expect(await rejectionOf(d, file)).toMatch(/^corrupt gzip data/);
  });

  it('rejects a label outside [0, numClasses)', async () => {
    const d = await validDir();
    const file = path.join(d, 'train-labels-idx1-ubyte');
    await writeIdx(
      file,
      'labels',
      [20],
      Uint8Array.from({ length: 20 }, (_, i) => (i === 13 ? 10 : 1)),
    );
    expect(await rejectionOf(d, file)).toBe('label 10 at index 13 is outside [0, 10)');
  });

  it('rejects images and labels whose counts disagree', async () => {
    const d = await validDir();
    const file = path.join(d, 't10k-labels-idx1-ubyte');
    await writeIdx(file, 'labels', [9], new Uint8Array(9));
    expect(await rejectionOf(d, file)).toBe(`has 9 labels but ${path.join(d, 't10k-images-idx3-ubyte')} has 10 images`);
  });

  it('rejects images of the wrong size', async () => {
    const d = await validDir();
    const file = path.join(d, 'train-images-idx3-ubyte');
    await writeIdx(file, 'images', [20, 32, 32], new Uint8Array(20 * 32 * 32));
    expect(await rejectionOf(d, file)).toBe('images are 32x32, expected 28x28');
  });

  it('reports a missing file, having looked for both names', async () => {
    const d = await validDir();
    await rm(path.join(d, 't10k-labels-idx1-ubyte'));
    expect(await rejectionOf(d, path.join(d, 't10k-labels-idx1-ubyte'))).toBe(
      'file not found (looked for t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz)',
    );
  });

  it('reports a missing directory', async () => {
    const missing = path.join(dir, 'no-such-dir');
    expect(await rejectionOf(missing, missing)).toBe('directory not found');
  });

  it('reports a missing file when read by exact path', async () => {
    const file = path.join(dir, 'nothing-here.gz');
    const e = await datasetError(() => readIdxFile(file, 'labels'));
    expect(e.reason).toBe('file not found');
  });

  it('rejects bytes too short for a magic number or a header', () => {
    expect(() => parseIdx(new Uint8Array([0, 0]), 'x.idx', 'labels')).toThrow(/^x\.idx: truncated: 2 bytes/);
    expect(() => parseIdx(new Uint8Array([0, 0, 8, 3, 0, 0, 0, 1]), 'y.idx', 'images')).toThrow(
      /^y\.idx: truncated header: 3 dimensions need a 16-byte header, file has 8 bytes/,
    );
  });
});

describe('reading only the first examples', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('idx-head');
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it('reads the first images of the real gzipped test split, the same bytes as the whole file has', async () => {
    const head = await readIdxHead(real('t10k-images-idx3-ubyte.gz'), 'images', 3);
    const all = await readIdxFile(real('t10k-images-idx3-ubyte.gz'), 'images');
    expect(head.dims).toEqual([3, 28, 28]);
    expect(Buffer.from(head.data).equals(Buffer.from(all.data.subarray(0, 3 * 784)))).toBe(true);
    const split = await readFashionMnistSplit(DEFAULT_FASHION_MNIST_DIR, 'test', { limit: 3 });
    expect(split.count).toBe(3);
    const labels = await readIdxFile(real('t10k-labels-idx1-ubyte.gz'), 'labels');
    expect([...split.labels]).toEqual([...labels.data.subarray(0, 3)]);
    expect(Buffer.from(split.images).equals(Buffer.from(head.data))).toBe(true);
  });

  it('reads all of a file that holds fewer, plain or gzipped', async () => {
    const { test } = await writeFashionLayout(dir);
    const plain = await readIdxHead(path.join(dir, 't10k-labels-idx1-ubyte'), 'labels', 1000);
    expect(plain.dims).toEqual([test.count]);
    expect([...plain.data]).toEqual([...test.labels]);
    const gzipped = path.join(dir, 'labels.gz');
    await writeIdx(gzipped, 'labels', [test.count], test.labels);
    expect([...(await readIdxHead(gzipped, 'labels', 4)).data]).toEqual([...test.labels.subarray(0, 4)]);
  });

  it('names the file and what is wrong: a short file, a wrong magic number, a .gz that is not gzip', async () => {
    const short = path.join(dir, 'short');
    await writeFile(short, idxBytes(0x00000801, [10], new Uint8Array(2)));
    expect((await datasetError(() => readIdxHead(short, 'labels', 3))).reason).toBe(
      'truncated: header says 10, file ends after 2 bytes of data (the first 3 need 3)',
    );
    expect((await readIdxHead(short, 'labels', 2)).dims).toEqual([2]);
    expect((await datasetError(() => readIdxHead(short, 'images', 1))).reason).toMatch(/^bad magic number 0x00000801/);
    const fake = path.join(dir, 'fake.gz');
    await writeFile(fake, 'not gzip');
    expect((await datasetError(() => readIdxHead(fake, 'labels', 1))).reason).toMatch(/^not gzip data/);
    expect((await datasetError(() => readIdxHead(path.join(dir, 'none'), 'labels', 1))).reason).toBe('file not found');
  });
});
