import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../artifacts/store';
import { ingestDataset, type DatasetRef, type IngestOptionsInput } from '../../data/index';
import { makeTempDir, removeTempDir } from './helpers';
import { CARS_JSON, csvText, PENGUINS_JSON, readJsonRows, type Row } from './tabular-helpers';

/**
 * The ingest's results pinned to digests taken before the CSV path was optimised (data/tabular/csv.ts et al.): the
 * statistics, schema, preprocessing and row report, and every shard byte, of real vega-datasets data. A change to any
 * of them changes a digest, so a faster ingest is proved to compute exactly what the slower one did.
 */
const penguins = readJsonRows(PENGUINS_JSON);
const cars = readJsonRows(CARS_JSON);

/**
 * 12,000 penguin rows: the 344 records cycled, Body Mass made distinct per row (past the 10,000 tracked categories),
 * a yes/no column, a quoted note with commas and quotes, some "NA" cells, and two malformed lines.
 */
function penguinsCsv(): string {
  const rows: Row[] = [];
  for (let i = 0; i < 12_000; i++) {
    const r = penguins[i % penguins.length]!;
    const mass = r['Body Mass (g)'];
    rows.push({
      ...r,
      'Body Mass (g)': typeof mass === 'number' ? mass + i / 100 : null,
      Heavy: typeof mass === 'number' ? (mass > 4200 ? 'yes' : 'no') : null,
      Note: i % 7 === 0 ? `seen "twice", at ${i % 13}` : `n${i % 50}`,
    });
  }
  const lines = csvText(rows).split('\n');
  lines[5] = lines[5]!.replace(/^Adelie,/, 'Adelie,"x"y,');
  lines[40] = 'Gentoo,Biscoe,1';
  lines[77] = lines[77]!.replace(/,[^,]*$/, ',NA');
  return `${lines.join('\r\n')}\r\n`;
}

const digest = (value: unknown): string =>
  createHash('sha256')
    .update(typeof value === 'string' || value instanceof Uint8Array ? value : JSON.stringify(value))
    .digest('hex')
    .slice(0, 16);

/** Digests of what an ingest produced: its statistics and schema files, and the bytes of each split's shards. */
async function pinned(store: FileArtifactStore, ref: DatasetRef): Promise<Record<string, string>> {
  const manifestUri = ref.preprocessingUri!.replace(/preprocessing\.json$/, 'manifest.json');
  const manifest = JSON.parse((await store.get(manifestUri)).toString('utf8'));
  const out: Record<string, string> = {
    statistics: digest(manifest.statistics),
    rows: digest({ ...manifest.rows, examples: manifest.rows.examples.length }),
    counts: digest(manifest.counts),
    preprocessing: digest((await store.get(ref.preprocessingUri!)).toString('utf8')),
    schema: digest((await store.get(ref.preprocessingUri!.replace(/preprocessing\.json$/, 'schema.json'))).toString()),
  };
  for (const split of ['train', 'validation', 'test'] as const) {
    const hash = createHash('sha256');
    for (const shard of manifest.splits[split].shards) {
      hash.update(await store.get(shard.imagesUri));
      hash.update(await store.get(shard.labelsUri));
    }
    out[split] = hash.digest('hex').slice(0, 16);
  }
  return out;
}

describe('tabular ingest results pinned on real data', () => {
  let dir: string;
  let store: FileArtifactStore;
  beforeAll(async () => {
    dir = await makeTempDir('tabular-pinned');
    store = new FileArtifactStore(path.join(dir, 'store'));
  });
  afterAll(() => removeTempDir(dir));

  const base = (file: string, extra: Partial<IngestOptionsInput>): IngestOptionsInput => ({
    source: 'csv',
    path: file,
    seed: 5,
    validationFraction: 0.1,
    shardSize: 1000,
    statisticsKey: `pipelines/${path.basename(file)}/last-statistics.json`,
    label: 'Species',
    ...extra,
  });

  it('penguins ×35: categories past the cap, booleans, quoted cells, NA, malformed rows skipped', async () => {
    const file = path.join(dir, 'penguins.csv');
    await writeFile(file, penguinsCsv());
    const ref = await ingestDataset(
      base(file, {
        onMalformed: 'skip',
        columns: { Sex: { missing: 'drop' }, 'Beak Depth (mm)': { type: 'numeric' } },
      }),
      store,
    );
    expect(ref.rows).toMatchObject({ read: 12_000, malformed: 2 });
    expect(ref.rows?.examples).toEqual([
      `${file}:6: characters after the closing quote of field 2`,
      `${file}:41: has 3 fields, the header has 9`,
    ]);
    expect(await pinned(store, ref)).toEqual({
      statistics: 'a03f83be06d54fec',
      rows: 'e4146eec06da1929',
      counts: '570d4963b50ff57c',
      preprocessing: '24dddc7e588b0d95',
      schema: '20c7dc4c932f1d21',
      train: 'de90f01c05fd3cf3',
      validation: 'ebbd488419839542',
      test: '0421631d7a498f45',
    });
  });

  it('cars: a regression with unlabelled rows dropped and an identifier-like name column', async () => {
    const file = path.join(dir, 'cars.csv');
    await writeFile(file, `${csvText(cars)}\n`);
    const ref = await ingestDataset(base(file, { label: 'Miles_per_Gallon' }), store);
    expect(ref.task).toBe('regression');
    expect(await pinned(store, ref)).toEqual({
      statistics: 'd2bdc01a61914f36',
      rows: '06d59734b7f0b18f',
      counts: 'f54d9537e4a604ac',
      preprocessing: 'ccd8891ea6625bea',
      schema: '3c944aee0785b6f6',
      train: '2b636c65dbd5c2ab',
      validation: '0c27fe4ab4cf52ce',
      test: '5048e90308be79ee',
    });
  });
});
