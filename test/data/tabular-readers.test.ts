import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DatasetError,
  MalformedRow,
  readCsvRows,
  readJsonArrayRows,
  readJsonlRows,
  rowReaderOf,
  type RowReader,
  type SourceRow,
} from '../../data/index';
import { MAX_JSONL_LINE_BYTES } from '../../data/tabular/jsonl';
import { makeTempDir, removeTempDir } from './helpers';

async function collect(reader: RowReader, file: string, maxRows?: number): Promise<(SourceRow | MalformedRow)[]> {
  const rows: (SourceRow | MalformedRow)[] = [];
  for await (const row of reader(file, maxRows === undefined ? {} : { maxRows })) rows.push(row);
  return rows;
}

const describeRow = (row: SourceRow | MalformedRow) =>
  row instanceof MalformedRow ? `malformed ${row.where}: ${row.reason}` : `${row.where} ${JSON.stringify(row.values)}`;

describe('tabular readers', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('tabular-readers');
  });
  afterAll(() => removeTempDir(dir));

  it('csv: header, quoted cells across lines, missing tokens, short and long rows by file:line', async () => {
    const file = path.join(dir, 'quoted.csv');
    await writeFile(
      file,
      'name,note,n\nada,"says ""hi"", twice",1\n\nbob,"two\nlines",NA\ncy,short\ndi,x,3,extra\ned,,\n',
    );
    const rows = (await collect(readCsvRows, file)).map(describeRow);
    expect(rows).toEqual([
      `${file}:2 {"name":"ada","note":"says \\"hi\\", twice","n":"1"}`,
      `${file}:4 {"name":"bob","note":"two\\nlines","n":null}`,
      `malformed ${file}:6: has 2 fields, the header has 3`,
      `malformed ${file}:7: has 4 fields, the header has 3`,
      `${file}:8 {"name":"ed","note":null,"n":null}`,
    ]);
    expect(await collect(readCsvRows, file, 2)).toHaveLength(2);
  });

  it('csv: an unclosed quote is malformed; a missing file and a repeated header name are DatasetErrors', async () => {
    const file = path.join(dir, 'unclosed.csv');
    await writeFile(file, 'a,b\n1,2\n3,"oops\n4,5\n');
    const rows = await collect(readCsvRows, file);
    expect(rows[0]).toMatchObject({ values: { a: '1', b: '2' } });
    expect(rows[1]).toBeInstanceOf(MalformedRow);
    expect((rows[1] as MalformedRow).reason).toMatch(/quote/i);
    const stray = path.join(dir, 'stray.csv');
    await writeFile(stray, 'a,b\r\n1,2\r\n3,x"y"z\r\n\r\n5,6\r\n');
    expect((await collect(readCsvRows, stray)).map(describeRow)).toEqual([
      `${stray}:2 {"a":"1","b":"2"}`,
      `malformed ${stray}:3: a quote inside unquoted field 2`,
      `${stray}:5 {"a":"5","b":"6"}`,
    ]);
    await expect(collect(readCsvRows, path.join(dir, 'absent.csv'))).rejects.toThrow(/absent\.csv: file not found/);
    const twice = path.join(dir, 'twice.csv');
    await writeFile(twice, 'a,a\n1,2\n');
    await expect(collect(readCsvRows, twice)).rejects.toThrow(DatasetError);
    await expect(collect(readCsvRows, twice)).rejects.toThrow(/twice\.csv:1: header names column "a" twice/);
  });

  it('jsonl: objects by line; bad JSON, non-objects and overlong lines are malformed, reading goes on', async () => {
    const file = path.join(dir, 'rows.jsonl');
    const long = JSON.stringify({ a: 'x'.repeat(MAX_JSONL_LINE_BYTES) });
    await writeFile(file, `{"a":1}\n\n{"a":\n[1,2]\n${long}\n{"a":null,"b":"z"}`);
    const rows = (await collect(readJsonlRows, file)).map(describeRow);
    expect(rows[0]).toBe(`${file}:1 {"a":1}`);
    expect(rows[1]).toMatch(new RegExp(`^malformed ${file}:3: not JSON`));
    expect(rows[2]).toBe(`malformed ${file}:4: is not a JSON object`);
    expect(rows[3]).toBe(`malformed ${file}:5: line is longer than ${MAX_JSONL_LINE_BYTES} bytes`);
    expect(rows[4]).toBe(`${file}:6 {"a":null,"b":"z"}`);
    expect(rows).toHaveLength(5);
  });

  it('json: an array of objects by element; a non-array is a DatasetError', async () => {
    const file = path.join(dir, 'rows.json');
    await writeFile(file, '[{"a":1},"nope",{"a":2}]');
    expect((await collect(readJsonArrayRows, file)).map(describeRow)).toEqual([
      `${file}#1 {"a":1}`,
      `malformed ${file}#2: is not a JSON object`,
      `${file}#3 {"a":2}`,
    ]);
    const object = path.join(dir, 'object.json');
    await writeFile(object, '{"a":1}');
    await expect(collect(readJsonArrayRows, object)).rejects.toThrow(/object\.json: is not a JSON array of objects/);
    const broken = path.join(dir, 'broken.json');
    await writeFile(broken, '[{"a":1},');
    await expect(collect(readJsonArrayRows, broken)).rejects.toThrow(/broken\.json: not JSON/);
  });

  it("a user's stream becomes rows named after the source", async () => {
    const reader = rowReaderOf({
      name: 'mine',
      async *stream(location: string) {
        yield { at: location, n: 1 };
        yield 'not a record' as unknown as Record<string, unknown>;
        yield { at: location, n: 3 };
      },
    });
    expect((await collect(reader, 'db://table')).map(describeRow)).toEqual([
      'mine#1 {"at":"db://table","n":1}',
      'malformed mine#2: is not a record (an object of column values)',
      'mine#3 {"at":"db://table","n":3}',
    ]);
  });
});

describe('splitOfRow', () => {
  it('assigns rows by a seeded hash of the index: the requested shares, reproducible, different per seed', async () => {
    const { splitOfRow } = await import('../../data/tabular/assign');
    const count = (seed: number) => {
      const counts = { train: 0, validation: 0, test: 0 };
      for (let i = 0; i < 100_000; i++) counts[splitOfRow(i, seed, 0.2, 0.1)] += 1;
      return counts;
    };
    const counts = count(7);
    expect(counts.test / 100_000).toBeCloseTo(0.2, 2);
    expect(counts.validation / 100_000).toBeCloseTo(0.08, 2);
    expect(count(7)).toEqual(counts);
    const a = Array.from({ length: 1000 }, (_, i) => splitOfRow(i, 1, 0.2, 0.1));
    const b = Array.from({ length: 1000 }, (_, i) => splitOfRow(i, 2, 0.2, 0.1));
    expect(a.filter((split, i) => split !== b[i]).length).toBeGreaterThan(200);
  });
});
