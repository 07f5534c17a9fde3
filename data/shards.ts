import { z } from 'zod';
import type { ArtifactStore } from '../artifacts/store';
import { DatasetError } from './errors';
import type { SplitName } from './split';

/**
 * On-store layout of a dataset: per split, shards of raw bytes under
 * `datasets/<fingerprint>/<split>/`: `images-00000-of-00006.u8` (count × H × W × C uint8, row-major)
 * and `labels-00000-of-00006.u8` (count uint8). Raw bytes, no header: the DatasetRef carries the
 * shape, and any reader (tfjs, numpy.fromfile) loads them without a parser.
 */
export const DEFAULT_SHARD_SIZE = 10_000;

export const ShardRefSchema = z.object({
  imagesUri: z.string(),
  labelsUri: z.string(),
  count: z.number().int().positive(),
});
export type ShardRef = z.infer<typeof ShardRefSchema>;

export const SplitRefSchema = z.object({
  count: z.number().int().nonnegative(),
  shards: z.array(ShardRefSchema),
});
export type SplitRef = z.infer<typeof SplitRefSchema>;

export function datasetPrefix(fingerprint: string): string {
  return `datasets/${fingerprint}`;
}

export function exampleBytesOf(featureShape: readonly number[]): number {
  return featureShape.reduce((product, dim) => product * dim, 1);
}

export interface WriteSplitInput {
  fingerprint: string;
  split: SplitName;
  images: Uint8Array;
  labels: Uint8Array;
  featureShape: readonly number[];
  shardSize?: number;
  /** Called after each shard is written, e.g. to heartbeat. */
  onShard?: (written: number, total: number) => void;
}

export async function writeSplitShards(store: ArtifactStore, input: WriteSplitInput): Promise<SplitRef> {
  const { fingerprint, split, images, labels, featureShape, onShard } = input;
  const shardSize = input.shardSize ?? DEFAULT_SHARD_SIZE;
  const exampleBytes = exampleBytesOf(featureShape);
  const count = labels.length;
  if (images.length !== count * exampleBytes) {
    throw new RangeError(`${split}: ${images.length} image bytes for ${count} examples of ${exampleBytes} bytes`);
  }
  const total = Math.ceil(count / shardSize);
  const digits = (n: number) => String(n).padStart(5, '0');
  const shards: ShardRef[] = [];
  for (let s = 0; s < total; s++) {
    const start = s * shardSize;
    const end = Math.min(count, start + shardSize);
    const name = `${digits(s)}-of-${digits(total)}.u8`;
    const base = `${datasetPrefix(fingerprint)}/${split}`;
    // Written one at a time: each is up to ~8 MB, and holding several in flight buys nothing on one disk.
    const imagesUri = await store.put(
      `${base}/images-${name}`,
      images.subarray(start * exampleBytes, end * exampleBytes),
    );
    const labelsUri = await store.put(`${base}/labels-${name}`, labels.subarray(start, end));
    shards.push({ imagesUri, labelsUri, count: end - start });
    onShard?.(s + 1, total);
  }
  return { count, shards };
}

/** The part of a DatasetRef that reading a split needs (so trainers can pass a narrower object). */
export interface SplitLayout {
  featureShape: number[];
  numClasses: number;
  splits: Record<SplitName, SplitRef>;
  /** uint8 (images; the default) or float32 little-endian (encoded tabular records). */
  featureDtype?: 'uint8' | 'float32';
  /** classification (labels uint8 class indices; the default) or regression (labels float32 values). */
  task?: 'classification' | 'regression';
}

/**
 * `images` holds every example's feature values back to back (pixels, or encoded records as float32); `labels`
 * a class index each (classification) or a float32 value each (regression).
 */
export interface LoadedSplit {
  images: Uint8Array | Float32Array;
  labels: Uint8Array | Float32Array;
  count: number;
}

/**
 * Reads every shard of one split back into contiguous arrays, checking each file's length against
 * what the reference promises, so a stale or half-copied shard fails loudly here rather than as a
 * shape error deep inside training.
 */
export async function loadSplit(store: ArtifactStore, ref: SplitLayout, splitName: SplitName): Promise<LoadedSplit> {
  const split = ref.splits[splitName];
  const featureBytes = ref.featureDtype === 'float32' ? 4 : 1;
  const labelBytes = ref.task === 'regression' ? 4 : 1;
  const exampleBytes = exampleBytesOf(ref.featureShape) * featureBytes;
  const shardTotal = split.shards.reduce((sum, shard) => sum + shard.count, 0);
  if (shardTotal !== split.count) {
    throw new DatasetError(
      `${splitName} split`,
      `the reference lists shards of ${shardTotal} examples but a split count of ${split.count}`,
    );
  }
  // Byte buffers filled shard by shard, viewed as float32 at the end (a Buffer from the store may be unaligned).
  const images = new Uint8Array(split.count * exampleBytes);
  const labels = new Uint8Array(split.count * labelBytes);
  const read = async (uri: string): Promise<Buffer> => {
    try {
      return await store.get(uri);
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new DatasetError(uri, missing ? 'shard not found' : `cannot read shard: ${(error as Error).message}`);
    }
  };
  let offset = 0;
  for (const shard of split.shards) {
    const [shardImages, shardLabels] = await Promise.all([read(shard.imagesUri), read(shard.labelsUri)]);
    if (shardImages.length !== shard.count * exampleBytes) {
      throw new DatasetError(
        shard.imagesUri,
        `shard has ${shardImages.length} bytes, the dataset reference says ${shard.count} examples x ` +
          `${exampleBytes} bytes = ${shard.count * exampleBytes}`,
      );
    }
    if (shardLabels.length !== shard.count * labelBytes) {
      throw new DatasetError(
        shard.labelsUri,
        `shard has ${shardLabels.length} bytes, the dataset reference says ${shard.count} labels of ${labelBytes} ` +
          `byte${labelBytes === 1 ? '' : 's'}`,
      );
    }
    const bad = labelBytes === 1 ? shardLabels.findIndex((label) => label >= ref.numClasses) : -1;
    if (bad >= 0) {
      throw new DatasetError(
        shard.labelsUri,
        `label ${shardLabels[bad]} at index ${bad} is outside [0, ${ref.numClasses})`,
      );
    }
    images.set(shardImages, offset * exampleBytes);
    labels.set(shardLabels, offset * labelBytes);
    offset += shard.count;
  }
  return {
    images: featureBytes === 4 ? new Float32Array(images.buffer) : images,
    labels: labelBytes === 4 ? new Float32Array(labels.buffer) : labels,
    count: split.count,
  };
}
