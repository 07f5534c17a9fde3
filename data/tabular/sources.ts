import type { TabularDataSource } from '../sources';
import { readArrowRows } from './arrow';
import { readCsvRows } from './csv';
import { readJsonArrayRows, MAX_JSON_ARRAY_BYTES } from './json';
import { readJsonlRows } from './jsonl';
import { readParquetRows } from './parquet';

/** The built-in tabular sources: each a RowReader over a file (or a folder of files), through the tabular ingest. */
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
  {
    kind: 'tabular',
    name: 'parquet',
    description: 'An Apache Parquet file or a folder of them (hyparquet, row group by row group)',
    defaultLocation: 'data.parquet',
    contentDigest: 'files',
    rows: readParquetRows,
  },
  {
    kind: 'tabular',
    name: 'arrow',
    description: 'An Apache Arrow IPC file or stream, or a folder of them (apache-arrow, batch by batch)',
    defaultLocation: 'data.arrow',
    contentDigest: 'files',
    rows: readArrowRows,
  },
];
