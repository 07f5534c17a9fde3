import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ArtifactStore } from '../artifacts/store';
import {
  compareStatistics,
  DriftReportSchema,
  DriftThresholdsSchema,
  StatisticsBaselineSchema,
  type StatisticsBaseline,
} from './drift';
import { DatasetError } from './errors';
import {
  DEFAULT_SHARD_SIZE,
  datasetPrefix,
  exampleBytesOf,
  SplitRefSchema,
  writeSplitShards,
  type SplitRef,
} from './shards';
import { getDataSource, ImageShapeSchema, type RawDataset } from './sources';
import { sampleIndices, splitTrainValidation, takeExamples, type SplitName } from './split';
import { computeStatistics, DatasetStatisticsSchema, type DatasetStatistics } from './statistics';
import { describeIssues } from '../validation/issues';
import { MissingPolicySchema } from './preprocessing';
import { ColumnSettingSchema } from './tabular/settings';
import { ingestTabularDataset } from './tabular/ingest';
import { identitiesOf, ingestMemoKey, readIngestMemo, writeIngestMemo } from './ingest-memo';

export const IngestOptionsSchema = z.object({
  /** A name from the source registry, e.g. `fashion-mnist`. */
  source: z.string(),
  /** Where the source reads from (a directory for fashion-mnist). */
  path: z.string(),
  seed: z.number().int(),
  validationFraction: z.number().gt(0).lt(1),
  /**
   * At most this many examples: `train` caps the pool that is then split into train and
   * validation (a seeded random subset); `test` caps the official test set (also a seeded subset).
   */
  limits: z
    .object({ train: z.number().int().positive().optional(), test: z.number().int().positive().optional() })
    .default({}),
  /** Where the previous run's statistics live, e.g. 'pipelines/fashion-mnist/last-statistics.json'. */
  statisticsKey: z.string().min(1),
  /** Examples per shard file. Part of the fingerprint, since it changes the layout. */
  shardSize: z.number().int().positive().default(DEFAULT_SHARD_SIZE),
  /** Overrides of the default drift thresholds. */
  driftThresholds: DriftThresholdsSchema.optional(),
  /**
   * Identifies the pipeline run (e.g. the workflow's run id). A retried activity of the same run
   * then compares against the baseline from before the run, not against its own earlier attempt.
   */
  runId: z.string().optional(),
  /** Image sources: the size every image is decoded and resized to (spec.data.image). */
  image: ImageShapeSchema.optional(),
  /** A malformed row or item: fail the ingest (naming file:line), or skip it and count it in `rows`. */
  onMalformed: z.enum(['fail', 'skip']).default('fail'),
  /** Sources without a test split of their own (tabular ones) hold this share out for testing. */
  testFraction: z.number().gt(0).lt(1).default(0.2),
  /** Tabular sources: the column to predict (required for them). */
  label: z.string().min(1).optional(),
  /** Tabular sources: inferred from the label when left out (numeric → regression). */
  task: z.enum(['classification', 'regression']).optional(),
  /** Tabular sources: per-column type and missing-value policy overrides, by the source's column names. */
  columns: z.record(z.string(), ColumnSettingSchema).default({}),
  /** Tabular sources: the missing-value policy of columns that set none. */
  missing: MissingPolicySchema.default('impute'),
  /** Tabular sources: a difference from the stored schema fails the ingest, or is listed and the run goes on. */
  onAnomaly: z.enum(['fail', 'warn']).default('fail'),
  /**
   * Tabular sources: where the pipeline's schema lives between runs, e.g. 'pipelines/penguins/schema.json'. The
   * first run stores the schema it infers; later runs are checked against it. Unset: no schema is kept.
   */
  schemaKey: z.string().min(1).optional(),
});
export type IngestOptions = z.infer<typeof IngestOptionsSchema>;
export type IngestOptionsInput = z.input<typeof IngestOptionsSchema>;

/** A difference between this run's data and the schema stored by the first run (data/tabular/). */
export const AnomalySchema = z.object({
  kind: z.enum(['missing-column', 'new-column', 'type-change', 'new-category', 'out-of-range', 'missing-values']),
  column: z.string(),
  message: z.string(),
});
export type Anomaly = z.infer<typeof AnomalySchema>;

/** What reading the source met: rows read, rows skipped as malformed (with the first few reasons), rows dropped. */
export const RowReportSchema = z.object({
  read: z.number().int().nonnegative(),
  malformed: z.number().int().nonnegative(),
  dropped: z.number().int().nonnegative(),
  /** `file:line: reason` of the first malformed rows (bounded). */
  examples: z.array(z.string()).max(20),
});
export type RowReport = z.infer<typeof RowReportSchema>;

const SplitsSchema = z.object({ train: SplitRefSchema, validation: SplitRefSchema, test: SplitRefSchema });
const SplitStatisticsSchema = z.object({
  train: DatasetStatisticsSchema,
  validation: DatasetStatisticsSchema,
  test: DatasetStatisticsSchema,
});
const CountsSchema = z.object({
  train: z.number().int().nonnegative(),
  validation: z.number().int().nonnegative(),
  test: z.number().int().nonnegative(),
});

/** What identifies and describes a written dataset; shared by the manifest and the DatasetRef. */
const DatasetCoreSchema = z.object({
  source: z.string(),
  /** sha256 (hex) over the source's content and the split parameters. */
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  /** What the label is: a class index (labels one byte each) or a value (labels float32, little-endian). */
  task: z.enum(['classification', 'regression']).default('classification'),
  featureShape: z.array(z.number().int().positive()),
  /** How feature values are stored in the shards: raw bytes (images) or float32 little-endian (encoded records). */
  featureDtype: z.enum(['uint8', 'float32']).default('uint8'),
  /** Classes of a classification; 1 for a regression. */
  numClasses: z.number().int().positive(),
  /** Empty for a regression. */
  classNames: z.array(z.string()),
  /** The dataset's preprocessing.json (data/preprocessing.ts), which training and serving both apply. */
  preprocessingUri: z.string().nullable().default(null),
  counts: CountsSchema,
  splits: SplitsSchema,
  statistics: SplitStatisticsSchema,
});

/** The split parameters after normalisation: a limit at or above the available count is no limit. */
export const DatasetParametersSchema = z.object({
  seed: z.number().int(),
  validationFraction: z.number(),
  limits: z.object({ train: z.number().int().positive().nullable(), test: z.number().int().positive().nullable() }),
  shardSize: z.number().int().positive(),
  /** Tabular sources: what else changes the encoding. */
  tabular: z
    .object({
      label: z.string(),
      task: z.enum(['classification', 'regression']).nullable(),
      columns: z.record(z.string(), ColumnSettingSchema),
      missing: MissingPolicySchema,
      onMalformed: z.enum(['fail', 'skip']),
      testFraction: z.number(),
    })
    .optional(),
});
export type DatasetParameters = z.infer<typeof DatasetParametersSchema>;

/** `datasets/<fingerprint>/manifest.json`: written last, so its presence means every shard is there. */
export const DatasetManifestSchema = DatasetCoreSchema.extend({
  formatVersion: z.literal(1),
  parameters: DatasetParametersSchema,
  sourceFiles: z.array(z.string()),
  /** Tabular sources: what the second pass met (rows read, malformed, dropped). */
  rows: RowReportSchema.optional(),
});
export type DatasetManifest = z.infer<typeof DatasetManifestSchema>;

/** What ingest hands to the rest of the pipeline through Temporal: plain JSON, URIs not bytes. */
export const DatasetRefSchema = DatasetCoreSchema.extend({
  manifestUri: z.string(),
  /** This run's data compared with the previous run's (a property of the run, not of the dataset). */
  drift: DriftReportSchema,
  /** Against the stored schema (empty on the first run and for sources without a schema). */
  anomalies: z.array(AnomalySchema).default([]),
  rows: RowReportSchema.optional(),
});
export type DatasetRef = z.infer<typeof DatasetRefSchema>;

/** Kept at `statisticsKey` between runs. `previous` lets a retried attempt of the same run see the older baseline. */
export const StatisticsRecordSchema = StatisticsBaselineSchema.extend({
  source: z.string(),
  runId: z.string().optional(),
  previous: StatisticsBaselineSchema.nullable(),
});
export type StatisticsRecord = z.infer<typeof StatisticsRecordSchema>;

export function parseIngestOptions(input: unknown): IngestOptions {
  const parsed = IngestOptionsSchema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid ingest options: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function effectiveParameters(options: IngestOptions, raw: RawDataset): DatasetParameters {
  const cap = (limit: number | undefined, available: number) =>
    limit !== undefined && limit < available ? limit : null;
  return {
    seed: options.seed,
    validationFraction: options.validationFraction,
    limits: { train: cap(options.limits.train, raw.train.count), test: cap(options.limits.test, raw.test.count) },
    shardSize: options.shardSize,
  };
}

/**
 * sha256 over the decoded content (shape, classes and every image and label byte, which is the
 * source's decompressed bytes less their headers) and the split parameters. Compression, file
 * names and location do not change it; a different slice, seed or shard size does.
 */
export function datasetFingerprint(raw: RawDataset, source: string, parameters: DatasetParameters): string {
  const hash = createHash('sha256');
  const header = {
    format: 'gantry-dataset/1',
    source,
    featureShape: raw.featureShape,
    numClasses: raw.numClasses,
    classNames: raw.classNames,
    counts: { train: raw.train.count, test: raw.test.count },
    parameters,
  };
  hash.update(JSON.stringify(header));
  for (const bytes of [raw.train.images, raw.train.labels, raw.test.images, raw.test.labels]) {
    hash.update(bytes);
  }
  return hash.digest('hex');
}

/** The manifest of an earlier, complete write of this very dataset, or null if it must be (re)written. */
export async function readCompleteManifest(
  store: ArtifactStore,
  manifestKey: string,
  fingerprint: string,
): Promise<DatasetManifest | null> {
  const uri = store.uri(manifestKey);
  if (!(await store.exists(uri))) return null;
  let manifest: DatasetManifest;
  try {
    manifest = DatasetManifestSchema.parse(JSON.parse((await store.get(uri)).toString('utf8')));
  } catch {
    return null; // unreadable or an older format: write it again
  }
  if (manifest.fingerprint !== fingerprint) return null;
  const shards = Object.values(manifest.splits).flatMap((split) => split.shards);
  const present = await Promise.all(shards.flatMap((s) => [store.exists(s.imagesUri), store.exists(s.labelsUri)]));
  return present.every(Boolean) ? manifest : null;
}

export async function readBaseline(
  store: ArtifactStore,
  key: string,
  runId: string | undefined,
): Promise<StatisticsBaseline | null> {
  const uri = store.uri(key);
  if (!(await store.exists(uri))) return null;
  let record: StatisticsRecord;
  try {
    record = StatisticsRecordSchema.parse(JSON.parse((await store.get(uri)).toString('utf8')));
  } catch (error) {
    throw new DatasetError(
      uri,
      `previous statistics are unreadable (${(error as Error).message.split('\n')[0]}); remove the file to start ` +
        `a new baseline`,
    );
  }
  if (runId !== undefined && record.runId === runId) return record.previous; // a retry of this run
  return { fingerprint: record.fingerprint, statistics: record.statistics };
}

async function writeDataset(
  store: ArtifactStore,
  raw: RawDataset,
  source: string,
  fingerprint: string,
  parameters: DatasetParameters,
  progress: (message: string) => void,
): Promise<DatasetManifest> {
  const exampleBytes = exampleBytesOf(raw.featureShape);
  const indices = splitTrainValidation(raw.train.count, {
    seed: parameters.seed,
    validationFraction: parameters.validationFraction,
    limit: parameters.limits.train ?? undefined,
  });
  const data: Record<SplitName, { images: Uint8Array; labels: Uint8Array; count: number }> = {
    train: takeExamples(raw.train.images, raw.train.labels, indices.train, exampleBytes),
    validation: takeExamples(raw.train.images, raw.train.labels, indices.validation, exampleBytes),
    test: takeExamples(
      raw.test.images,
      raw.test.labels,
      sampleIndices(raw.test.count, parameters.seed, parameters.limits.test ?? undefined),
      exampleBytes,
    ),
  };
  progress(`split ${data.train.count} train / ${data.validation.count} validation / ${data.test.count} test`);

  const splits = {} as Record<SplitName, SplitRef>;
  const statistics = {} as Record<SplitName, DatasetStatistics>;
  for (const name of ['train', 'validation', 'test'] as const) {
    const { images, labels } = data[name];
    statistics[name] = computeStatistics(images, labels, raw.numClasses);
    splits[name] = await writeSplitShards(store, {
      fingerprint,
      split: name,
      images,
      labels,
      featureShape: raw.featureShape,
      shardSize: parameters.shardSize,
      onShard: (written, total) => progress(`wrote ${name} shard ${written}/${total}`),
    });
  }
  const manifest: DatasetManifest = {
    formatVersion: 1,
    source,
    fingerprint,
    parameters,
    sourceFiles: raw.sourceFiles,
    task: 'classification',
    featureShape: raw.featureShape,
    featureDtype: 'uint8',
    preprocessingUri: null,
    numClasses: raw.numClasses,
    classNames: raw.classNames,
    counts: { train: data.train.count, validation: data.validation.count, test: data.test.count },
    splits,
    statistics,
  };
  // Last, so that a manifest on the store always means a complete dataset (see readCompleteManifest).
  await store.put(`${datasetPrefix(fingerprint)}/manifest.json`, JSON.stringify(manifest, null, 2));
  return manifest;
}

/**
 * The whole ingest step: read and validate the source, fingerprint it, split and shard it (once per
 * fingerprint: a retry or rerun finds the manifest and reuses the shards), describe each split,
 * compare the train split with the previous run's and record this run as the new baseline.
 */
export async function ingestDataset(
  input: IngestOptionsInput,
  store: ArtifactStore,
  onProgress?: (message: string) => void,
): Promise<DatasetRef> {
  const options = parseIngestOptions(input);
  const progress = onProgress ?? (() => {});
  const source = getDataSource(options.source);
  if (source.kind === 'tabular') return ingestTabularDataset(options, store, source, progress);

  const readOptions = {
    ...(options.image ? { image: options.image } : {}),
    onMalformed: options.onMalformed,
    testFraction: options.testFraction,
    seed: options.seed,
  };
  const { seed, validationFraction, limits, shardSize } = options;
  const memoKey = ingestMemoKey(source.name, options.path, {
    readOptions,
    parameters: { seed, validationFraction, limits, shardSize },
  });
  const memo = await readIngestMemo(store, memoKey);
  if (memo) {
    const key = `${datasetPrefix(memo.fingerprint)}/manifest.json`;
    const manifest = await readCompleteManifest(store, key, memo.fingerprint);
    if (manifest) {
      progress(
        `dataset ${memo.fingerprint.slice(0, 12)} is already on the store and ${options.path} is unchanged since ` +
          'it was read; reusing its shards without reading the source',
      );
      const rows = RowReportSchema.safeParse(memo.rows);
      return concludeIngest(store, options, manifest, key, progress, rows.success ? { rows: rows.data } : {});
    }
  }

  progress(`reading ${source.name} from ${options.path}`);
  const readStarted = Date.now();
  const raw = await source.read(options.path, readOptions);
  if (raw.rows && raw.rows.malformed > 0) {
    progress(
      `skipped ${raw.rows.malformed} malformed of ${raw.rows.read}: ${raw.rows.examples.slice(0, 3).join('; ')}`,
    );
  }
  progress(`validated ${raw.train.count} train and ${raw.test.count} test examples`);

  const parameters = effectiveParameters(options, raw);
  const fingerprint = datasetFingerprint(raw, source.name, parameters);
  const manifestKey = `${datasetPrefix(fingerprint)}/manifest.json`;
  progress(`fingerprint ${fingerprint}`);

  let manifest = await readCompleteManifest(store, manifestKey, fingerprint);
  if (manifest) {
    progress(`dataset ${fingerprint.slice(0, 12)} is already on the store; reusing its shards`);
  } else {
    manifest = await writeDataset(store, raw, source.name, fingerprint, parameters, progress);
  }
  // Not when a file changed after the read began (its ctime says so): the fingerprint may not be of what it holds.
  const identities = await identitiesOf(options.path, raw.sourceFiles).catch(() => null);
  if (identities?.every((f) => f.ctimeMs < readStarted))
    await writeIngestMemo(store, memoKey, { fingerprint, files: identities, ...(raw.rows ? { rows: raw.rows } : {}) });

  return concludeIngest(store, options, manifest, manifestKey, progress, raw.rows ? { rows: raw.rows } : {});
}

/**
 * The end every ingest shares (arrays of images and tabular rows alike): this run's training statistics against
 * the previous run's (the drift report), this run recorded as the new baseline, and the DatasetRef the rest of the
 * pipeline gets.
 */
export async function concludeIngest(
  store: ArtifactStore,
  options: IngestOptions,
  manifest: DatasetManifest,
  manifestKey: string,
  progress: (message: string) => void,
  found: { anomalies?: Anomaly[]; rows?: RowReport },
): Promise<DatasetRef> {
  const fingerprint = manifest.fingerprint;
  const previous = await readBaseline(store, options.statisticsKey, options.runId);
  const drift = compareStatistics(previous, manifest.statistics.train, options.driftThresholds);
  progress(
    drift.drifted
      ? `drift: ${drift.reasons.join('; ')}`
      : `no drift (${drift.reasons.join('; ') || 'within thresholds'})`,
  );
  const record: StatisticsRecord = {
    source: manifest.source,
    fingerprint,
    statistics: manifest.statistics.train,
    ...(options.runId !== undefined ? { runId: options.runId } : {}),
    previous,
  };
  await store.put(options.statisticsKey, JSON.stringify(record, null, 2));

  return DatasetRefSchema.parse({
    source: manifest.source,
    fingerprint,
    manifestUri: store.uri(manifestKey),
    task: manifest.task,
    featureShape: manifest.featureShape,
    featureDtype: manifest.featureDtype,
    numClasses: manifest.numClasses,
    classNames: manifest.classNames,
    preprocessingUri: manifest.preprocessingUri,
    counts: manifest.counts,
    splits: manifest.splits,
    statistics: manifest.statistics,
    drift,
    anomalies: found.anomalies ?? [],
    ...(found.rows ? { rows: found.rows } : {}),
  });
}
