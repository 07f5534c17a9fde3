import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../artifacts/store';
import { DatasetError, ingestDataset, type IngestOptionsInput } from '../../data/index';
import { makeTempDir, removeTempDir } from './helpers';
import { PENGUINS_JSON, readJsonRows, writeCsv, type Row } from './tabular-helpers';

const penguins = readJsonRows(PENGUINS_JSON);
const COLUMNS = Object.keys(penguins[0]!);

describe('tabular schema between runs: anomalies and per-feature drift', () => {
  let dir: string;
  let n = 0;

  beforeAll(async () => {
    dir = await makeTempDir('tabular-anomalies');
  });
  afterAll(() => removeTempDir(dir));

  /** A fresh store whose pipeline has run once on the penguins; `second` is the next run's data. */
  async function twoRuns(second: Row[], extra: Partial<IngestOptionsInput> = {}, columns = COLUMNS) {
    n += 1;
    const store = new FileArtifactStore(path.join(dir, `store-${n}`));
    const options = (file: string): IngestOptionsInput => ({
      source: 'csv',
      path: file,
      seed: 5,
      validationFraction: 0.1,
      label: 'Species',
      statisticsKey: 'pipelines/penguins/last-statistics.json',
      schemaKey: 'pipelines/penguins/schema.json',
      ...extra,
    });
    const messages: string[] = [];
    const first = await ingestDataset(options(await writeCsv(path.join(dir, `first-${n}.csv`), penguins)), store);
    const file = await writeCsv(path.join(dir, `second-${n}.csv`), second, columns);
    return { store, first, messages, run: () => ingestDataset(options(file), store, (m) => messages.push(m)) };
  }

  it("a column missing on the second run fails it with the column named ('fail', the default)", async () => {
    const { run, messages } = await twoRuns(
      penguins,
      {},
      COLUMNS.filter((c) => c !== 'Sex'),
    );
    await expect(run()).rejects.toThrow(DatasetError);
    await expect(run()).rejects.toThrow(
      /1 anomaly against the schema stored at pipelines\/penguins\/schema\.json .*missing-column "Sex"/,
    );
    expect(messages).toContain('anomaly: missing-column "Sex": is in the schema but not in the data');
  });

  it("'warn' lists the anomaly in the dataset reference and the run goes on without the column", async () => {
    const { run } = await twoRuns(
      penguins,
      { onAnomaly: 'warn' },
      COLUMNS.filter((c) => c !== 'Sex'),
    );
    const ref = await run();
    expect(ref.anomalies).toEqual([
      { kind: 'missing-column', column: 'Sex', message: 'is in the schema but not in the data' },
    ]);
    expect(ref.featureShape).toEqual([8]); // Island 3 + OOV, four numerics
  });

  it('new categories, out-of-range numbers, type changes and new missing values are each reported', async () => {
    const second: Row[] = penguins.map((row, i) => ({
      ...row,
      Island: i === 7 ? 'Atlantis' : row.Island,
      'Body Mass (g)': i === 8 ? 9000 : row['Body Mass (g)'],
      'Beak Depth (mm)': i === 9 ? 'deep' : row['Beak Depth (mm)'],
      Sex: row.Sex,
      Extra: i % 2,
    }));
    second[0] = { ...second[0]!, Island: null };
    const { run } = await twoRuns(second, { onAnomaly: 'warn' }, [...COLUMNS, 'Extra']);
    const ref = await run();
    expect(ref.anomalies.map((a) => `${a.kind} ${a.column}: ${a.message}`).sort()).toEqual([
      'missing-values Island: has missing values; the schema had none',
      'new-category Island: new values "Atlantis"',
      'new-column Extra: is not in the schema (numeric)',
      "out-of-range Body Mass (g): values span [2700, 9000], outside the schema's [2700, 6300]",
      'type-change Beak Depth (mm): was numeric in the schema, is categorical now',
    ]);
  });

  it('reports drift per feature: a shifted numeric column and a changed categorical distribution', async () => {
    const second = penguins.map((row) => ({
      ...row,
      'Body Mass (g)': typeof row['Body Mass (g)'] === 'number' ? (row['Body Mass (g)'] as number) + 600 : null,
      Island: 'Biscoe',
    }));
    const { run, first } = await twoRuns(second, { onAnomaly: 'warn' });
    const ref = await run();
    expect(ref.drift.previousFingerprint).toBe(first.fingerprint);
    expect(ref.drift.drifted).toBe(true);
    const byName = Object.fromEntries(ref.drift.features.map((f) => [f.name, f]));
    expect(byName['Body Mass (g)']).toMatchObject({ metric: 'meanShift', drifted: true });
    expect(byName['Body Mass (g)']!.value).toBeGreaterThan(0.6); // 600 g over a std of about 800 g
    expect(byName.Island).toMatchObject({ metric: 'jsDivergence', drifted: true });
    expect(byName['Flipper Length (mm)']).toMatchObject({ metric: 'meanShift', value: 0, drifted: false });
    expect(ref.drift.reasons.some((r) => r.startsWith('feature "Body Mass (g)": meanShift'))).toBe(true);
    const island = ref.statistics.train.features?.find((f) => f.name === 'Island');
    expect(island).toMatchObject({
      kind: 'categorical',
      distinct: 1,
      top: [{ value: 'Biscoe', count: ref.counts.train }],
    });
  });
});
