import { readFileSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  Dictionary,
  Int32,
  Float64,
  Int64,
  Table,
  tableFromArrays,
  tableFromIPC,
  tableToIPC,
  TimestampMillisecond,
  Utf8,
  vectorFromArray,
} from 'apache-arrow';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../data/errors';
import { readArrowRows } from '../../data/tabular/arrow';
import { readParquetRows } from '../../data/tabular/parquet';
import { MalformedRow, type SourceRow } from '../../data/tabular/rows';
import { makeTempDir, removeTempDir } from './helpers';

const VEGA = path.resolve('node_modules/vega-datasets/data');
const FLIGHTS_PARQUET = path.join(VEGA, 'flights-3m.parquet');
const FLIGHTS_ARROW = path.join(VEGA, 'flights-200k.arrow');

async function collect(rows: AsyncIterable<SourceRow | MalformedRow>): Promise<SourceRow[]> {
  const out: SourceRow[] = [];
  for await (const row of rows) {
    if (row instanceof MalformedRow) throw row;
    out.push(row);
  }
  return out;
}

async function failure(rows: AsyncIterable<SourceRow | MalformedRow>): Promise<unknown> {
  try {
    await collect(rows);
  } catch (error) {
    return error;
  }
  throw new Error('expected the read to fail');
}

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('columnar');
});
afterAll(() => removeTempDir(dir));

describe('readParquetRows', () => {
  it('reads the first rows of flights-3m.parquet as hyparquet reads them, as plain values', async () => {
    const rows = await collect(readParquetRows(FLIGHTS_PARQUET, { maxRows: 25 }));
    expect(rows).toHaveLength(25);
    const file = await asyncBufferFromFile(FLIGHTS_PARQUET);
    const expected = await parquetReadObjects({ file, rowStart: 0, rowEnd: 25, compressors });
    rows.forEach((row, i) => {
      const raw = expected[i]!;
      expect(row.where).toBe(`${FLIGHTS_PARQUET}#${i}`);
      expect(Object.keys(row.values)).toEqual(['date', 'delay', 'distance', 'origin', 'destination']);
      // INT64 columns arrive as BigInt and the TIMESTAMP as a Date; the reader gives numbers and ISO text.
      expect(row.values).toEqual({
        date: (raw.date as Date).toISOString(),
        delay: Number(raw.delay),
        distance: Number(raw.distance),
        origin: raw.origin,
        destination: raw.destination,
      });
      expect(typeof row.values.delay).toBe('number');
    });
  });

  it('crosses a row-group boundary and stops at maxRows inside the next group', async () => {
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(FLIGHTS_PARQUET));
    const firstGroup = Number(metadata.row_groups[0]!.num_rows);
    expect(metadata.row_groups.length).toBeGreaterThan(1);
    const wanted = firstGroup + 3;
    const rows = await collect(readParquetRows(FLIGHTS_PARQUET, { maxRows: wanted }));
    expect(rows).toHaveLength(wanted);
    const file = await asyncBufferFromFile(FLIGHTS_PARQUET);
    const expected = await parquetReadObjects({ file, rowStart: firstGroup - 1, rowEnd: wanted, compressors });
    const tail = rows.slice(firstGroup - 1);
    expect(tail.map((row) => row.where)).toEqual([0, 1, 2, 3].map((k) => `${FLIGHTS_PARQUET}#${firstGroup - 1 + k}`));
    expect(tail.map((row) => [row.values.origin, row.values.delay])).toEqual(
      expected.map((raw) => [raw.origin, Number(raw.delay)]),
    );
  });

  it('reads a folder of parts in name order, maxRows counting across them', async () => {
    const parts = path.join(dir, 'parts');
    await import('node:fs/promises').then((fs) => fs.mkdir(parts));
    await copyFile(FLIGHTS_PARQUET, path.join(parts, 'part-1.parquet'));
    await copyFile(FLIGHTS_PARQUET, path.join(parts, 'part-0.parquet'));
    await writeFile(path.join(parts, 'README.txt'), 'not data');
    const rows = await collect(readParquetRows(parts, { maxRows: 4 }));
    expect(rows.map((row) => row.where)).toEqual([0, 1, 2, 3].map((i) => `${path.join(parts, 'part-0.parquet')}#${i}`));
  });

  it('names a corrupt or truncated file in a DatasetError', async () => {
    const garbage = path.join(dir, 'garbage.parquet');
    await writeFile(garbage, Buffer.from('this is not a parquet file at all, only text'));
    const error = await failure(readParquetRows(garbage));
    expect(error).toBeInstanceOf(DatasetError);
    expect((error as DatasetError).file).toBe(garbage);
    expect((error as Error).message).toMatch(/not a readable Parquet file/);

    // The footer is intact but the data pages are overwritten: decoding the first row group fails.
    const bytes = await readFile(FLIGHTS_PARQUET);
    bytes.fill(0x5a, 4, 200_000);
    const damaged = path.join(dir, 'damaged.parquet');
    await writeFile(damaged, bytes);
    const damagedError = await failure(readParquetRows(damaged, { maxRows: 10 }));
    expect(damagedError).toBeInstanceOf(DatasetError);
    expect((damagedError as Error).message).toContain(damaged);

    const missing = await failure(readParquetRows(path.join(dir, 'nowhere.parquet')));
    expect((missing as Error).message).toMatch(/nowhere\.parquet: file not found/);
  });
});

describe('readArrowRows', () => {
  it('reads the first rows of flights-200k.arrow (IPC file format) as apache-arrow reads them', async () => {
    const rows = await collect(readArrowRows(FLIGHTS_ARROW, { maxRows: 25 }));
    expect(rows).toHaveLength(25);
    const table = tableFromIPC(readFileSync(FLIGHTS_ARROW));
    rows.forEach((row, i) => {
      expect(row.where).toBe(`${FLIGHTS_ARROW}#${i}`);
      expect(row.values).toEqual(table.get(i)!.toJSON());
    });
  });

  it('reads the stream format by batches: int64, timestamps, dictionaries, NaN, maxRows across batches', async () => {
    const batchOf = (offset: number) =>
      new Table({
        id: vectorFromArray(
          [0n, 1n, 2n].map((k) => BigInt(offset) + k),
          new Int64(),
        ),
        big: vectorFromArray([2n ** 60n, 5n, -7n], new Int64()),
        score: vectorFromArray([offset + 0.5, Number.NaN, offset + 2.5], new Float64()),
      });
    const first = batchOf(0);
    const second = batchOf(3);
    const extra = {
      when: vectorFromArray(
        [new Date('2024-03-01T12:00:00Z'), null, new Date('2024-03-02T00:00:00Z')],
        new TimestampMillisecond(),
      ),
      island: vectorFromArray(['Biscoe', 'Dream', 'Biscoe'], new Dictionary(new Utf8(), new Int32())),
    };
    const withExtra = (t: typeof first) =>
      new Table({ id: t.getChild('id')!, big: t.getChild('big')!, score: t.getChild('score')!, ...extra });
    const table = withExtra(first).concat(withExtra(second));
    expect(table.batches).toHaveLength(2);
    const file = path.join(dir, 'records.arrows');
    await writeFile(file, tableToIPC(table, 'stream'));

    const rows = await collect(readArrowRows(file, { maxRows: 5 }));
    expect(rows.map((row) => row.where)).toEqual([0, 1, 2, 3, 4].map((i) => `${file}#${i}`));
    expect(rows[0]!.values).toEqual({
      id: 0,
      big: '1152921504606846976',
      score: 0.5,
      when: '2024-03-01T12:00:00.000Z',
      island: 'Biscoe',
    });
    expect(rows[1]!.values).toEqual({ id: 1, big: 5, score: null, when: null, island: 'Dream' });
    expect(rows[4]!.values).toEqual({ id: 4, big: 5, score: null, when: null, island: 'Dream' });

    // The same table as an IPC file reads the same.
    const asFile = path.join(dir, 'records.arrow');
    await writeFile(asFile, tableToIPC(table, 'file'));
    const fromFile = await collect(readArrowRows(asFile));
    expect(fromFile).toHaveLength(6);
    expect(fromFile.slice(0, 5).map((row) => row.values)).toEqual(rows.map((row) => row.values));
  });

  it('names a corrupt file in a DatasetError', async () => {
    const garbage = path.join(dir, 'garbage.arrow');
    await writeFile(garbage, Buffer.from('ARROW1 but then nothing that makes sense'));
    const error = await failure(readArrowRows(garbage));
    expect(error).toBeInstanceOf(DatasetError);
    expect((error as DatasetError).file).toBe(garbage);

    const cut = path.join(dir, 'cut.arrows');
    const stream = tableToIPC(tableFromArrays({ x: Float64Array.from({ length: 1000 }, (_, i) => i) }), 'stream');
    await writeFile(cut, stream.subarray(0, stream.byteLength - 3000));
    const cutError = await failure(readArrowRows(cut));
    expect(cutError).toBeInstanceOf(DatasetError);
    expect((cutError as Error).message).toContain(cut);
  });
});
