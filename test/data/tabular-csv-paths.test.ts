import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../artifacts/store';
import { ingestDataset, readCsvRows, type DatasetRef, type IngestOptionsInput } from '../../data/index';
import { parseIngestOptions } from '../../data/ingest';
import type { TabularDataSource } from '../../data/sources';
import { ingestTabularDataset } from '../../data/tabular/ingest';
import { makeTempDir, removeTempDir } from './helpers';

/**
 * The built-in CSV source reads cells in place (CsvTable, CellValues, CellEncoder); every other source goes through
 * SourceRow objects. The same CSV through both must give the same dataset: here the row path is a project source
 * that streams readCsvRows' rows, and the file holds the awkward spellings the in-place path reads differently.
 */
const NUMBERS = ['1e3', ' 42 ', '-0.5', '+3', '.5', '5.', '1234567890123456789', '0x10', '-0', '7', '12.25', '3'];
const MISSING = ['', 'NA', ' NA ', 'nan', 'None', '""', 'N/A'];
const FLAGS = ['yes', 'No', 'TRUE', 'f', ' y', 'n ', 'False'];
const CATEGORIES = ['plain', '"with, comma"', '"say ""hi"""', '"two\nlines"', 'café', 'Ünï', 'NaNa', 'Nope', 'nul'];

function awkwardCsv(rows: number): string {
  const lines = ['y,num,flag,cat,mixed,target'];
  for (let i = 0; i < rows; i++) {
    const num = i % 11 === 0 ? MISSING[i % MISSING.length]! : NUMBERS[(i * 7) % NUMBERS.length]!;
    const flag = i % 13 === 0 ? '' : FLAGS[i % FLAGS.length]!;
    const cat = i % 17 === 0 ? MISSING[(i >> 1) % MISSING.length]! : CATEGORIES[(i * 5) % CATEGORIES.length]!;
    const mixed = i < 400 ? String(i % 23) : 'word';
    const target = i % 29 === 0 ? 'n/a?' : (i % 7) * 1.5 - 2;
    lines.push(`${['a', 'b', 'c'][i % 3]},${num},${flag},${cat},${mixed},${target}`);
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * readCsvRows row by row, without its `batches` or `tables`: ingest reads its SourceRows, and hashes the file with
 * digestLocation rather than as the rows are read. Named `csv`, so that the fingerprints must agree too.
 */
const csvAsRows: TabularDataSource = {
  kind: 'tabular',
  name: 'csv',
  description: 'readCsvRows through the SourceRow path',
  defaultLocation: 'data.csv',
  contentDigest: 'files',
  rows: (location, options) => readCsvRows(location, options),
};

const digest = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

/** Everything an ingest produced but the names and fingerprints that depend on the source. */
async function contents(store: FileArtifactStore, ref: DatasetRef) {
  const manifestUri = ref.preprocessingUri!.replace(/preprocessing\.json$/, 'manifest.json');
  const manifest = JSON.parse((await store.get(manifestUri)).toString('utf8'));
  const shards: Record<string, string[]> = {};
  for (const split of ['train', 'validation', 'test'] as const) {
    shards[split] = [];
    for (const shard of manifest.splits[split].shards) {
      shards[split].push(digest(await store.get(shard.imagesUri)), digest(await store.get(shard.labelsUri)));
    }
  }
  return {
    statistics: manifest.statistics,
    counts: manifest.counts,
    rows: manifest.rows,
    preprocessing: JSON.parse((await store.get(ref.preprocessingUri!)).toString('utf8')),
    schema: JSON.parse(
      (await store.get(ref.preprocessingUri!.replace(/preprocessing\.json$/, 'schema.json'))).toString(),
    ),
    shards,
  };
}

describe('CSV read in place and as SourceRows give the same dataset', () => {
  let dir: string;
  let file: string;
  let store: FileArtifactStore;
  let rowsStore: FileArtifactStore;
  beforeAll(async () => {
    dir = await makeTempDir('tabular-csv-paths');
    store = new FileArtifactStore(path.join(dir, 'store'));
    rowsStore = new FileArtifactStore(path.join(dir, 'rows-store'));
    file = path.join(dir, 'awkward.csv');
    await writeFile(file, awkwardCsv(900));
  });
  afterAll(() => removeTempDir(dir));

  const both = async (extra: Partial<IngestOptionsInput>) => {
    const options = (source: string): IngestOptionsInput => ({
      source,
      path: file,
      seed: 9,
      validationFraction: 0.2,
      shardSize: 100,
      statisticsKey: `pipelines/${JSON.stringify(extra).length}/last-statistics.json`,
      label: 'y',
      ...extra,
    });
    const inPlace = await ingestDataset(options('csv'), store);
    // A store of its own: on the same store the second ingest would find the first's dataset and reuse it.
    const asRows = await ingestTabularDataset(parseIngestOptions(options('csv')), rowsStore, csvAsRows, () => {});
    expect(inPlace.fingerprint).toBe(asRows.fingerprint);
    return [await contents(store, inPlace), await contents(rowsStore, asRows)] as const;
  };

  it('classification: exotic numbers, padded and quoted missing tokens, boolean words, escaped quotes', async () => {
    const [inPlace, asRows] = await both({});
    expect(inPlace.schema.columns.map((c: { type: string }) => c.type)).toEqual([
      'numeric',
      'boolean',
      'categorical',
      'categorical',
      'categorical',
    ]);
    expect(inPlace).toEqual(asRows);
  });

  it('declared types, drop and impute policies, a limit on train rows', async () => {
    const [inPlace, asRows] = await both({
      columns: { flag: { type: 'boolean', missing: 'drop' }, mixed: { type: 'categorical' }, num: { missing: 'drop' } },
      limits: { train: 300 },
    });
    expect(inPlace.rows.dropped).toBeGreaterThan(0);
    expect(inPlace).toEqual(asRows);
  });

  it('a regression label with unreadable values skipped as malformed', async () => {
    const [inPlace, asRows] = await both({ label: 'target', task: 'regression', onMalformed: 'skip' });
    expect(inPlace.rows.malformed).toBe(Math.ceil(900 / 29));
    expect(inPlace).toEqual(asRows);
  });
});
