import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../artifacts/store';
import {
  DatasetError,
  DatasetManifestSchema,
  DatasetRefSchema,
  DEFAULT_FASHION_MNIST_DIR,
  getDataSource,
  ingestDataset,
  loadSplit,
  splitTrainValidation,
  takeExamples,
  computeStatistics,
  type DatasetRef,
  type IngestOptionsInput,
  type RawDataset,
} from '../../data/index';
import { makeTempDir, removeTempDir, syntheticSplit, writeFashionLayout } from './helpers';

const STATISTICS_KEY = 'pipelines/fashion-mnist/last-statistics.json';
const options: IngestOptionsInput = {
  source: 'fashion-mnist',
  path: DEFAULT_FASHION_MNIST_DIR,
  seed: 7,
  validationFraction: 0.1,
  limits: { train: 2000, test: 500 },
  statisticsKey: STATISTICS_KEY,
  shardSize: 1000, // 1,800 train examples → two shards, so multi-shard reads are exercised
};

const sha1 = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest('hex');

describe('ingestDataset end to end into a FileArtifactStore', () => {
  let root: string;
  let store: FileArtifactStore;
  let raw: RawDataset;
  let first: DatasetRef;
  let firstMessages: string[];

  beforeAll(async () => {
    root = await makeTempDir('ingest');
    store = new FileArtifactStore(root);
    raw = await getDataSource('fashion-mnist').read(DEFAULT_FASHION_MNIST_DIR);
    firstMessages = [];
    first = await ingestDataset(options, store, (m) => firstMessages.push(m));
  });
  afterAll(() => removeTempDir(root));

  it('returns a plain-JSON reference with the limited counts', () => {
    expect(first.counts).toEqual({ train: 1800, validation: 200, test: 500 });
    expect(first.featureShape).toEqual([28, 28, 1]);
    expect(first.numClasses).toBe(10);
    expect(first.classNames).toHaveLength(10);
    expect(first.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(first.splits.train.shards.map((s) => s.count)).toEqual([1000, 800]);
    expect(first.splits.test.shards).toHaveLength(1);
    expect(first.statistics.train.count).toBe(1800);
    expect(first.statistics.test.count).toBe(500);
    expect(first.drift).toMatchObject({
      previousFingerprint: null,
      drifted: false,
      reasons: ['no previous statistics'],
    });
    expect(DatasetRefSchema.parse(JSON.parse(JSON.stringify(first)))).toEqual(first);
    expect(firstMessages.some((m) => m.startsWith('wrote train shard 2/2'))).toBe(true);
  });

  it('writes a manifest under datasets/<fingerprint>/', async () => {
    expect(first.manifestUri).toBe(store.uri(`datasets/${first.fingerprint}/manifest.json`));
    expect(await store.exists(first.manifestUri)).toBe(true);
    const manifest = DatasetManifestSchema.parse(JSON.parse((await store.get(first.manifestUri)).toString()));
    expect(manifest.fingerprint).toBe(first.fingerprint);
    expect(manifest.splits).toEqual(first.splits);
    expect(manifest.parameters).toEqual({
      seed: 7,
      validationFraction: 0.1,
      limits: { train: 2000, test: 500 },
      shardSize: 1000,
    });
    expect(await store.list(`datasets/${first.fingerprint}`)).toEqual(['manifest.json', 'test', 'train', 'validation']);
  });

  it('writes shards that loadSplit reads back byte for byte', async () => {
    const exampleBytes = 784;
    const indices = splitTrainValidation(60000, { seed: 7, validationFraction: 0.1, limit: 2000 });
    const expected = {
      train: takeExamples(raw.train.images, raw.train.labels, indices.train, exampleBytes),
      validation: takeExamples(raw.train.images, raw.train.labels, indices.validation, exampleBytes),
    };
    for (const name of ['train', 'validation'] as const) {
      const loaded = await loadSplit(store, first, name);
      expect(loaded.count).toBe(first.counts[name]);
      expect(loaded.images.length).toBe(first.counts[name] * exampleBytes);
      expect(Buffer.from(loaded.images).equals(Buffer.from(expected[name].images))).toBe(true);
      expect(Buffer.from(loaded.labels).equals(Buffer.from(expected[name].labels))).toBe(true);
      expect(computeStatistics(loaded.images as Uint8Array, loaded.labels as Uint8Array, 10)).toEqual(
        first.statistics[name],
      );
    }

    // Independently of the split code: every test example is a real test image with its own label.
    const testByImage = new Map<string, Set<number>>();
    for (let i = 0; i < raw.test.count; i++) {
      const key = sha1(raw.test.images.subarray(i * exampleBytes, (i + 1) * exampleBytes));
      testByImage.set(key, (testByImage.get(key) ?? new Set()).add(raw.test.labels[i]!));
    }
    const test = await loadSplit(store, first, 'test');
    expect(test.count).toBe(500);
    for (let i = 0; i < test.count; i++) {
      const labels = testByImage.get(
        sha1(test.images.subarray(i * exampleBytes, (i + 1) * exampleBytes) as Uint8Array),
      );
      expect(labels?.has(test.labels[i]!)).toBe(true);
    }
  });

  it(
    'is idempotent: the same options give the same fingerprint, reuse the shards ' + 'and compare with the first run',
    async () => {
      const shardFile = fileURLToPath(first.splits.train.shards[0]!.imagesUri);
      const before = (await stat(shardFile)).mtimeMs;
      const messages: string[] = [];
      const second = await ingestDataset(options, store, (m) => messages.push(m));
      expect(second.fingerprint).toBe(first.fingerprint);
      expect(second.splits).toEqual(first.splits);
      expect((await stat(shardFile)).mtimeMs).toBe(before);
      expect(messages.some((m) => m.includes('already on the store'))).toBe(true);
      expect(second.drift.previousFingerprint).toBe(first.fingerprint);
      expect(second.drift.drifted).toBe(false);
      expect(second.drift.metrics).toEqual({
        pixelMeanShift: 0,
        pixelStdRatio: 1,
        labelDistributionJsDivergence: 0,
        maxLabelShareChange: 0,
      });
    },
  );

  it('gives a different dataset for a different seed, compared against the last run', async () => {
    const other = await ingestDataset({ ...options, seed: 8 }, store);
    expect(other.fingerprint).not.toBe(first.fingerprint);
    expect(other.counts).toEqual(first.counts);
    expect(other.drift.previousFingerprint).toBe(first.fingerprint);
    expect(other.drift.metrics!.labelDistributionJsDivergence).toBeGreaterThan(0);
    // Two random 2,000-image subsets of one dataset are not drift.
    expect(other.drift.drifted).toBe(false);
    const loaded = await loadSplit(store, other, 'train');
    const firstLoaded = await loadSplit(store, first, 'train');
    expect(Buffer.from(loaded.images).equals(Buffer.from(firstLoaded.images))).toBe(false);
  });

  it('a retried attempt of one run compares with the baseline from before the run', async () => {
    const runStore = new FileArtifactStore(path.join(root, 'retry-store'));
    const baseline = await ingestDataset(options, runStore);
    const attempt1 = await ingestDataset({ ...options, seed: 11, runId: 'run-1' }, runStore);
    const attempt2 = await ingestDataset({ ...options, seed: 11, runId: 'run-1' }, runStore);
    expect(attempt1.drift.previousFingerprint).toBe(baseline.fingerprint);
    expect(attempt2.drift).toEqual(attempt1.drift);
    const next = await ingestDataset({ ...options, seed: 11, runId: 'run-2' }, runStore);
    expect(next.drift.previousFingerprint).toBe(attempt1.fingerprint);
  });

  it('reports drift when the data changes shape', async () => {
    // A synthetic source in the Fashion-MNIST layout where every training label is 0.
    const dir = path.join(root, 'skewed');
    await mkdir(dir);
    await writeFashionLayout(dir, { train: syntheticSplit(100, () => 0), gzip: true });
    const skewed = await ingestDataset({ ...options, path: dir, limits: {} }, store);
    expect(skewed.counts).toEqual({ train: 90, validation: 10, test: 10 });
    expect(skewed.drift.drifted).toBe(true);
    expect(skewed.drift.reasons.some((r) => r.startsWith('labelDistributionJsDivergence'))).toBe(true);
    expect(skewed.drift.reasons.some((r) => r.startsWith('maxLabelShareChange'))).toBe(true);
  });

  it('skips reading unchanged source files on a rerun, and reads them again once one changes', async () => {
    const dir = path.join(root, 'memo');
    await mkdir(dir);
    await writeFashionLayout(dir, { train: syntheticSplit(60, (i) => i % 10), gzip: true });
    const memoStore = new FileArtifactStore(path.join(root, 'memo-store'));
    const ingest = async () => {
      const messages: string[] = [];
      const ref = await ingestDataset({ ...options, path: dir, limits: {} }, memoStore, (m) => messages.push(m));
      return { ref, read: messages.some((m) => m.startsWith('reading ')) };
    };
    const first = await ingest();
    expect(first.read).toBe(true);
    const again = await ingest();
    expect(again.read).toBe(false);
    expect(again.ref).toMatchObject({ fingerprint: first.ref.fingerprint, splits: first.ref.splits });
    // New labels, same sizes: the files' mtime and ctime change, so the source is read (and fingerprinted) again.
    await writeFashionLayout(dir, { train: syntheticSplit(60, () => 3), gzip: true });
    const changed = await ingest();
    expect(changed.read).toBe(true);
    expect(changed.ref.fingerprint).not.toBe(first.ref.fingerprint);
  });

  it('loadSplit fails clearly when a shard disagrees with the reference', async () => {
    const bogusUri = await store.put('bogus/images.u8', new Uint8Array(10));
    const tampered = structuredClone(first);
    tampered.splits.test.shards[0]!.imagesUri = bogusUri;
    await expect(loadSplit(store, tampered, 'test')).rejects.toThrow(
      new DatasetError(bogusUri, 'shard has 10 bytes, the dataset reference says 500 examples x 784 bytes = 392000'),
    );
    const missing = structuredClone(first);
    missing.splits.validation.shards[0]!.labelsUri = store.uri('bogus/missing.u8');
    await expect(loadSplit(store, missing, 'validation')).rejects.toThrow(/missing\.u8: shard not found/);
  });

  it('rejects bad options, naming the field', async () => {
    await expect(ingestDataset({ ...options, validationFraction: 1.5 }, store)).rejects.toThrow(/validationFraction/);
    await expect(ingestDataset({ ...options, source: 'cifar-10' }, store)).rejects.toThrow(
      /known sources: .*fashion-mnist/,
    );
    await expect(ingestDataset({ ...options, path: path.join(root, 'nowhere') }, store)).rejects.toBeInstanceOf(
      DatasetError,
    );
  });

  it('refuses to overwrite unreadable previous statistics', async () => {
    const key = 'pipelines/broken/last-statistics.json';
    await store.put(key, '{"not": "statistics"}');
    await expect(ingestDataset({ ...options, statisticsKey: key }, store)).rejects.toThrow(
      /previous statistics are unreadable/,
    );
  });
});
