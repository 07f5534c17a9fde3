import { writeFile } from 'node:fs/promises';
import { tableFromJSON, tableToIPC } from 'apache-arrow';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../artifacts/store';
import {
  DatasetError,
  DatasetManifestSchema,
  DatasetRefSchema,
  ingestDataset,
  loadSplit,
  TabularSchemaSchema,
  type DatasetRef,
  type IngestOptionsInput,
} from '../../data/index';
import { RecordEncoder, TabularPreprocessingSchema, type TabularPreprocessing } from '../../data/preprocessing';
import { splitOfRow } from '../../data/tabular/assign';
import { makeTempDir, removeTempDir } from './helpers';
import { CARS_JSON, PENGUINS_JSON, readJsonRows, writeCsv, writeJsonl, type Row } from './tabular-helpers';

const penguins = readJsonRows(PENGUINS_JSON);
const cars = readJsonRows(CARS_JSON);

function options(source: string, file: string, extra: Partial<IngestOptionsInput> = {}): IngestOptionsInput {
  return {
    source,
    path: file,
    seed: 3,
    validationFraction: 0.1,
    statisticsKey: `pipelines/${path.basename(file)}/last-statistics.json`,
    schemaKey: `pipelines/${path.basename(file)}/schema.json`,
    label: 'Species',
    ...extra,
  };
}

async function preprocessingOf(store: FileArtifactStore, ref: DatasetRef): Promise<TabularPreprocessing> {
  return TabularPreprocessingSchema.parse(JSON.parse((await store.get(ref.preprocessingUri!)).toString('utf8')));
}

/** The source rows that went to `split`, in file order (labels present: the penguins and cars rows have them). */
function rowsOf(rows: Row[], split: string, label: string): Row[] {
  return rows.filter((row, i) => row[label] !== null && splitOfRow(i, 3, 0.2, 0.1) === split);
}

describe('tabular ingest: penguins as JSON, CSV and JSON Lines', () => {
  let dir: string;
  let store: FileArtifactStore;
  const refs: Record<string, DatasetRef> = {};
  const messages: string[] = [];

  beforeAll(async () => {
    dir = await makeTempDir('tabular-ingest');
    store = new FileArtifactStore(path.join(dir, 'store'));
    const csv = await writeCsv(path.join(dir, 'penguins.csv'), penguins);
    const jsonl = await writeJsonl(path.join(dir, 'penguins.jsonl'), penguins);
    refs.json = await ingestDataset(options('json', PENGUINS_JSON), store, (m) => messages.push(m));
    refs.csv = await ingestDataset(options('csv', csv), store);
    refs.jsonl = await ingestDataset(options('jsonl', jsonl), store);
    const arrow = path.join(dir, 'penguins.arrow');
    await writeFile(arrow, tableToIPC(tableFromJSON(penguins), 'file'));
    refs.arrow = await ingestDataset(options('arrow', arrow), store);
  });
  afterAll(() => removeTempDir(dir));

  it('describes a classification over float32 features with its preprocessing', async () => {
    const ref = refs.json!;
    expect(DatasetRefSchema.parse(JSON.parse(JSON.stringify(ref)))).toEqual(ref);
    expect(ref).toMatchObject({ task: 'classification', featureDtype: 'float32', numClasses: 3, anomalies: [] });
    expect(ref.classNames).toEqual(['Adelie', 'Chinstrap', 'Gentoo']);
    expect(ref.rows).toEqual({ read: 344, malformed: 0, dropped: 0, examples: [] });
    expect(ref.counts.train + ref.counts.validation + ref.counts.test).toBe(344);
    expect(ref.counts.test).toBe(rowsOf(penguins, 'test', 'Species').length);
    const preprocessing = await preprocessingOf(store, ref);
    // Island 3 + 1 OOV, four numerics, Sex (MALE, FEMALE, ".") 3 + 1 OOV.
    expect(preprocessing.featureSize).toBe(12);
    expect(ref.featureShape).toEqual([12]);
    expect(preprocessing.columns.map((c) => `${c.name}:${c.kind}`)).toEqual([
      'Island:categorical',
      'Beak Length (mm):numeric',
      'Beak Depth (mm):numeric',
      'Flipper Length (mm):numeric',
      'Body Mass (g):numeric',
      'Sex:categorical',
    ]);
    expect(preprocessing.label).toEqual({ name: 'Species', task: 'classification', classes: ref.classNames });
    // Statistics of the training split only: the mean the encoder subtracts is the train rows' mean.
    const train = rowsOf(penguins, 'train', 'Species');
    const masses = train.map((r) => r['Body Mass (g)']).filter((v): v is number => typeof v === 'number');
    const mass = preprocessing.columns.find((c) => c.name === 'Body Mass (g)');
    expect(mass?.kind === 'numeric' && mass.mean).toBeCloseTo(masses.reduce((a, b) => a + b, 0) / masses.length, 6);
    const schemaLines = messages.filter((m) => m.startsWith('schema: '));
    expect(schemaLines[0]).toBe('schema: label "Species": classification, 3 classes ("Adelie", "Chinstrap", "Gentoo")');
    expect(schemaLines).toContain('schema:   "Body Mass (g)": numeric (inferred) [2700, 6300], has missing values');
  });

  it('writes shards that hold exactly the encoder output of each row of the split, with class indices', async () => {
    const ref = refs.json!;
    const preprocessing = await preprocessingOf(store, ref);
    const encoder = new RecordEncoder(preprocessing);
    for (const split of ['train', 'validation', 'test'] as const) {
      const loaded = await loadSplit(store, ref, split);
      expect(loaded.images).toBeInstanceOf(Float32Array);
      expect(loaded.labels).toBeInstanceOf(Uint8Array);
      const rows = rowsOf(penguins, split, 'Species');
      expect(loaded.count).toBe(rows.length);
      const expected = new Float32Array(rows.length * encoder.featureSize);
      rows.forEach((row, i) => encoder.encode((c) => row[c], expected, i * encoder.featureSize));
      expect(loaded.images).toEqual(expected);
      expect([...loaded.labels]).toEqual(rows.map((row) => ref.classNames.indexOf(row.Species as string)));
    }
  });

  it('gives the same schema, preprocessing and splits from CSV, JSON Lines and Arrow', async () => {
    const json = await preprocessingOf(store, refs.json!);
    for (const other of [refs.csv!, refs.jsonl!, refs.arrow!]) {
      expect(other.counts).toEqual(refs.json!.counts);
      expect(other.classNames).toEqual(refs.json!.classNames);
      const preprocessing = await preprocessingOf(store, other);
      expect(preprocessing.featureSize).toBe(json.featureSize);
      preprocessing.columns.forEach((column, i) => {
        const expected = json.columns[i]!;
        expect(column.name).toBe(expected.name);
        expect(column.kind).toBe(expected.kind);
        if (column.kind === 'numeric' && expected.kind === 'numeric') {
          expect(column.mean).toBeCloseTo(expected.mean, 9);
          expect(column.std).toBeCloseTo(expected.std, 9);
        } else expect(column).toEqual(expected);
      });
      expect((await loadSplit(store, other, 'test')).images).toEqual(
        (await loadSplit(store, refs.json!, 'test')).images,
      );
    }
    expect(new Set(Object.values(refs).map((ref) => ref.fingerprint)).size).toBe(4);
  });

  it('stores the schema for the pipeline and with the dataset, and the manifest with the row report', async () => {
    const stored = TabularSchemaSchema.parse(
      JSON.parse((await store.get(store.uri('pipelines/penguins.csv/schema.json'))).toString('utf8')),
    );
    expect(stored.columns.find((c) => c.name === 'Island')).toMatchObject({
      type: 'categorical',
      categories: ['Biscoe', 'Dream', 'Torgersen'],
      hasMissing: false,
    });
    expect(stored.columns.find((c) => c.name === 'Flipper Length (mm)')).toMatchObject({
      type: 'numeric',
      min: 172,
      max: 231,
      hasMissing: true,
    });
    const manifest = DatasetManifestSchema.parse(JSON.parse((await store.get(refs.csv!.manifestUri)).toString('utf8')));
    expect(manifest.rows?.read).toBe(344);
    expect(manifest.parameters.tabular).toMatchObject({ label: 'Species', testFraction: 0.2 });
    expect(await store.exists(store.uri(`datasets/${refs.csv!.fingerprint}/schema.json`))).toBe(true);
  });

  it('a rerun reuses the shards and reports per-feature drift (none) against the first run', async () => {
    const again: string[] = [];
    const ref = await ingestDataset(options('json', PENGUINS_JSON), store, (m) => again.push(m));
    expect(ref.fingerprint).toBe(refs.json!.fingerprint);
    expect(again.some((m) => m.includes('reusing its shards'))).toBe(true);
    expect(ref.drift.previousFingerprint).toBe(refs.json!.fingerprint);
    expect(ref.drift.drifted).toBe(false);
    expect(ref.drift.features.map((f) => `${f.name}:${f.metric}:${f.value}`)).toEqual([
      'Island:jsDivergence:0',
      'Beak Length (mm):meanShift:0',
      'Beak Depth (mm):meanShift:0',
      'Flipper Length (mm):meanShift:0',
      'Body Mass (g):meanShift:0',
      'Sex:jsDivergence:0',
    ]);
  });
});

describe('tabular ingest: cars regression, policies and malformed rows', () => {
  let dir: string;
  let store: FileArtifactStore;

  beforeAll(async () => {
    dir = await makeTempDir('tabular-policies');
    store = new FileArtifactStore(path.join(dir, 'store'));
  });
  afterAll(() => removeTempDir(dir));

  it('cars.json: miles per gallon is a regression with float32 labels; rows without a label are dropped', async () => {
    const ref = await ingestDataset(
      options('json', CARS_JSON, { label: 'Miles_per_Gallon', columns: { Name: { type: 'ignore' } } }),
      store,
    );
    expect(ref).toMatchObject({ task: 'regression', numClasses: 1, classNames: [], featureDtype: 'float32' });
    expect(ref.rows).toMatchObject({ read: 406, dropped: 8, malformed: 0 });
    const preprocessing = await preprocessingOf(store, ref);
    expect(preprocessing.label).toEqual({ name: 'Miles_per_Gallon', task: 'regression' });
    expect(preprocessing.columns.map((c) => c.name)).not.toContain('Name');
    const test = await loadSplit(store, ref, 'test');
    expect(test.labels).toBeInstanceOf(Float32Array);
    const expected = cars.filter((r, i) => r.Miles_per_Gallon !== null && splitOfRow(i, 3, 0.2, 0.1) === 'test');
    expect([...test.labels]).toEqual(expected.map((r) => Math.fround(r.Miles_per_Gallon as number)));
    const summary = ref.statistics.train.labelSummary!;
    expect(summary.min).toBeGreaterThanOrEqual(9);
    expect(summary.max).toBeLessThanOrEqual(46.6);
    expect(ref.statistics.train.features?.find((f) => f.name === 'Horsepower')).toMatchObject({ kind: 'numeric' });
    expect(ref.statistics.train.features?.find((f) => f.name === 'Origin')).toMatchObject({
      kind: 'categorical',
      distinct: 3,
    });
  });

  it("a short CSV row fails the ingest with its file:line under 'fail' and is counted under 'skip'", async () => {
    const rows = penguins.filter((_, i) => i % 5 === 0); // 69 rows of all three species
    const file = await writeCsv(path.join(dir, 'short.csv'), rows);
    const text = (await import('node:fs')).readFileSync(file, 'utf8').split('\n');
    text[10] = 'Adelie,Torgersen,39.1'; // line 11 of the file
    await writeFile(file, text.join('\n'));
    const failed = ingestDataset(options('csv', file), store);
    await expect(failed).rejects.toThrow(DatasetError);
    await expect(ingestDataset(options('csv', file), store)).rejects.toThrow(
      `${file}:11: has 3 fields, the header has 7 (data.onMalformed is 'fail'`,
    );
    const skipped = await ingestDataset(options('csv', file, { onMalformed: 'skip' }), store);
    expect(skipped.rows).toEqual({
      read: 69,
      malformed: 1,
      dropped: 0,
      examples: [`${file}:11: has 3 fields, the header has 7`],
    });
    expect(skipped.counts.train + skipped.counts.validation + skipped.counts.test).toBe(68);
  });

  it('a value the declared type cannot read is malformed; missing values follow their column policy', async () => {
    const file = await writeCsv(path.join(dir, 'policies.csv'), penguins);
    // penguins.json row 4 (line 5 of the CSV) has every measurement missing, Sex too.
    await expect(
      ingestDataset(options('csv', file, { columns: { 'Body Mass (g)': { missing: 'fail' } } }), store),
    ).rejects.toThrow(`${file}:5: column "Body Mass (g)" has no value and its missing policy is 'fail'`);
    const dropped = await ingestDataset(options('csv', file, { missing: 'drop' }), store);
    const incomplete = penguins.filter((row) => Object.values(row).some((v) => v === null)).length;
    expect(dropped.rows?.dropped).toBe(incomplete);
    expect(dropped.counts.train + dropped.counts.validation + dropped.counts.test).toBe(344 - incomplete);

    await expect(
      ingestDataset(options('csv', file, { columns: { Island: { type: 'numeric' } }, onMalformed: 'skip' }), store),
    ).rejects.toThrow(`${file}: the train split is empty (344 rows read, 0 dropped, 344 malformed)`);
    await expect(
      ingestDataset(options('csv', file, { columns: { Island: { type: 'numeric' } } }), store),
    ).rejects.toThrow(`${file}:2: column "Island": expected a number, got "Torgersen"`);
  });

  it('a JSON row lacking a column named like an Object member reads it as missing, not as inherited', async () => {
    const rows = Array.from({ length: 60 }, (_, i) => ({
      y: i % 2 ? 'odd' : 'even',
      ...(i % 3 ? {} : { constructor: i }),
    }));
    const file = await writeJsonl(path.join(dir, 'proto.jsonl'), rows);
    const ref = await ingestDataset(options('jsonl', file, { label: 'y' }), store);
    const preprocessing = await preprocessingOf(store, ref);
    expect(preprocessing.columns).toMatchObject([{ name: 'constructor', kind: 'numeric' }]);
    const all = ['train', 'validation', 'test'] as const;
    const missing = all.reduce((sum, s) => sum + (ref.statistics[s].features?.[0]?.missing ?? 0), 0);
    expect(missing).toBe(40);
  });

  it('refuses a tabular source without a label, a label it lacks and columns it does not have', async () => {
    await expect(ingestDataset(options('json', PENGUINS_JSON, { label: undefined }), store)).rejects.toThrow(
      /data\.label: json is a tabular source: name the column to predict/,
    );
    await expect(ingestDataset(options('json', PENGUINS_JSON, { label: 'Kind' }), store)).rejects.toThrow(
      /data\.label: column "Kind" is not in the source \(columns: Species, Island/,
    );
    await expect(
      ingestDataset(options('json', PENGUINS_JSON, { columns: { Wings: { type: 'ignore' } } }), store),
    ).rejects.toThrow(/data\.columns: names "Wings", not in the source/);
  });
});
