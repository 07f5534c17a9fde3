/**
 * Tabular ingest throughput: Gantry's `ingestDataset` of a CSV (schema inference, per-feature statistics, seeded
 * train/validation/test split, float32 shards, drift record) against pandas `read_csv` + `describe(include='all')`
 * on the same file, in the same run: rows/s, MB/s (10^6 bytes of CSV) and peak RSS, at two sizes, so that the
 * memory column shows whether peak memory grows with the file (Gantry streams; pandas holds the frame).
 *
 *   npx tsx bench/tabular-ingest.ts [--rows 1000000] [--small 250000] [--keep]
 *
 * The CSV is Palmer Penguins (vega-datasets' data/penguins.json) repeated, with seeded Gaussian noise on the
 * numbers and the data's own missing values, written to a temp dir (removed after unless --keep). Each side runs
 * in a fresh process per file (bench/tabular-ingest-child.ts; bench/pandas/ingest.py in .tools/bench-venv,
 * installed on first use by bench/pandas/setup.sh), so a peak RSS is that run's own. The file was just written, so
 * both sides read it from the page cache. CPU seconds are printed beside wall seconds: on a shared machine they are
 * the steadier comparison. BENCH_VERBOSE=1 prints Gantry's progress.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    small: { type: 'string', default: '250000' },
    keep: { type: 'boolean', default: false },
  },
});
const sizes = [...new Set([Number(values.small), Number(values.rows)].filter((n) => n > 0))].sort((a, b) => a - b);
if (sizes.some((n) => !Number.isInteger(n) || n > 50_000_000)) {
  throw new Error('--rows and --small are row counts (at most 50,000,000)');
}

const HERE = import.meta.dirname;
const ROOT = path.join(HERE, '..');
const CHILD = path.join(HERE, 'tabular-ingest-child.ts');
const LABEL = 'Species';
const PENGUINS = path.join(ROOT, 'node_modules', 'vega-datasets', 'data', 'penguins.json');

type Penguin = Record<string, string | number | null>;

/** mulberry32: a small seeded PRNG, so the same --rows always writes the same file. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function csvCell(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * `rows` rows of penguins, cycling through the 344 records; each number gets Gaussian noise of 5% of its column's
 * standard deviation, rounded to the column's own decimals, so values are not repeated verbatim.
 */
async function writePenguinsCsv(file: string, rows: number, seed: number): Promise<number> {
  const records = JSON.parse(await readFile(PENGUINS, 'utf8')) as Penguin[];
  const columns = Object.keys(records[0]!);
  const numeric = columns.filter((c) => records.every((r) => r[c] === null || typeof r[c] === 'number'));
  const scale: Record<string, { sd: number; decimals: number }> = {};
  for (const c of numeric) {
    const xs = records.map((r) => r[c]).filter((v): v is number => typeof v === 'number');
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
    const decimals = Math.max(...xs.map((x) => (String(x).split('.')[1] ?? '').length));
    scale[c] = { sd, decimals };
  }
  const random = prng(seed);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const out = createWriteStream(file);
  out.write(`${columns.map(csvCell).join(',')}\n`);
  const BATCH = 8192;
  for (let start = 0; start < rows; start += BATCH) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(rows, start + BATCH); i++) {
      const record = records[i % records.length]!;
      lines.push(
        columns
          .map((c) => {
            const v = record[c] ?? null;
            if (typeof v !== 'number') return csvCell(v);
            const { sd, decimals } = scale[c]!;
            return (v + 0.05 * sd * gaussian()).toFixed(decimals);
          })
          .join(','),
      );
    }
    if (!out.write(`${lines.join('\n')}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return out.bytesWritten;
}

interface GantryRun {
  rows: number;
  bytes: number;
  features: number;
  dropped: number;
  malformed: number;
  seconds: number;
  scanSeconds: number | null;
  cpuSeconds: number;
  baselineRssKiB: number;
  peakRssKiB: number;
}
interface PandasRun {
  rows: number;
  bytes: number;
  seconds: number;
  readSeconds: number;
  describeSeconds: number;
  cpuSeconds: number;
  baselineRssKiB: number;
  peakRssKiB: number;
  version: string;
}

/**
 * Runs one side to completion and parses the JSON line it prints last. Its stderr is passed on after it ends; a
 * failure throws with the child's own error line (e.g. an unknown data source), not just "Command failed".
 */
function runJson<T>(command: string, args: string[]): T {
  const child = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (child.stderr) process.stderr.write(child.stderr);
  if (child.error) throw child.error;
  if (child.status !== 0) {
    const lines = child.stderr.split('\n').filter((line) => line.trim() !== '');
    const reason = lines.find((line) => /^\w*Error\b/.test(line)) ?? lines.at(-1) ?? `exit ${child.status}`;
    throw new Error(`${path.basename(args.find((a) => /\.(ts|py)$/.test(a)) ?? command)}: ${reason.trim()}`);
  }
  return JSON.parse(child.stdout.trim().split('\n').at(-1) ?? '') as T;
}

function runGantry(file: string, storeDir: string): GantryRun {
  return runJson<GantryRun>(process.execPath, ['--import', 'tsx', CHILD, file, storeDir, LABEL]);
}

let python: string | undefined;
const notMeasured: string[] = [];
function runPandas(file: string): PandasRun | undefined {
  if (python === undefined) {
    try {
      execFileSync('bash', [path.join(HERE, 'pandas', 'setup.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
      python = path.join(ROOT, '.tools', 'bench-venv', 'bin', 'python');
    } catch (error) {
      notMeasured.push(`pandas: ${(error as Error).message.split('\n')[0]}`);
      python = '';
    }
  }
  if (!python) return undefined;
  return runJson<PandasRun>(python, [path.join(HERE, 'pandas', 'ingest.py'), file]);
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-bench-ingest-'));
const results: { size: number; bytes: number; gantry?: GantryRun; pandas?: PandasRun }[] = [];
try {
  for (const size of sizes) {
    const file = path.join(dir, `penguins-${size}.csv`);
    let t = performance.now();
    const bytes = await writePenguinsCsv(file, size, 7);
    console.error(`wrote ${file}: ${size} rows, ${(bytes / 1e6).toFixed(1)} MB in ${elapsed(t)} s`);
    const result: (typeof results)[number] = { size, bytes };
    results.push(result);
    t = performance.now();
    try {
      result.gantry = runGantry(file, path.join(dir, `store-${size}`));
      console.error(`gantry ingested ${size} rows in ${elapsed(t)} s`);
    } catch (error) {
      notMeasured.push(`gantry at ${size} rows: ${(error as Error).message.split('\n')[0]}`);
    }
    t = performance.now();
    try {
      result.pandas = runPandas(file);
    } catch (error) {
      notMeasured.push(`pandas at ${size} rows: ${(error as Error).message.split('\n')[0]}`);
    }
    if (result.pandas) console.error(`pandas read and described ${size} rows in ${elapsed(t)} s`);
    if (!values.keep) await rm(file, { force: true });
    if (!values.keep) await rm(path.join(dir, `store-${size}`), { recursive: true, force: true });
  }
} finally {
  if (!values.keep) await rm(dir, { recursive: true, force: true });
  else console.error(`kept ${dir}`);
}

function elapsed(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}
const mb = (kib: number) => (kib / 1024).toFixed(0);
const rate = (n: number, s: number) => (n / s).toFixed(0);
const dash = '-';
const row = (cells: string[]) => console.log(`| ${cells.join(' | ')} |`);

const version = results.find((r) => r.pandas)?.pandas?.version ?? '?';
console.log(
  `tabular ingest: Gantry ingestDataset (schema, statistics, split, float32 shards) vs pandas ${version} ` +
    `read_csv + describe(include='all'), same CSV, one fresh process each; ${os.cpus().length} CPUs, ` +
    `load average ${os.loadavg()[0]!.toFixed(1)} at the end, node ${process.version}\n`,
);
console.log(
  '| rows | CSV MB | Gantry s | Gantry rows/s | Gantry MB/s | Gantry peak RSS MiB | pandas s | pandas rows/s | ' +
    'pandas MB/s | pandas peak RSS MiB | Gantry / pandas (rows/s) |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const { size, bytes, gantry: g, pandas: p } of results) {
  const megabytes = bytes / 1e6;
  row([
    String(size),
    megabytes.toFixed(1),
    g ? g.seconds.toFixed(2) : dash,
    g ? rate(g.rows, g.seconds) : dash,
    g ? (megabytes / g.seconds).toFixed(1) : dash,
    g ? mb(g.peakRssKiB) : dash,
    p ? p.seconds.toFixed(2) : dash,
    p ? rate(p.rows, p.seconds) : dash,
    p ? (megabytes / p.seconds).toFixed(1) : dash,
    p ? mb(p.peakRssKiB) : dash,
    g && p ? (p.seconds / g.seconds).toFixed(2) : dash,
  ]);
}

console.log(
  '\n| rows | Gantry scan pass s | Gantry write pass s | Gantry CPU s | Gantry RSS before MiB | pandas read_csv s | ' +
    'pandas describe s | pandas CPU s | pandas RSS before MiB | Gantry / pandas (CPU s) |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const { size, gantry: g, pandas: p } of results) {
  const scan = g?.scanSeconds ?? null;
  row([
    String(size),
    scan !== null ? scan.toFixed(2) : dash,
    g && scan !== null ? (g.seconds - scan).toFixed(2) : dash,
    g ? g.cpuSeconds.toFixed(2) : dash,
    g ? mb(g.baselineRssKiB) : dash,
    p ? p.readSeconds.toFixed(2) : dash,
    p ? p.describeSeconds.toFixed(2) : dash,
    p ? p.cpuSeconds.toFixed(2) : dash,
    p ? mb(p.baselineRssKiB) : dash,
    g && p ? (p.cpuSeconds / g.cpuSeconds).toFixed(2) : dash,
  ]);
}

// Flat memory: the peak RSS of the largest file against the smallest one's, beside the growth in rows.
const [first, last] = [results[0], results.at(-1)];
if (first && last && first !== last) {
  const growth = (a?: number, b?: number) => (a && b ? `×${(b / a).toFixed(2)}` : dash);
  console.log(
    `\npeak RSS from ${first.size} to ${last.size} rows (×${(last.size / first.size).toFixed(1)} rows): ` +
      `Gantry ${growth(first.gantry?.peakRssKiB, last.gantry?.peakRssKiB)}, ` +
      `pandas ${growth(first.pandas?.peakRssKiB, last.pandas?.peakRssKiB)}`,
  );
}
for (const { size, gantry: g } of results) {
  if (g && (g.dropped || g.malformed))
    console.log(`gantry at ${size} rows: ${g.dropped} dropped, ${g.malformed} malformed`);
}
if (notMeasured.length) console.log(`\nnot measured:\n${notMeasured.map((s) => `  ${s}`).join('\n')}`);
