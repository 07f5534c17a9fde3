import { stat } from 'node:fs/promises';
import { DatasetError } from './errors';
import { readIdxFile, readIdxHead, resolveIdxFile } from './idx';

/** One split of a source as it was read: examples back to back, row-major, one byte a value. */
export interface RawSplit {
  /** count × (product of featureShape) bytes. */
  images: Uint8Array;
  /** count bytes, each in [0, numClasses). */
  labels: Uint8Array;
  count: number;
}

/** A validated dataset in memory, before it is split and sharded. Never crosses a Temporal boundary. */
export interface RawDataset {
  train: RawSplit;
  test: RawSplit;
  /** Shape of one example, height × width × channels. */
  featureShape: number[];
  numClasses: number;
  classNames: string[];
  /** The files it was read from, for the manifest's lineage. */
  sourceFiles: string[];
}

/**
 * A named way to read a dataset from a location. Pipeline specs name a source (`fashion-mnist`)
 * instead of carrying reader code, so the spec stays plain data.
 */
export interface DataSource {
  name: string;
  description: string;
  /** Where `read` looks when a pipeline spec gives no `data.path`. */
  defaultLocation: string;
  /** Reads and validates everything under `location`; bad data raises a DatasetError. */
  read(location: string): Promise<RawDataset>;
}

export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASS_NAMES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/**
 * Reads an MNIST-layout IDX image/label pair and checks that the two agree with each other; with
 * `limit`, only the first `limit` examples of each file.
 */
async function readIdxPair(
  dir: string,
  imagesBase: string,
  labelsBase: string,
  rows: number,
  cols: number,
  numClasses: number,
  limit?: number,
): Promise<RawSplit & { files: string[] }> {
  const imagesFile = await resolveIdxFile(dir, imagesBase);
  const labelsFile = await resolveIdxFile(dir, labelsBase);
  const read = (file: string, kind: 'images' | 'labels') =>
    limit === undefined ? readIdxFile(file, kind) : readIdxHead(file, kind, limit);
  const [images, labels] = await Promise.all([read(imagesFile, 'images'), read(labelsFile, 'labels')]);
  const [count = 0, imageRows, imageCols] = images.dims;
  if (imageRows !== rows || imageCols !== cols) {
    throw new DatasetError(imagesFile, `images are ${imageRows}x${imageCols}, expected ${rows}x${cols}`);
  }
  const labelCount = labels.dims[0] ?? 0;
  if (labelCount !== count) {
    throw new DatasetError(labelsFile, `has ${labelCount} labels but ${imagesFile} has ${count} images`);
  }
  for (let i = 0; i < labels.data.length; i++) {
    const label = labels.data[i]!;
    if (label >= numClasses) {
      throw new DatasetError(labelsFile, `label ${label} at index ${i} is outside [0, ${numClasses})`);
    }
  }
  return { images: images.data, labels: labels.data, count, files: [imagesFile, labelsFile] };
}

async function requireDirectory(dir: string): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return;
  } catch {
    throw new DatasetError(dir, 'directory not found');
  }
  throw new DatasetError(dir, 'not a directory');
}

export type FashionMnistSplit = 'train' | 'test';

const FASHION_MNIST_FILES: Readonly<Record<FashionMnistSplit, { images: string; labels: string }>> = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
};

/**
 * One split of a Fashion-MNIST folder, checked as the source's `read` checks it. With `limit`,
 * only its first `limit` examples are read: the rest of the files is neither read nor checked.
 */
export function readFashionMnistSplit(
  dir: string,
  split: FashionMnistSplit,
  options: { limit?: number } = {},
): Promise<RawSplit & { files: string[] }> {
  const files = FASHION_MNIST_FILES[split];
  return readIdxPair(dir, files.images, files.labels, 28, 28, FASHION_MNIST_CLASS_NAMES.length, options.limit);
}

const fashionMnist: DataSource = {
  name: 'fashion-mnist',
  defaultLocation: DEFAULT_FASHION_MNIST_DIR,
  description:
    'Zalando Fashion-MNIST: 60,000 train and 10,000 test 28x28 greyscale images, 10 classes ' +
    '(IDX files, gzipped or not)',
  async read(dir: string): Promise<RawDataset> {
    await requireDirectory(dir);
    const numClasses = FASHION_MNIST_CLASS_NAMES.length;
    const [train, test] = await Promise.all([readFashionMnistSplit(dir, 'train'), readFashionMnistSplit(dir, 'test')]);
    return {
      train: { images: train.images, labels: train.labels, count: train.count },
      test: { images: test.images, labels: test.labels, count: test.count },
      featureShape: [28, 28, 1],
      numClasses,
      classNames: [...FASHION_MNIST_CLASS_NAMES],
      sourceFiles: [...train.files, ...test.files],
    };
  },
};

const registry = new Map<string, DataSource>([[fashionMnist.name, fashionMnist]]);

/**
 * A source a user's project registers: rows as the source holds them, streamed. The same shape as
 * pipelines/project.ts' TabularSourceDefinition (declared here too: data/ must not import pipelines/).
 */
export interface ProjectDataSource {
  name: string;
  description: string;
  kind: 'tabular';
  defaultPath?: string;
  stream(path: string): AsyncIterable<Record<string, unknown>>;
}

/**
 * Sources a user's project registers (pipelines/load-project.ts): each streams rows as the source holds them, and
 * tabular ingest infers, checks and encodes them like the built-in tabular sources' rows.
 */
const projectSources = new Map<string, ProjectDataSource>();

/** Adds a project's source; a second, different definition under a taken name is refused. */
export function registerDataSource(source: ProjectDataSource): void {
  if (registry.has(source.name)) throw new Error(`data source "${source.name}" is built in; choose another name`);
  const existing = projectSources.get(source.name);
  if (existing && existing !== source)
    throw new Error(`data source "${source.name}" is registered twice with different definitions`);
  projectSources.set(source.name, source);
}

/** The project's source of that name, if the project registered one. */
export function projectDataSource(name: string): ProjectDataSource | undefined {
  return projectSources.get(name);
}

export function dataSourceNames(): string[] {
  return [...registry.keys(), ...projectSources.keys()].sort();
}

export function getDataSource(name: string): DataSource {
  const source = registry.get(name);
  if (!source) {
    throw new Error(`unknown data source ${JSON.stringify(name)}; known sources: ${dataSourceNames().join(', ')}`);
  }
  return source;
}
