import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from './errors';
import { decodeImageBytes } from './image-decode';
import type { RowReport } from './ingest';
import type { DataSource, ImageShape, RawDataset, RawSplit, SourceReadOptions } from './sources';
import { holdOutTestSplit } from './split';

/**
 * The `image-folder` source: one subfolder per class holding PNG and JPEG files, as Keras'
 * image_dataset_from_directory and torchvision's ImageFolder read them. Every image is decoded and resized with
 * sharp (libvips) to spec.data.image, stretched to that size as Keras does by default (no crop, no padding), by
 * data/image-decode.ts: the model server decodes the images of requests with the same function.
 */

const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;
/** A bigger file is not read at all (a photo from a camera is well under this). */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024;
/** Labels are one byte each. */
const MAX_CLASSES = 256;
/** The decoded dataset is one contiguous buffer; refuse before allocating one larger than this. */
const MAX_DATASET_BYTES = 2 ** 31 - 1;
/** Class folders may hold subfolders (Keras reads them too), this deep at most. */
const MAX_DEPTH = 8;
/** Images decoded at once: libvips has its own threads; this keeps a few files in flight, not thousands. */
const DECODE_CONCURRENCY = 4;
/** Malformed images named in the report (the count covers all of them). */
const MAX_REPORTED = 20;

interface ImageFile {
  file: string;
  label: number;
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await stat(dir)).isDirectory();
  } catch {
    return false;
  }
}

/** The visible subfolders of `dir`, sorted by name (the class order, as Keras and torchvision sort them). */
async function subfolders(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
    .map((entry) => entry.name)
    .sort();
}

function isImageName(name: string): boolean {
  const lower = name.toLowerCase();
  return !name.startsWith('.') && IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Every PNG/JPEG under `dir` (subfolders included), in sorted order so the read is reproducible. */
async function imagesUnder(dir: string, depth = 0): Promise<string[]> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isFile() && isImageName(entry.name)) files.push(full);
    else if (entry.isDirectory() && !entry.name.startsWith('.') && depth < MAX_DEPTH) {
      files.push(...(await imagesUnder(full, depth + 1)));
    }
  }
  return files;
}

/** The images of one split folder (`<root>` or `<root>/train`), labelled by their class folder's index. */
async function listSplit(dir: string, classNames: readonly string[], requireEvery: boolean): Promise<ImageFile[]> {
  const found = await subfolders(dir);
  const unknown = found.filter((name) => !classNames.includes(name));
  if (unknown.length > 0) {
    throw new DatasetError(
      path.join(dir, unknown[0]!),
      `class folder not among the training classes (${classNames.join(', ')})`,
    );
  }
  const files: ImageFile[] = [];
  for (const name of found) {
    const images = await imagesUnder(path.join(dir, name));
    if (images.length === 0 && requireEvery) {
      throw new DatasetError(path.join(dir, name), `class folder holds no ${IMAGE_EXTENSIONS.join('/')} files`);
    }
    const label = classNames.indexOf(name);
    for (const file of images) files.push({ file, label });
  }
  return files;
}

/** The file's bytes, refusing a file over the size limit before reading it. */
async function readBounded(file: string): Promise<Buffer> {
  const handle = await open(file);
  try {
    const { size } = await handle.stat();
    if (size > MAX_IMAGE_FILE_BYTES) {
      throw new Error(`${size} bytes is over the ${MAX_IMAGE_FILE_BYTES}-byte limit for one image`);
    }
    const bytes = Buffer.alloc(size);
    const { bytesRead } = await handle.read(bytes, 0, size, 0);
    return bytes.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** One image file as height × width × channels bytes (the decode the model server uses too), or why it cannot be. */
async function decodeImage(file: string, shape: ImageShape): Promise<Buffer> {
  return decodeImageBytes(await readBounded(file), shape);
}

/** libvips' messages run over several lines; the first says what is wrong. */
function firstLine(error: unknown): string {
  return ((error as Error).message ?? String(error)).split('\n')[0]!.trim();
}

/**
 * Decodes `files` into one buffer, a few at a time. An image that does not decode fails the read (naming its
 * path) or, with `skip`, is left out and counted.
 */
async function decodeAll(
  files: readonly ImageFile[],
  shape: ImageShape,
  onMalformed: SourceReadOptions['onMalformed'],
  report: RowReport,
): Promise<RawSplit> {
  const exampleBytes = shape.height * shape.width * shape.channels;
  if (files.length * exampleBytes > MAX_DATASET_BYTES) {
    throw new DatasetError(
      path.dirname(path.dirname(files[0]!.file)),
      `${files.length} images of ${shape.height}x${shape.width}x${shape.channels} need ` +
        `${files.length * exampleBytes} bytes, over the ${MAX_DATASET_BYTES}-byte limit; use smaller images`,
    );
  }
  const images = new Uint8Array(files.length * exampleBytes);
  const ok = new Uint8Array(files.length);
  const failures: { index: number; reason: string }[] = [];
  let next = 0;
  let failed: DatasetError | undefined;
  const worker = async () => {
    while (next < files.length && !failed) {
      const index = next++;
      const { file } = files[index]!;
      try {
        images.set(await decodeImage(file, shape), index * exampleBytes);
        ok[index] = 1;
      } catch (error) {
        const reason = firstLine(error);
        if (onMalformed === 'fail') failed ??= new DatasetError(file, `unreadable image: ${reason}`);
        failures.push({ index, reason });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DECODE_CONCURRENCY, files.length) }, worker));
  if (failed) throw failed;

  report.read += files.length;
  report.malformed += failures.length;
  for (const { index, reason } of failures.sort((a, b) => a.index - b.index)) {
    if (report.examples.length < MAX_REPORTED) report.examples.push(`${files[index]!.file}: ${reason}`);
  }
  // Keep the images that decoded, in file order.
  const count = files.length - failures.length;
  const kept = failures.length === 0 ? images : new Uint8Array(count * exampleBytes);
  const labels = new Uint8Array(count);
  let k = 0;
  for (let i = 0; i < files.length; i++) {
    if (!ok[i]) continue;
    if (kept !== images) kept.set(images.subarray(i * exampleBytes, (i + 1) * exampleBytes), k * exampleBytes);
    labels[k++] = files[i]!.label;
  }
  return { images: kept, labels, count };
}

export const imageFolderSource: DataSource = {
  name: 'image-folder',
  defaultLocation: 'images',
  needsImageShape: true,
  description:
    'A folder with one subfolder of PNG/JPEG images per class (or train/ and test/ folders laid out so), ' +
    'decoded and resized to spec.data.image',
  async read(root: string, options?: SourceReadOptions): Promise<RawDataset> {
    const shape = options?.image;
    if (!shape) {
      throw new DatasetError(
        root,
        'the image-folder source needs spec.data.image ({ height, width, channels }) to know what size to decode to',
      );
    }
    const onMalformed = options.onMalformed;
    if (!(await isDirectory(root))) throw new DatasetError(root, 'directory not found');
    // `train/<class>/...` (with `test/<class>/...` or a held-out test split) or `<class>/...` directly.
    const trainDir = path.join(root, 'train');
    const testDir = path.join(root, 'test');
    const split = (await isDirectory(trainDir)) && (await subfolders(trainDir)).length > 0;
    const classRoot = split ? trainDir : root;
    const classNames = await subfolders(classRoot);
    if (classNames.length === 0) throw new DatasetError(classRoot, 'holds no class folders');
    if (classNames.length > MAX_CLASSES) {
      throw new DatasetError(
        classRoot,
        `holds ${classNames.length} class folders; at most ${MAX_CLASSES} are supported`,
      );
    }
    const report: RowReport = { read: 0, malformed: 0, dropped: 0, examples: [] };
    const trainFiles = await listSplit(classRoot, classNames, true);
    const hasTest = split && (await isDirectory(testDir));
    const testFiles = hasTest ? await listSplit(testDir, classNames, false) : [];
    const trainAll = await decodeAll(trainFiles, shape, onMalformed, report);
    if (trainAll.count === 0) throw new DatasetError(classRoot, 'holds no readable images');
    const exampleBytes = shape.height * shape.width * shape.channels;
    let train: RawSplit;
    let test: RawSplit;
    if (hasTest) {
      train = trainAll;
      test = await decodeAll(testFiles, shape, onMalformed, report);
      if (test.count === 0) throw new DatasetError(testDir, 'holds no readable images');
    } else {
      ({ train, test } = holdOutTestSplit(trainAll, exampleBytes, options, classRoot));
    }
    return {
      train,
      test,
      featureShape: [shape.height, shape.width, shape.channels],
      numClasses: classNames.length,
      classNames,
      sourceFiles: hasTest ? [classRoot, testDir] : [classRoot],
      rows: report,
    };
  },
};
