import { createHash } from 'node:crypto';
import type { ArtifactStore } from '../../artifacts/store';
import { DatasetError } from '../errors';
import {
  concludeIngest,
  readCompleteManifest,
  type Anomaly,
  type DatasetManifest,
  type DatasetParameters,
  type DatasetRef,
  type IngestOptions,
} from '../ingest';
import { PREPROCESSING_FILE } from '../preprocessing';
import { datasetPrefix } from '../shards';
import type { TabularDataSource } from '../sources';
import { SPLIT_NAMES, type SplitName } from '../split';
import type { DatasetStatistics } from '../statistics';
import { digestLocation } from './digest';
import { buildPreprocessing, splitStatistics } from './encoding';
import { scanRows } from './scan';
import { describeSchema, inferSchema, schemaAnomalies, TabularSchemaSchema, type TabularSchema } from './schema';
import { TabularSettingsSchema, type TabularSettings } from './settings';
import { writeTabularShards } from './write';

const SCHEMA_FILE = 'schema.json';

/**
 * Ingest of a tabular source in two streaming passes, so the file's size never sets the memory used:
 *   1. scan: every row once, into per-split column accumulators → the schema (types, domains), checked against the
 *      stored one (anomalies), and the training split's statistics → the preprocessing (data/preprocessing.ts);
 *   2. write: every row again, encoded with that preprocessing into float32 shards as it goes (skipped when this
 *      very dataset, by fingerprint, is already on the store).
 * Then the per-feature drift against the previous run, as for every source. A CSV is read in place in both passes
 * (readCsvRows.tables: cells as offsets into each chunk, no object per row) and hashed for its fingerprint as pass 1
 * reads it; other sources' rows come as SourceRows.
 */
export async function ingestTabularDataset(
  options: IngestOptions,
  store: ArtifactStore,
  source: TabularDataSource,
  progress: (message: string) => void,
): Promise<DatasetRef> {
  if (options.label === undefined) {
    throw new DatasetError('data.label', `${source.name} is a tabular source: name the column to predict`);
  }
  const settings: TabularSettings = TabularSettingsSchema.parse({
    label: options.label,
    ...(options.task ? { task: options.task } : {}),
    columns: options.columns,
    missing: options.missing,
    onMalformed: options.onMalformed,
    onAnomaly: options.onAnomaly,
    testFraction: options.testFraction,
  });
  const split = {
    seed: options.seed,
    validationFraction: options.validationFraction,
    limits: {
      ...(options.limits.train !== undefined ? { train: options.limits.train } : {}),
      ...(options.limits.test !== undefined ? { test: options.limits.test } : {}),
    },
  };

  progress(`reading ${source.name} from ${options.path}`);
  // A reader of CSV cells in place (one file) hashes the bytes it reads: the same digest, without a second read.
  const digestInScan = source.contentDigest === 'files' && 'tables' in source.rows;
  const [locationDigest, scan] = await Promise.all([
    source.contentDigest === 'files' && !digestInScan ? digestLocation(options.path) : Promise.resolve(undefined),
    scanRows({
      reader: source.rows,
      path: options.path,
      settings,
      split,
      digestRows: source.contentDigest === 'rows',
      digestFile: digestInScan,
      onRows: (read) => progress(`scanned ${read} rows`),
    }),
  ]);
  const fileDigest = locationDigest ?? scan.fileDigest;
  if (source.contentDigest === 'files' && fileDigest === undefined) {
    throw new Error(`${source.name}: its reader did not hash ${options.path}`);
  }
  const report = scan.report;
  progress(
    `scanned ${report.read} rows: ${SPLIT_NAMES.map((name) => `${scan.splits[name].rows} ${name}`).join(', ')}, ` +
      `${report.dropped} dropped, ${report.malformed} malformed`,
  );
  for (const example of report.examples.slice(0, 5)) progress(`skipped ${example}`);

  const notes: string[] = [];
  const schema = inferSchema(scan, settings, notes);
  for (const line of describeSchema(schema)) progress(`schema: ${line}`);
  for (const empty of SPLIT_NAMES.filter((name) => scan.splits[name].rows === 0)) {
    throw new DatasetError(
      options.path,
      `the ${empty} split is empty (${report.read} rows read, ${report.dropped} dropped, ${report.malformed} ` +
        'malformed): too few usable rows for train, validation and test',
    );
  }

  const anomalies = await checkSchema(store, options.schemaKey, schema, progress);
  if (anomalies.length > 0 && settings.onAnomaly === 'fail') {
    throw new DatasetError(
      options.path,
      `${anomalies.length} ${anomalies.length === 1 ? 'anomaly' : 'anomalies'} against the schema stored at ` +
        `${options.schemaKey} (data.onAnomaly is 'fail'; 'warn' lists them and goes on; remove the file to ` +
        `infer a new schema): ${anomalies.map(describeAnomaly).join('; ')}`,
    );
  }

  const preprocessing = buildPreprocessing(schema, scan.splits.train, settings, notes);
  for (const note of notes) progress(`note: ${note}`);
  const parameters: DatasetParameters = {
    seed: options.seed,
    validationFraction: options.validationFraction,
    limits: { train: options.limits.train ?? null, test: options.limits.test ?? null },
    shardSize: options.shardSize,
    tabular: {
      label: settings.label,
      task: settings.task ?? null,
      columns: settings.columns,
      missing: settings.missing,
      onMalformed: settings.onMalformed,
      testFraction: settings.testFraction,
    },
  };
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ format: 'gantry-tabular/1', source: source.name, parameters }));
  hash.update(fileDigest ?? scan.rowsDigest ?? '');
  const fingerprint = hash.digest('hex');
  const prefix = datasetPrefix(fingerprint);
  const manifestKey = `${prefix}/manifest.json`;
  progress(`fingerprint ${fingerprint}`);

  let manifest = await readCompleteManifest(store, manifestKey, fingerprint);
  if (manifest) {
    progress(`dataset ${fingerprint.slice(0, 12)} is already on the store; reusing its shards`);
  } else {
    const written = await writeTabularShards(store, {
      reader: source.rows,
      path: options.path,
      settings,
      split,
      preprocessing,
      fingerprint,
      shardSize: options.shardSize,
      expectedRows: report.read,
      onShard: (name, shards) => progress(`wrote ${name} shard ${shards}`),
    });
    const preprocessingUri = await store.put(`${prefix}/${PREPROCESSING_FILE}`, JSON.stringify(preprocessing, null, 2));
    await store.put(`${prefix}/${SCHEMA_FILE}`, JSON.stringify(schema, null, 2));
    const statistics = Object.fromEntries(
      SPLIT_NAMES.map((name) => [name, splitStatistics(schema, scan.splits[name])]),
    ) as Record<SplitName, DatasetStatistics>;
    const label = preprocessing.label;
    manifest = {
      formatVersion: 1,
      source: source.name,
      fingerprint,
      parameters,
      sourceFiles: source.contentDigest === 'files' ? [options.path] : [],
      task: label.task,
      featureShape: [preprocessing.featureSize],
      featureDtype: 'float32',
      preprocessingUri,
      numClasses: label.task === 'classification' ? label.classes.length : 1,
      classNames: label.task === 'classification' ? label.classes : [],
      counts: {
        train: written.splits.train.count,
        validation: written.splits.validation.count,
        test: written.splits.test.count,
      },
      splits: written.splits,
      statistics,
      rows: written.report,
    } satisfies DatasetManifest;
    await store.put(manifestKey, JSON.stringify(manifest, null, 2));
  }
  progress(
    `encoded ${manifest.counts.train} train / ${manifest.counts.validation} validation / ${manifest.counts.test} ` +
      `test rows into ${manifest.featureShape[0]} features (${manifest.task})`,
  );
  if (options.schemaKey && !(await store.exists(store.uri(options.schemaKey)))) {
    await store.put(options.schemaKey, JSON.stringify(schema, null, 2));
    progress(`schema stored at ${options.schemaKey}; later runs are checked against it`);
  }

  return concludeIngest(store, options, manifest, manifestKey, progress, {
    anomalies,
    ...(manifest.rows ? { rows: manifest.rows } : {}),
  });
}

const describeAnomaly = (a: Anomaly): string => `${a.kind} ${JSON.stringify(a.column)}: ${a.message}`;

/** This run's schema against the stored one: the anomalies (none when nothing is stored yet). */
async function checkSchema(
  store: ArtifactStore,
  key: string | undefined,
  schema: TabularSchema,
  progress: (message: string) => void,
): Promise<Anomaly[]> {
  if (key === undefined) return [];
  const uri = store.uri(key);
  if (!(await store.exists(uri))) return [];
  let stored: TabularSchema;
  try {
    stored = TabularSchemaSchema.parse(JSON.parse((await store.get(uri)).toString('utf8')));
  } catch (error) {
    throw new DatasetError(
      uri,
      `the stored schema is unreadable (${(error as Error).message.split('\n')[0]}); remove it to infer a new one`,
    );
  }
  const anomalies = schemaAnomalies(stored, schema);
  progress(
    anomalies.length === 0 ? `schema matches ${key}` : `${anomalies.length} anomalies against the schema at ${key}`,
  );
  for (const anomaly of anomalies)
    progress(`anomaly: ${anomaly.kind} ${JSON.stringify(anomaly.column)}: ${anomaly.message}`);
  return anomalies;
}
