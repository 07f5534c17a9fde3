import { DatasetError } from '../../data/errors';
import { readFashionMnistSplit, type RawSplit } from '../../data/sources';

/** What the load replays: count × 784 raw pixel values, and the true label of each image. */
export type TestSplit = RawSplit;

/**
 * The t10k image and label files of a Fashion-MNIST folder (gzipped or not), read and checked
 * against each other by data/'s reader, as ingest reads them.
 */
export async function readTestSplit(dir: string): Promise<TestSplit> {
  const { images, labels, count, files } = await readFashionMnistSplit(dir, 'test');
  if (count === 0) throw new DatasetError(files[0]!, 'holds no images');
  return { images, labels, count };
}
