/**
 * Tabular ingest throughput against pandas, on the same generated CSV in the same run: Gantry's whole ingest
 * (schema inference, statistics, split, encoding, float32 shards; two streaming passes) and pandas' `read_csv` +
 * `describe(include='all')` (parsing and statistics only, the whole file in memory). Each measurement runs in a
 * child process of its own, so its peak RSS is its own; two file sizes show whether memory stays flat.
 *
 *   npx tsx bench/tabular-ingest.ts [--rows 1000000,2000000] [--dir /tmp/gantry-tabular-bench]
 *
 * pandas comes from .tools/bench-venv (python3 -m venv .tools/bench-venv && .tools/bench-venv/bin/pip install
 * pandas, if it is not there yet).
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FileArtifactStore } from '../artifacts/store';
import { ingestDataset } from '../data/ingest';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const PYTHON = path.join(ROOT, '.tools/bench-venv/bin/python3');

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000,2000000' },
    dir: { type: 'string', default: path.join(os.tmpdir(), 'gantry-tabular-bench') },
    child: { type: 'string' },
  },
});

interface Measurement {
  seconds: number;
  maxRssMb: number;
}

type Penguin = Record<string, string | number | null>;

/** Penguins repeated with noise on the measurements (and their missing values kept), streamed to disk. */
async function writeCsv(file: string, rows: number): Promise<void> {
  const penguins = JSON.parse(
    readFileSync(path.join(ROOT, 'node_modules/vega-datasets/data/penguins.json'), 'utf8'),
  ) as Penguin[];
  const columns = Object.keys(penguins[0]!);
  const out = createWriteStream(file);
  out.write(`${columns.map((c) => `"${c}"`).join(',')}\n`);
  let state = 1;
  const noise = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
  for (let i = 0; i < rows; i++) {
    const row = penguins[i % penguins.length]!;
    const cells = columns.map((c) => {
      const v = row[c];
      if (v === null || v === undefined) return '';
      return typeof v === 'number' ? (v * (1 + 0.05 * noise())).toFixed(2) : v;
    });
    if (!out.write(`${cells.join(',')}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

async function gantryChild(file: string): Promise<void> {
  const storeDir = `${file}.store`;
  await rm(storeDir, { recursive: true, force: true });
  const started = process.hrtime.bigint();
  const ref = await ingestDataset(
    {
      source: 'csv',
      path: file,
      seed: 1,
      validationFraction: 0.1,
      label: 'Species',
      statisticsKey: 'pipelines/bench/last-statistics.json',
      schemaKey: 'pipelines/bench/schema.json',
    },
    new FileArtifactStore(storeDir),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await rm(storeDir, { recursive: true, force: true });
  const read = ref.rows?.read ?? 0;
  process.stdout.write(JSON.stringify({ seconds, maxRssMb: process.resourceUsage().maxRSS / 1024, read }));
}

const PANDAS = `
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1])
df.describe(include='all')
print(json.dumps({"seconds": time.perf_counter() - t, "maxRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;

function runGantry(file: string): Measurement {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', path.join(HERE, 'tabular-ingest.ts'), '--child', file],
    {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    },
  );
  return JSON.parse(out) as Measurement;
}

function runPandas(file: string): Measurement | null {
  if (!existsSync(PYTHON)) return null;
  return JSON.parse(execFileSync(PYTHON, ['-c', PANDAS, file], { encoding: 'utf8' })) as Measurement;
}

async function main(): Promise<void> {
  if (values.child) return gantryChild(values.child);
  const sizes = values.rows.split(',').map(Number);
  await mkdir(values.dir, { recursive: true });
  const table: string[][] = [['rows', 'MB', 'tool', 'seconds', 'rows/s', 'MB/s', 'peak RSS MB']];
  for (const rows of sizes) {
    const file = path.join(values.dir, `penguins-${rows}.csv`);
    if (!existsSync(file)) await writeCsv(file, rows);
    const mb = (await stat(file)).size / 2 ** 20;
    const results: [string, Measurement | null][] = [
      ['gantry ingest', runGantry(file)],
      ['pandas read_csv+describe', runPandas(file)],
    ];
    for (const [tool, m] of results) {
      if (!m) {
        table.push([String(rows), mb.toFixed(1), tool, 'n/a (no .tools/bench-venv)', '', '', '']);
        continue;
      }
      table.push([
        String(rows),
        mb.toFixed(1),
        tool,
        m.seconds.toFixed(2),
        Math.round(rows / m.seconds).toLocaleString('en-US'),
        (mb / m.seconds).toFixed(1),
        m.maxRssMb.toFixed(0),
      ]);
    }
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  for (const row of table) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
}

await main();
