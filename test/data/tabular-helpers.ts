import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const VEGA_DATA = path.join(ROOT, 'node_modules/vega-datasets/data');
export const PENGUINS_JSON = path.join(VEGA_DATA, 'penguins.json');
export const CARS_JSON = path.join(VEGA_DATA, 'cars.json');

export type Row = Record<string, unknown>;

export function readJsonRows(file: string): Row[] {
  return JSON.parse(readFileSync(file, 'utf8')) as Row[];
}

/** A CSV cell as a spreadsheet export writes it: quoted when it must be, null as an empty cell. */
function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function csvText(rows: Row[], columns = Object.keys(rows[0] ?? {})): string {
  return [columns.map(cell).join(','), ...rows.map((row) => columns.map((c) => cell(row[c])).join(','))].join('\n');
}

export async function writeCsv(file: string, rows: Row[], columns?: string[]): Promise<string> {
  await writeFile(file, `${csvText(rows, columns)}\n`);
  return file;
}

export async function writeJsonl(file: string, rows: Row[]): Promise<string> {
  await writeFile(file, `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
  return file;
}
