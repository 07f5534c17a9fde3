import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../data/errors';
import { readIdxFile, readIdxHead } from '../../data/idx';
import { decodeImageBytes, ImageDecodeError } from '../../data/image-decode';
import { readArrowRows } from '../../data/tabular/arrow';
import { readCsvRows } from '../../data/tabular/csv';
import { readJsonArrayRows } from '../../data/tabular/json';
import { readJsonlRows } from '../../data/tabular/jsonl';
import { readParquetRows } from '../../data/tabular/parquet';
import { MalformedRow, type RowReader } from '../../data/tabular/rows';
import { idxBytes, makeTempDir, removeTempDir } from './helpers';

/**
 * Seeded fuzzing of the data readers (issue 16, point 7). Each case starts from a real file (vega-datasets
 * penguins as CSV/JSONL/JSON/Arrow, flights-3m.parquet, a Fashion-MNIST slice as IDX, a PNG and a JPEG written by
 * sharp), mutates it (flipped bytes, truncation, huge numbers and lengths, stray quotes and newlines, repeated
 * chunks) and reads it through the reader. The only outcomes allowed: rows, MalformedRows naming file and line or
 * row, or a DatasetError naming the file (ImageDecodeError for image bytes, whose caller names the path). Every case
 * has a time bound (a hang fails) and the whole run a bound on heap growth. A failure prints its seed:
 * FUZZ_SEED=<seed> reruns just that mutation; fixed cases stay below as regression seeds.
 */

const CASES = Number(process.env.FUZZ_CASES ?? 40);
const CASE_TIMEOUT_MS = 5_000;
const MAX_HEAP_GROWTH_BYTES = 200 * 2 ** 20;
const VEGA = path.resolve('node_modules/vega-datasets/data');
const FASHION = '/usr/share/datasets/fashion-mnist';

/** mulberry32: a small seeded generator, so a failing case is one number to rerun. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeds that found a bug, kept whatever FUZZ_CASES says. 3007: an Arrow file whose footer lists no batches hung. */
const REGRESSION_SEEDS: Record<string, number[]> = { arrow: [3007] };

const HUGE_TEXT = [
  '99999999999999999999999999999',
  '1e309',
  '-1e309',
  'NaN',
  '"',
  '\n',
  '\r',
  '\u0000',
  '{',
  '[',
  '""',
];
const HUGE_WORDS = [0xffffffff, 0x7fffffff, 0x80000000, 0x10000000];

/**
 * One mutation of `input`, chosen by `seed`. `region` (for large binaries) keeps the edits to the parts a reader
 * parses up front — the head and the footer — where a bad length does the most harm.
 */
function mutate(input: Buffer, seed: number, region?: { head: number; tail: number }): Buffer {
  const next = random(seed);
  const pick = (n: number) => Math.floor(next() * n);
  const position = () => {
    if (!region) return pick(input.length);
    return next() < 0.5 ? pick(region.head) : input.length - 1 - pick(region.tail);
  };
  const out = Buffer.from(input);
  switch (pick(6)) {
    case 0: {
      for (let i = 0, n = 1 + pick(8); i < n; i++) out[position()] = pick(256);
      return out;
    }
    case 1:
      return out.subarray(0, position());
    case 2: {
      const at = position();
      const text = Buffer.from(HUGE_TEXT[pick(HUGE_TEXT.length)]!);
      return Buffer.concat([out.subarray(0, at), text, out.subarray(at)]);
    }
    case 3: {
      const at = Math.min(position(), out.length - 4);
      if (at >= 0) out.writeUInt32LE(HUGE_WORDS[pick(HUGE_WORDS.length)]!, at);
      return out;
    }
    case 4: {
      const at = Math.min(position(), out.length - 4);
      if (at >= 0) out.writeUInt32BE(HUGE_WORDS[pick(HUGE_WORDS.length)]!, at);
      return out;
    }
    default: {
      const at = position();
      const chunk = out.subarray(at, Math.min(out.length, at + 1 + pick(64)));
      return Buffer.concat([out.subarray(0, at), chunk, chunk, out.subarray(at)]);
    }
  }
}

/** Rejects when `work` takes longer than the per-case bound: a reader that hangs fails the case. */
async function bounded<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads every row (at most `maxRows`); returns what happened, or throws what a reader must never throw. */
async function readAll(reader: RowReader, file: string, maxRows: number): Promise<string> {
  let rows = 0;
  let malformed = 0;
  try {
    for await (const row of reader(file, { maxRows })) {
      if (row instanceof MalformedRow) {
        if (!row.where.startsWith(file)) throw new Error(`a MalformedRow that does not name ${file}: ${row.where}`);
        malformed++;
      } else {
        if (!row.where.startsWith(file)) throw new Error(`a row that does not name ${file}: ${row.where}`);
        rows++;
      }
    }
  } catch (error) {
    if (error instanceof DatasetError && error.message.includes(file)) return 'dataset-error';
    if (error instanceof MalformedRow && error.where.startsWith(file)) return 'malformed';
    throw error;
  }
  return `${rows} rows, ${malformed} malformed`;
}

interface Target {
  name: string;
  extension: string;
  seedFile: () => Promise<Buffer>;
  region?: { head: number; tail: number };
  read: (file: string) => Promise<string>;
}

let dir: string;
const penguins = JSON.parse(readFileSync(path.join(VEGA, 'penguins.json'), 'utf8')) as Record<string, unknown>[];
const penguinSlice = penguins.slice(0, 60);
const columns = Object.keys(penguinSlice[0]!);
const csvCell = (value: unknown) =>
  value === null || value === undefined ? '' : /[",\n]/.test(String(value)) ? JSON.stringify(value) : String(value);

const targets: Target[] = [
  {
    name: 'csv',
    extension: 'csv',
    seedFile: async () =>
      Buffer.from(
        [columns.join(','), ...penguinSlice.map((row) => columns.map((c) => csvCell(row[c])).join(','))].join('\n'),
      ),
    read: (file) => readAll(readCsvRows, file, 1_000),
  },
  {
    name: 'jsonl',
    extension: 'jsonl',
    seedFile: async () => Buffer.from(penguinSlice.map((row) => JSON.stringify(row)).join('\n')),
    read: (file) => readAll(readJsonlRows, file, 1_000),
  },
  {
    name: 'json',
    extension: 'json',
    seedFile: async () => Buffer.from(JSON.stringify(penguinSlice)),
    read: (file) => readAll(readJsonArrayRows, file, 1_000),
  },
  {
    name: 'arrow',
    extension: 'arrow',
    seedFile: async () => {
      const table = tableFromArrays({
        species: penguinSlice.map((row) => String(row.Species)),
        mass: Float64Array.from(penguinSlice, (row) => Number(row['Body Mass (g)'] ?? Number.NaN)),
        flipper: Int32Array.from(penguinSlice, (row) => Number(row['Flipper Length (mm)'] ?? 0)),
      });
      return Buffer.from(tableToIPC(table, 'file'));
    },
    read: (file) => readAll(readArrowRows, file, 1_000),
  },
  {
    name: 'parquet',
    extension: 'parquet',
    seedFile: async () => readFileSync(path.join(VEGA, 'flights-3m.parquet')),
    // 13 MB: the edits go to the footer (schema, row groups, offsets) and the first pages.
    region: { head: 64 * 1024, tail: 16 * 1024 },
    read: (file) => readAll(readParquetRows, file, 50),
  },
  {
    name: 'idx',
    extension: 'idx',
    seedFile: async () => {
      const head = await readIdxHead(path.join(FASHION, 't10k-images-idx3-ubyte.gz'), 'images', 20);
      return idxBytes(0x00000803, head.dims, head.data);
    },
    region: { head: 64, tail: 64 },
    read: async (file) => {
      try {
        const whole = await readIdxFile(file, 'images');
        const head = await readIdxHead(file, 'images', 3);
        return `${whole.dims.join('x')} / ${head.dims.join('x')}`;
      } catch (error) {
        if (error instanceof DatasetError && error.message.includes(file)) return 'dataset-error';
        throw error;
      }
    },
  },
  ...(['png', 'jpeg'] as const).map(
    (format): Target => ({
      name: format,
      extension: format,
      seedFile: async () => {
        const head = await readIdxHead(path.join(FASHION, 't10k-images-idx3-ubyte.gz'), 'images', 1);
        const image = sharp(Buffer.from(head.data), { raw: { width: 28, height: 28, channels: 1 } });
        return format === 'png' ? image.png().toBuffer() : image.jpeg().toBuffer();
      },
      region: { head: 256, tail: 64 },
      read: async (file) => {
        try {
          const pixels = await decodeImageBytes(readFileSync(file), { height: 28, width: 28, channels: 1 });
          return `${pixels.length} bytes`;
        } catch (error) {
          if (error instanceof ImageDecodeError) return 'image-error';
          throw error;
        }
      },
    }),
  ),
];

beforeAll(async () => {
  dir = await makeTempDir('fuzz');
});
afterAll(() => removeTempDir(dir));

describe('fuzzing the data readers', () => {
  const only = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  for (const [index, target] of targets.entries()) {
    it(`${target.name}: mutated files give rows, named malformed rows or a named error, in bounded time`, async () => {
      const original = await target.seedFile();
      const file = path.join(dir, `fuzz.${target.extension}`);
      await writeFile(file, original);
      // The unmutated file reads cleanly: the mutations, not the seed file, make the errors below.
      expect(await bounded(target.read(file), `${target.name} original`)).not.toMatch(/error/);
      const heapBefore = process.memoryUsage().heapUsed;
      const outcomes = new Map<string, number>();
      const seeds =
        only !== undefined
          ? [only]
          : [...(REGRESSION_SEEDS[target.name] ?? []), ...Array.from({ length: CASES }, (_, i) => 1_000 * index + i)];
      for (const seed of seeds) {
        const mutated = mutate(original, seed, target.region);
        await writeFile(file, mutated);
        const started = performance.now();
        let outcome: string;
        try {
          outcome = await bounded(target.read(file), `${target.name} seed ${seed}`);
        } catch (error) {
          // Kept outside the temp dir removed after the run, to open the failing file by hand.
          const kept = path.join(os.tmpdir(), `gantry-fuzz-failure-${seed}.${target.extension}`);
          await writeFile(kept, mutated);
          throw new Error(`${target.name} seed ${seed} (file kept at ${kept}): ${(error as Error).stack ?? error}`);
        }
        const kind = /error|malformed/.test(outcome) && !/rows/.test(outcome) ? outcome : 'read';
        outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
        expect(performance.now() - started, `${target.name} seed ${seed}`).toBeLessThan(CASE_TIMEOUT_MS);
      }
      global.gc?.();
      const growth = process.memoryUsage().heapUsed - heapBefore;
      expect(growth, `${target.name}: heap growth over ${seeds.length} cases`).toBeLessThan(MAX_HEAP_GROWTH_BYTES);
      console.log(`${target.name}: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    }, 120_000);
  }
});
