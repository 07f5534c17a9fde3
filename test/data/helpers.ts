import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { IDX_MAGIC, type IdxKind } from '../../data/idx';

/** A fresh directory under the OS temp dir; remove it with `removeTempDir`. */
export function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `gantry-${prefix}-`));
}

export function removeTempDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/** IDX bytes written by hand (big-endian header), independent of the parser under test. */
export function idxBytes(magic: number, dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic, 0);
  dims.forEach((dim, i) => header.writeUInt32BE(dim, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

export async function writeIdx(file: string, kind: IdxKind, dims: number[], data: Uint8Array): Promise<void> {
  const bytes = idxBytes(IDX_MAGIC[kind], dims, data);
  await writeFile(file, file.endsWith('.gz') ? gzipSync(bytes) : bytes);
}

export interface SyntheticSplit {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

/** `count` examples of rows×cols with pixel (i*7 + p) % 256 and labels from `label(i)`. */
export function syntheticSplit(count: number, label: (i: number) => number, rows = 28, cols = 28): SyntheticSplit {
  const images = new Uint8Array(count * rows * cols);
  for (let i = 0; i < images.length; i++) images[i] = (Math.floor(i / (rows * cols)) * 7 + i) % 256;
  const labels = Uint8Array.from({ length: count }, (_, i) => label(i));
  return { images, labels, count };
}

/** A directory laid out like Fashion-MNIST's, with small synthetic content. */
export async function writeFashionLayout(
  dir: string,
  options: { train?: SyntheticSplit; test?: SyntheticSplit; gzip?: boolean } = {},
): Promise<{ train: SyntheticSplit; test: SyntheticSplit }> {
  const train = options.train ?? syntheticSplit(20, (i) => i % 10);
  const test = options.test ?? syntheticSplit(10, (i) => (i * 3) % 10);
  const ext = options.gzip ? '.gz' : '';
  const side = (s: SyntheticSplit) => Math.round(Math.sqrt(s.images.length / s.count));
  for (const [prefix, split] of [
    ['train', train],
    ['t10k', test],
  ] as const) {
    const images = [split.count, side(split), side(split)];
    await writeIdx(path.join(dir, `${prefix}-images-idx3-ubyte${ext}`), 'images', images, split.images);
    await writeIdx(path.join(dir, `${prefix}-labels-idx1-ubyte${ext}`), 'labels', [split.count], split.labels);
  }
  return { train, test };
}
