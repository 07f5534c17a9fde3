import type { TabularDataSource } from '../sources';
import { readCsvRows } from './csv';
import { readJsonArrayRows, MAX_JSON_ARRAY_BYTES } from './json';
import { readJsonlRows } from './jsonl';

/**
 * The built-in tabular sources: each a RowReader over a file, run through the tabular ingest (data/tabular/). The
 * Parquet and Arrow readers (data/tabular/parquet.ts, arrow.ts) join this list as `parquet` and `arrow` with
 * `contentDigest: 'files'` once they are on main: TABULAR_FILE_SOURCES is the one place to add them.
 */
export const TABULAR_FILE_SOURCES: TabularDataSource[] = [
  {
    kind: 'tabular',
    name: 'csv',
    description: 'A CSV file with a header row (streamed: any size in constant memory)',
    defaultLocation: 'data.csv',
    contentDigest: 'files',
    rows: readCsvRows,
  },
  {
    kind: 'tabular',
    name: 'jsonl',
    description: 'A JSON Lines file, one object per line (streamed: any size in constant memory)',
    defaultLocation: 'data.jsonl',
    contentDigest: 'files',
    rows: readJsonlRows,
  },
  {
    kind: 'tabular',
    name: 'json',
    description: `A JSON array of objects (read whole: at most ${MAX_JSON_ARRAY_BYTES / 2 ** 20} MB)`,
    defaultLocation: 'data.json',
    contentDigest: 'files',
    rows: readJsonArrayRows,
  },
];
