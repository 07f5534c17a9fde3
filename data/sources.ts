import { stat } from 'node:fs/promises';
import { z } from 'zod';
import { DatasetError } from './errors';
import { readIdxFile, readIdxHead, resolveIdxFile } from './idx';
import { imageFolderSource } from './image-folder';
import type { RowReport } from './ingest';
import { holdOutTestSplit } from './split';
import type { RowReader } from './tabular/rows';
import { TABULAR_FILE_SOURCES } from './tabular/sources';

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
  /** What reading met, for sources that read item by item (images read, skipped as malformed); ingest reports it. */
  rows?: RowReport;
}

/** The size every image of an image source is decoded and resized to (spec.data.image). */
export const ImageShapeSchema = z
  .object({
    height: z.number().int().min(1).max(4096),
    width: z.number().int().min(1).max(4096),
    channels: z.union([z.literal(1), z.literal(3)]).default(3),
  })
  .strict();
export type ImageShape = z.infer<typeof ImageShapeSchema>;

/** The spec.data fields a source may need besides its location. */
export interface SourceReadOptions {
  /** Image sources: decode and resize every image to this; required by them. */
  image?: ImageShape;
  /** An unreadable item (an image that does not decode): fail the read, or skip it and count it in `rows`. */
  onMalformed: 'fail' | 'skip';
  /** Sources without a test split of their own hold this share out for testing, chosen by `seed`. */
  testFraction: number;
  seed: number;
}

export const DEFAULT_SOURCE_READ_OPTIONS: Readonly<SourceReadOptions> = {
  onMalformed: 'fail',
  testFraction: 0.2,
  seed: 42,
};

/**
 * A named way to read a dataset from a location. Pipeline specs name a source (`fashion-mnist`)
 * instead of carrying reader code, so the spec stays plain data.
 */
export interface ArrayDataSource {
  kind?: 'arrays';
  name: string;
  description: string;
  /** Where `read` looks when a pipeline spec gives no `data.path`. */
  defaultLocation: string;
  /** Needs spec.data.image (an image source decodes to that shape): a spec without it is refused up front. */
  needsImageShape?: boolean;
  /** Reads and validates everything under `location`; bad data raises a DatasetError. */
  read(location: string, options?: SourceReadOptions): Promise<RawDataset>;
}

/**
 * A source of rows (CSV, JSON Lines, a user's stream): ingest streams it twice through the tabular ingest
 * (data/tabular/), inferring and checking its schema, encoding each row into float32 features.
 */
export interface TabularDataSource {
  kind: 'tabular';
  name: string;
  description: string;
  /** Where `rows` reads when a pipeline spec gives no `data.path`. */
  defaultLocation: string;
  /** What the fingerprint hashes: the bytes under the location (`files`), or the rows as JSON (a user's stream). */
  contentDigest: 'files' | 'rows';
  rows: RowReader;
  /** Rows are not decoded to an image shape (the field is there so a check can ask any source). */
  needsImageShape?: false;
}

export type DataSource = ArrayDataSource | TabularDataSource;

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
export async function readIdxPair(
  dir: string,
  imagesBase: string,
  labelsBase: string,
  rows: number | undefined,
  cols: number | undefined,
  numClasses: number,
  limit?: number,
): Promise<RawSplit & { files: string[]; rows: number; cols: number }> {
  const imagesFile = await resolveIdxFile(dir, imagesBase);
  const labelsFile = await resolveIdxFile(dir, labelsBase);
  return readIdxFiles(imagesFile, labelsFile, rows, cols, numClasses, limit);
}

/**
 * Reads an image/label pair of IDX files at exact paths and checks that they agree; `rows`/`cols` left undefined
 * take the images' header as it is.
 */
export async function readIdxFiles(
  imagesFile: string,
  labelsFile: string,
  rows: number | undefined,
  cols: number | undefined,
  numClasses: number,
  limit?: number,
): Promise<RawSplit & { files: string[]; rows: number; cols: number }> {
  const read = (file: string, kind: 'images' | 'labels') =>
    limit === undefined ? readIdxFile(file, kind) : readIdxHead(file, kind, limit);
  const [images, labels] = await Promise.all([read(imagesFile, 'images'), read(labelsFile, 'labels')]);
  const [count = 0, imageRows, imageCols] = images.dims;
  if (imageRows === undefined || imageCols === undefined || imageRows === 0 || imageCols === 0) {
    throw new DatasetError(imagesFile, `images are ${imageRows}x${imageCols}; an image needs at least one pixel`);
  }
  if ((rows !== undefined && imageRows !== rows) || (cols !== undefined && imageCols !== cols)) {
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
  return {
    images: images.data,
    labels: labels.data,
    count,
    files: [imagesFile, labelsFile],
    rows: imageRows,
    cols: imageCols,
  };
}

export async function requireDirectory(dir: string): Promise<void> {
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

const fashionMnist: ArrayDataSource = {
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

/** The names an MNIST-layout IDX file goes by: `train-images-idx3-ubyte` and the `train-images.idx3-ubyte` variant. */
function idxNames(prefix: string, kind: 'images' | 'labels'): string[] {
  const suffix = kind === 'images' ? 'idx3-ubyte' : 'idx1-ubyte';
  return [`${prefix}-${kind}-${suffix}`, `${prefix}-${kind}.${suffix}`];
}

/** The first of `names` (each plain or `.gz`) found in `dir`, or null. */
async function findIdxFile(dir: string, names: readonly string[]): Promise<string | null> {
  for (const name of names) {
    try {
      return await resolveIdxFile(dir, name);
    } catch {
      // not under this name; try the next
    }
  }
  return null;
}

/** The image/label files of one split (`train`; `t10k` or `test`), or null when the folder has neither. */
async function findIdxSplit(
  dir: string,
  prefixes: readonly string[],
): Promise<{ images: string; labels: string } | null> {
  for (const prefix of prefixes) {
    const images = await findIdxFile(dir, idxNames(prefix, 'images'));
    const labels = await findIdxFile(dir, idxNames(prefix, 'labels'));
    if (images && labels) return { images, labels };
    if (images || labels) {
      const [found, lacking] = images ? [images, idxNames(prefix, 'labels')] : [labels!, idxNames(prefix, 'images')];
      throw new DatasetError(found, `has no partner file in ${dir} (looked for ${lacking.join(' and ')}, or .gz)`);
    }
  }
  return null;
}

/**
 * Any MNIST-layout IDX folder (MNIST, KMNIST, EMNIST, a team's own export): the image size comes from the
 * header, the classes from the labels (max label + 1, named "0".."k-1"). A folder without a test pair holds
 * `testFraction` of the training examples out.
 */
const idxSource: ArrayDataSource = {
  name: 'idx',
  defaultLocation: 'data',
  description:
    'A folder of MNIST-layout IDX files: train-images/train-labels and t10k-… or test-… (gzipped or not); ' +
    'image size from the header, classes "0".."k-1" from the labels',
  async read(dir: string, options: SourceReadOptions = DEFAULT_SOURCE_READ_OPTIONS): Promise<RawDataset> {
    await requireDirectory(dir);
    const trainFiles = await findIdxSplit(dir, ['train']);
    if (!trainFiles) {
      throw new DatasetError(dir, `no training pair (looked for ${idxNames('train', 'images').join(' or ')}, or .gz)`);
    }
    const testFiles = await findIdxSplit(dir, ['t10k', 'test']);
    // Labels are bytes, so 256 classes at most: the check against numClasses is left to the max computed below.
    const train = await readIdxFiles(trainFiles.images, trainFiles.labels, undefined, undefined, 256);
    const featureShape = [train.rows, train.cols, 1];
    let test: RawSplit;
    let trainSplit: RawSplit = train;
    if (testFiles) {
      const read = await readIdxFiles(testFiles.images, testFiles.labels, train.rows, train.cols, 256);
      test = { images: read.images, labels: read.labels, count: read.count };
    } else {
      const held = holdOutTestSplit(train, train.rows * train.cols, options, trainFiles.images);
      trainSplit = held.train;
      test = held.test;
    }
    let maxLabel = -1;
    for (const labels of [train.labels, test.labels]) for (const label of labels) maxLabel = Math.max(maxLabel, label);
    if (maxLabel < 0) throw new DatasetError(trainFiles.labels, 'holds no labels');
    const numClasses = maxLabel + 1;
    return {
      train: { images: trainSplit.images, labels: trainSplit.labels, count: trainSplit.count },
      test,
      featureShape,
      numClasses,
      classNames: Array.from({ length: numClasses }, (_, i) => String(i)),
      sourceFiles: [trainFiles.images, trainFiles.labels, ...(testFiles ? [testFiles.images, testFiles.labels] : [])],
    };
  },
};

const registry = new Map<string, DataSource>(
  [fashionMnist, idxSource, imageFolderSource, ...TABULAR_FILE_SOURCES].map((source): [string, DataSource] => [
    source.name,
    source,
  ]),
);

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

/** The source of that name, or undefined. */
export function findDataSource(name: string): DataSource | undefined {
  return registry.get(name);
}

/** The built-in array sources, which tools, benches and tests read directly. */
export function getDataSource(name: 'fashion-mnist' | 'idx' | 'image-folder'): ArrayDataSource;
export function getDataSource(name: string): DataSource;
export function getDataSource(name: string): DataSource {
  const source = registry.get(name);
  if (!source) {
    throw new Error(`unknown data source ${JSON.stringify(name)}; known sources: ${dataSourceNames().join(', ')}`);
  }
  return source;
}
