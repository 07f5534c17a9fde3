import { DEFAULT_FASHION_MNIST_DIR, getDataSource, type RawSplit } from '../../data/sources';
import type { Examples } from '../../training/batches';

/** Slices of the real Fashion-MNIST files, for tests that train without the pipeline around them. */
export async function fashionMnistSlicer(): Promise<
  (split: 'train' | 'test', start: number, count: number) => Examples
> {
  const raw = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
  const size = raw.featureShape.reduce((a, b) => a * b, 1);
  return (split, start, count) => {
    const source: RawSplit = raw[split];
    return {
      images: source.images.slice(start * size, (start + count) * size),
      labels: source.labels.slice(start, start + count),
      count,
    };
  };
}
