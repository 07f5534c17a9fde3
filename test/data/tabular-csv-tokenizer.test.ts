import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MalformedRow, readCsvRows, type SourceRow } from '../../data/index';
import { parseNumber } from '../../data/preprocessing';
import { isMissingToken } from '../../data/tabular/csv';
import { type CsvBatch, CsvTokenizer } from '../../data/tabular/csv-tokenizer';
import { makeTempDir, removeTempDir } from './helpers';

const VEGA = path.join(import.meta.dirname, '..', '..', 'node_modules', 'vega-datasets', 'data');

/** Tokenises `text` fed in chunks of `size` characters (every boundary position is exercised by small sizes). */
function tokenize(text: string, size: number, maxRecord = 1 << 20): [number, string[] | string][] {
  const tokenizer = new CsvTokenizer(maxRecord);
  const out: CsvBatch = { lines: [], items: [] };
  for (let i = 0; i < text.length; i += size) tokenizer.push(text.slice(i, i + size), out);
  tokenizer.end(out);
  return out.items.map((item, i) => [out.lines[i]!, item]);
}

/** The same result whatever the chunking; returns it. */
function tokenizeAnyChunks(text: string, maxRecord?: number): [number, string[] | string][] {
  const whole = tokenize(text, Math.max(1, text.length), maxRecord);
  for (const size of [1, 2, 3, 5, 8, 13]) expect(tokenize(text, size, maxRecord), `chunks of ${size}`).toEqual(whole);
  return whole;
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function toCsv(records: Record<string, unknown>[], eol = '\n'): string {
  const columns = Object.keys(records[0]!);
  const lines = [columns.map(csvCell).join(',')];
  for (const record of records) lines.push(columns.map((c) => csvCell(record[c])).join(','));
  return `${lines.join(eol)}${eol}`;
}

describe('CSV tokenizer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir('csv-tokenizer');
  });
  afterAll(() => removeTempDir(dir));

  it('reads RFC 4180 records with their first line, whatever the chunk boundaries', () => {
    expect(tokenizeAnyChunks('a,b\n1,2\n')).toEqual([
      [1, ['a', 'b']],
      [2, ['1', '2']],
    ]);
    // Quoted commas, doubled quotes, a quoted newline (the next record is one line further), an empty quoted cell.
    expect(tokenizeAnyChunks('x,"a,b","say ""hi""\nthere",""\nnext,1,2,3')).toEqual([
      [1, ['x', 'a,b', 'say "hi"\nthere', '']],
      [3, ['next', '1', '2', '3']],
    ]);
    // CRLF, a lone CR, blank lines (one empty cell each: the reader skips them), a BOM, no final newline.
    expect(tokenizeAnyChunks('\ufeffa,b\r\n\r\n1,2\r3,4\n\n5,"6\r\n7"\r\n8,')).toEqual([
      [1, ['a', 'b']],
      [2, ['']],
      [3, ['1', '2']],
      [4, ['3', '4']],
      [5, ['']],
      [6, ['5', '6\r\n7']],
      [8, ['8', '']],
    ]);
    expect(tokenizeAnyChunks('')).toEqual([]);
    expect(tokenizeAnyChunks('é,"ü\n,"\n')).toEqual([[1, ['é', 'ü\n,']]]);
  });

  it('reports stray and unclosed quotes at their line and goes on at the next line', () => {
    expect(tokenizeAnyChunks('a,b\n1,x"y\n2,"z"w\n3,4\n')).toEqual([
      [1, ['a', 'b']],
      [2, 'a quote inside unquoted field 2'],
      [3, 'characters after the closing quote of field 2'],
      [4, ['3', '4']],
    ]);
    expect(tokenizeAnyChunks('a,b\n1,2\n3,"open\n4,5\n6,7')).toEqual([
      [1, ['a', 'b']],
      [2, ['1', '2']],
      [3, 'a quote opened in field 2 is never closed'],
    ]);
  });

  it('bounds a record: an overlong one is malformed at its line, reading resumes after it', () => {
    const long = 'y'.repeat(40);
    expect(tokenize(`a,b\n1,${long}\n2,3\n`, 7, 30)).toEqual([
      [1, ['a', 'b']],
      [2, 'record longer than 30 characters'],
      [3, ['2', '3']],
    ]);
    // Within one chunk too (the whole text at once).
    expect(tokenize(`a,b\n1,${long}\n2,3\n`, 1000, 30)).toEqual([
      [1, ['a', 'b']],
      [2, 'record longer than 30 characters'],
      [3, ['2', '3']],
    ]);
  });

  it('spells missing tokens as csv-parse-era ingest did (trimmed, pandas defaults)', () => {
    for (const cell of ['', ' ', 'NA', ' NA ', 'N/A', 'NaN', 'nan', 'null', 'NULL', 'None', '\tNone']) {
      expect(isMissingToken(cell), JSON.stringify(cell)).toBe(true);
    }
    for (const cell of ['0', 'na', 'Nan', 'none', 'NAN ', 'Adelie', '39.1', 'NULLS']) {
      expect(isMissingToken(cell), JSON.stringify(cell)).toBe(false);
    }
  });

  it("parseNumber's plain-decimal path gives exactly Number()'s double", () => {
    const cells = ['-0', '0', '5.', '.5', '007', '39.1', '-12.345', '123456789012345', '0.000000000000001'];
    cells.push('1234567890123456', '9007199254740993', '1e5', ' 3 ', '+4', '0x10', '.', '-', '1.2.3', '', ' ', 'NaN');
    let seed = 11;
    for (let i = 0; i < 20_000; i++) {
      seed = (seed * 16807) % 2147483647;
      cells.push(((seed / 2147483647 - 0.5) * 10 ** (i % 12)).toFixed(i % 9));
    }
    for (const text of cells) {
      const n = text.trim() === '' ? Number.NaN : Number(text);
      expect(Object.is(parseNumber(text), Number.isFinite(n) ? n : undefined), text).toBe(true);
    }
  });

  it('agrees with csv-parse on penguins, cars and a generated file of tricky cells', async () => {
    const penguins = JSON.parse(await readFile(path.join(VEGA, 'penguins.json'), 'utf8')) as Record<string, unknown>[];
    const cars = JSON.parse(await readFile(path.join(VEGA, 'cars.json'), 'utf8')) as Record<string, unknown>[];
    const pieces = ['a', ',', '"', '""', '\n', '\r\n', ' ', 'é', '😀', '1.5', 'NA', ''];
    let seed = 7;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const tricky = Array.from({ length: 2000 }, () => {
      const record: Record<string, string> = {};
      for (const column of ['p', 'q', 'r']) {
        record[column] = Array.from({ length: Math.floor(random() * 6) }, () => pieces[Math.floor(random() * 12)]).join(
          '',
        );
      }
      return record;
    });
    for (const [name, text] of [
      ['penguins', toCsv(penguins)],
      ['cars', toCsv(cars, '\r\n')],
      ['tricky', toCsv(tricky)],
    ] as const) {
      const expected = parse(text, { bom: true, relax_column_count: true }) as string[][];
      const ours = tokenizeAnyChunks(text);
      expect(
        ours.map(([, cells]) => cells),
        name,
      ).toEqual(expected);
      // Lines: each record starts one line after the previous one's last line.
      let line = 1;
      for (const [at, cells] of ours) {
        expect(at, name).toBe(line);
        line += 1 + (cells as string[]).join('').split('\n').length - 1;
      }
    }
  });

  it('readCsvRows over a file: the same rows and file:line, in batches and row by row', async () => {
    const file = path.join(dir, 'mixed.csv');
    const text = 'name,note\r\n"ada","two\r\nlines"\r\n\r\nbob,NA\r\ncy\r\ndi,"x"y\r\ned,ok\r\n';
    await writeFile(file, text);
    const rows: (SourceRow | MalformedRow)[] = [];
    for await (const row of readCsvRows(file)) rows.push(row);
    const seen = rows.map((row) =>
      row instanceof MalformedRow ? `${row.where}: ${row.reason}` : `${row.where} ${JSON.stringify(row.values)}`,
    );
    expect(seen).toEqual([
      `${file}:2 {"name":"ada","note":"two\\r\\nlines"}`,
      `${file}:5 {"name":"bob","note":null}`,
      `${file}:6: has 1 fields, the header has 2`,
      `${file}:7: characters after the closing quote of field 2`,
      `${file}:8 {"name":"ed","note":"ok"}`,
    ]);
    const batched: (SourceRow | MalformedRow)[] = [];
    for await (const batch of readCsvRows.batches(file)) {
      expect(batch.columns).toEqual(['name', 'note']);
      batched.push(...batch.rows);
    }
    expect(batched).toEqual(rows);
  });
});
